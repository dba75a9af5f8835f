"""An exclusive lock on a directory, so that two trainings never share one `--model_dir`.

The lock is `fcntl.flock` on a file in the directory (`run.lock` for a run directory). The kernel
drops it when the holding process exits, however it exits (`kill -9`, a crash, a pre-empted VM),
so a lock is never left stale. The file names the holder; `release` removes it, a crash leaves it
(unlocked: it only says who held it last). On NFS,
Linux implements `flock` with byte-range locks that the server arbitrates across hosts; file
systems without any locking get a warning and no lock.
"""
import datetime
import errno
import fcntl
import os
import socket
import sys

from absl import logging

RUN_LOCK = "run.lock"


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
    `DirectoryLock` of this process) holds it; `blocking=True` waits instead. `held` is False
    after `acquire` only where the file system has no locks (a warning is logged).
    """

    def __init__(self, directory, name=RUN_LOCK, purpose="a training run", advice=""):
        self._fd = None
        self.advice = advice
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, name) if name else self.directory
        self.purpose = purpose

    @property
    def held(self):
        return self._fd is not None

    def acquire(self, blocking=False):
        if self._fd is not None:
            return self
        os.makedirs(self.directory, exist_ok=True)
        on_directory = self.path == self.directory
        while True:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY if on_directory
                         else os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as error:
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
        logging.warning("Cannot lock %s (%s): the file system has no locks; make sure no "
                        "other process uses %s.", self.path, error, self.directory)
        return self

    def release(self):
        """Removes the lock file, then unlocks (the kernel unlocks when the process ends). A
        process that opened the file before its removal sees that it was removed after locking
        it (`_same_file`) and starts again on a new file."""
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
