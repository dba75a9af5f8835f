"""An exclusive lock on a directory, so that two trainings never share one `--model_dir`.

On a local disk the lock is `fcntl.flock` on a file in the directory (`run.lock` for a run
directory). The kernel drops it when the holding process exits, however it exits (`kill -9`, a
crash, a pre-empted VM), so a lock is never left stale. The file names the holder; `release`
removes it, a crash leaves it (unlocked: it only says who held it last). On NFS, Linux implements
`flock` with byte-range locks that the server arbitrates across hosts.

Where there are no file locks (a `gs://`, `s3://`, `hdfs://` or `ram://` directory, or a local
filesystem whose `flock` fails with ENOLCK / EOPNOTSUPP) the lock is **advisory**
(`AdvisoryLock`): the same file holds the owner (a random id), host, pid and a heartbeat time
that a thread of the holder rewrites every `HEARTBEAT_S` seconds. Another process refuses a
directory whose heartbeat is younger than `STALE_S`, and takes over an older one (its holder
died without removing it). It is honest, not exact: two processes that start within the same
second may both write the file; each re-reads it after `SETTLE_S` and only the one it names
goes on, which catches most such races but not all on stores without conditional writes; and it
relies on the hosts' clocks agreeing to well within `STALE_S`.
"""
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid

from absl import logging

RUN_LOCK = "run.lock"
DIRECTORY_LOCK = ".lock"  # the advisory lock of a `DirectoryLock(directory, None)`
HEARTBEAT_S = 30.0
STALE_S = 300.0
SETTLE_S = 1.0
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _is_url(path):
    """A path of a non-local TensorFlow filesystem (`gs://`, `ram://`); kept here rather than
    imported from `runs.files` so that local locking needs no TensorFlow."""
    return "://" in path and not path.startswith("file://")


class LockedError(RuntimeError):
    """The directory is locked by another process (the message names it)."""


def _holder_description():
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    command = " ".join(sys.argv)[:300]
    return f"pid {os.getpid()} on {socket.gethostname()} since {started}: {command}\n"


class DirectoryLock:
    """`with DirectoryLock(directory):` holds an exclusive lock on `directory/name`, or with
    `name=None` on the directory itself (no file is added; the holder cannot be named).

    `acquire(blocking=False)` raises `LockedError` when another process (or another
    `DirectoryLock` of this process) holds it; `blocking=True` waits instead. Where the
    filesystem has no locks, the lock is an `AdvisoryLock` file (see the module docstring;
    `advisory` is True then).
    """

    def __init__(self, directory, name=RUN_LOCK, purpose="a training run", advice=""):
        self._fd = None
        self.advisory = None  # the AdvisoryLock used where there are no file locks
        self.advice = advice
        directory = os.fspath(directory)
        self.directory = directory if _is_url(directory) else os.path.abspath(directory)
        self.path = os.path.join(self.directory, name) if name else self.directory
        self.purpose = purpose
        self._advisory_name = name or DIRECTORY_LOCK

    @property
    def held(self):
        return self._fd is not None or (self.advisory is not None and self.advisory.held)

    def _acquire_advisory(self, blocking):
        if self.advisory is None:
            self.advisory = AdvisoryLock(os.path.join(self.directory, self._advisory_name),
                                         self.purpose, self.advice)
        self.advisory.acquire(blocking)
        return self

    def acquire(self, blocking=False):
        if self.held:
            return self
        if _is_url(self.directory):
            return self._acquire_advisory(blocking)
        os.makedirs(self.directory, exist_ok=True)
        on_directory = self.path == self.directory
        while True:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY if on_directory
                         else os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as error:
                if error.errno in NO_LOCKS:
                    os.close(fd)
                    logging.warning("Cannot lock %s (%s): this filesystem has no file locks; "
                                    "using an advisory lock file instead.", self.path, error)
                    return self._acquire_advisory(blocking)
                return self._refuse(fd, error, on_directory)
            if on_directory or _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file as we locked it: lock the new one
        if not on_directory:
            os.ftruncate(fd, 0)
            os.pwrite(fd, _holder_description().encode(), 0)
        self._fd = fd
        return self

    def _refuse(self, fd, error, on_directory):
        holder = "" if on_directory else _read_holder(fd)
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockedError(
                f"{self.directory} is in use by {self.purpose}"
                f"{f' ({holder})' if holder else ''}. {self.advice}".strip()) from None
        raise error

    def release(self):
        """Removes the lock file, then unlocks (the kernel unlocks when the process ends). A
        process that opened the file before its removal sees that it was removed after locking
        it (`_same_file`) and starts again on a new file."""
        if self.advisory is not None:
            self.advisory.release()
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self.path != self.directory and _same_file(fd, self.path):
            try:
                os.remove(self.path)
            except OSError:
                pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()

    def __del__(self):
        self.release()


class AdvisoryLock:
    """A lock file with owner, host, pid and heartbeat, for filesystems without file locks
    (through `tf.io.gfile`). See the module docstring for what it guarantees and what not."""

    def __init__(self, path, purpose="a training run", advice=""):
        self.path, self.purpose, self.advice = path, purpose, advice
        self.owner = uuid.uuid4().hex
        self.lost = False  # another process took the lock over while we held it
        self._stop = None
        self._thread = None

    @property
    def held(self):
        return self._thread is not None

    @staticmethod
    def _gfile():
        import tensorflow as tf  # noqa: PLC0415  (only remote directories need it)
        return tf.io.gfile

    def _read(self):
        gfile = self._gfile()
        try:
            with gfile.GFile(self.path, "r") as f:
                return json.loads(f.read())
        except Exception:  # noqa: BLE001  (absent, half-written, not ours: no valid holder)
            return None

    def _write(self, since):
        record = {"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                  "since": since, "heartbeat": time.time(), "command": " ".join(sys.argv)[:300],
                  "purpose": self.purpose}
        gfile = self._gfile()
        tmp = f"{self.path}.tmp-{self.owner}"  # then renamed: a reader never sees half a record
        with gfile.GFile(tmp, "w") as f:
            f.write(json.dumps(record) + "\n")
        gfile.rename(tmp, self.path, overwrite=True)

    def _refusal(self, holder):
        age = time.time() - float(holder.get("heartbeat", 0))
        return LockedError(
            f"{os.path.dirname(self.path)} is in use by {self.purpose} (pid {holder.get('pid')} "
            f"on {holder.get('host')} since {holder.get('since')}: {holder.get('command', '')}; "
            f"advisory lock {self.path}, heartbeat {age:.0f} s ago; it expires {STALE_S:.0f} s "
            f"after the last heartbeat if that process is gone). {self.advice}".strip())

    def acquire(self, blocking=False):
        if self.held:
            return self
        self._gfile().makedirs(os.path.dirname(self.path))
        since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        while True:
            holder = self._read()
            if holder and holder.get("owner") != self.owner:
                age = time.time() - float(holder.get("heartbeat", 0))
                if age < STALE_S:
                    if not blocking:
                        raise self._refusal(holder)
                    time.sleep(min(HEARTBEAT_S, 5.0))
                    continue
                logging.warning("Taking over the advisory lock %s: its holder (pid %s on %s) "
                                "has not renewed it for %.0f s.", self.path, holder.get("pid"),
                                holder.get("host"), age)
            self._write(since)
            time.sleep(SETTLE_S)  # another process that wrote at the same time: one wins
            holder = self._read()
            if holder and holder.get("owner") == self.owner:
                break
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, args=(since,), daemon=True,
                                        name="tf_pyramid-lock-heartbeat")
        self._thread.start()
        return self

    def _heartbeat(self, since):
        while not self._stop.wait(HEARTBEAT_S):
            holder = self._read()
            if holder and holder.get("owner") != self.owner:
                self.lost = True
                logging.error("The advisory lock %s was taken over by pid %s on %s: another "
                              "process now writes this directory too.", self.path,
                              holder.get("pid"), holder.get("host"))
                return
            try:
                self._write(since)
            except Exception as error:  # noqa: BLE001  (a transient storage error: try again)
                logging.warning("Cannot renew the advisory lock %s: %s", self.path, error)

    def release(self):
        """Stops the heartbeat and removes the lock file if it still names this holder."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        holder = self._read()
        if holder and holder.get("owner") == self.owner:
            try:
                self._gfile().remove(self.path)
            except Exception:  # noqa: BLE001
                pass


def _same_file(fd, path):
    """Whether `path` still names the file open as `fd`."""
    try:
        opened, named = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _read_holder(fd):
    try:
        return os.pread(fd, 1000, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def lock_run_dir(model_dir):
    """Locks a run directory for one training (non-blocking); raises `LockedError` if taken."""
    return DirectoryLock(
        model_dir, RUN_LOCK, "another training run",
        "Two trainings in one run directory overwrite each other's checkpoints and results: wait "
        "for it to end, stop it, or train in another --model_dir.").acquire()
