"""The run-directory lock: a second holder is refused with the first one named; the lock is
released on release and when its process dies (also by `kill -9`)."""
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tf_pyramid.runs import lock

# Loads lock.py by its path: importing the package would import TensorFlow (seconds).
HOLD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
held = module.lock_run_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_second_lock_refused_until_released(tmp_path):
    first = lock.lock_run_dir(tmp_path / "run")
    with pytest.raises(lock.LockedError) as error:
        lock.lock_run_dir(tmp_path / "run")
    message = str(error.value)
    assert f"is in use by another training run (pid {os.getpid()} on " in message
    assert "train in another --model_dir" in message
    first.release()
    second = lock.lock_run_dir(tmp_path / "run")
    assert second.held
    second.release()
    assert os.listdir(tmp_path / "run") == []  # the lock file goes with the lock


def test_lock_of_a_killed_process_is_free(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), lock.__file__],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(lock.LockedError, match=f"pid {holder.pid} on "):
            lock.lock_run_dir(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    assert "pid" in (tmp_path / lock.RUN_LOCK).read_text()  # stale content, but no lock
    with lock.DirectoryLock(tmp_path) as taken:
        assert taken.held
        assert f"pid {os.getpid()} on" in (tmp_path / lock.RUN_LOCK).read_text()


def test_lock_on_the_directory_itself(tmp_path):
    """As exports lock their base folder: no file is added to it."""
    with lock.DirectoryLock(tmp_path, None, "another export") as first:
        with pytest.raises(lock.LockedError, match=r"in use by another export\.$"):
            lock.DirectoryLock(tmp_path, None, "another export").acquire()
        assert first.held
    assert not first.held
    assert lock.DirectoryLock(tmp_path, None).acquire(blocking=True).held
    assert os.listdir(tmp_path) == []


def test_waiter_on_a_removed_lock_file_locks_the_new_one(tmp_path):
    """A waiter that opened run.lock before the holder removed it must not hold a lock on the
    removed file (a third process would then lock a new file beside it)."""
    holder = lock.lock_run_dir(tmp_path)
    waiter = lock.DirectoryLock(tmp_path)
    thread = threading.Thread(target=waiter.acquire, kwargs={"blocking": True})
    thread.start()
    time.sleep(0.5)  # the waiter has opened the file and blocks in flock
    assert thread.is_alive() and not waiter.held
    holder.release()
    thread.join(timeout=10)
    assert waiter.held
    with pytest.raises(lock.LockedError, match=f"pid {os.getpid()}"):
        lock.lock_run_dir(tmp_path)
    assert os.fstat(waiter._fd).st_ino == os.stat(tmp_path / lock.RUN_LOCK).st_ino  # noqa: SLF001
    waiter.release()


def test_advisory_lock_where_there_are_no_file_locks(monkeypatch):
    """A `ram://` (as `gs://`) run directory: a lock file with owner, host, pid and heartbeat; a
    second holder is refused naming the first, a stale one is taken over."""
    import tensorflow as tf  # noqa: PLC0415
    monkeypatch.setattr(lock, "SETTLE_S", 0.01)
    directory = "ram://tf_pyramid_lock_test/run"
    first = lock.lock_run_dir(directory)
    assert first.held and first.advisory is not None
    path = f"{directory}/{lock.RUN_LOCK}"
    record = json.loads(tf.io.gfile.GFile(path).read())
    assert record["pid"] == os.getpid() and record["owner"] == first.advisory.owner
    with pytest.raises(lock.LockedError, match=rf"in use by another training run \(pid "
                       rf"{os.getpid()} on .*advisory lock {path}, heartbeat \d+ s ago"):
        lock.lock_run_dir(directory)
    first.release()
    assert not tf.io.gfile.exists(path)

    # A holder that died (its heartbeat older than STALE_S) is taken over.
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps({"owner": "dead", "pid": 1, "host": "gone", "heartbeat": 0}))
    second = lock.lock_run_dir(directory)
    assert json.loads(tf.io.gfile.GFile(path).read())["owner"] == second.advisory.owner
    second.release()


def test_advisory_heartbeat_renews_the_lock(monkeypatch):
    import tensorflow as tf  # noqa: PLC0415
    monkeypatch.setattr(lock, "SETTLE_S", 0.01)
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    directory = "ram://tf_pyramid_lock_test/heartbeat"
    holder = lock.lock_run_dir(directory)
    path = f"{directory}/{lock.RUN_LOCK}"
    before = json.loads(tf.io.gfile.GFile(path).read())["heartbeat"]
    time.sleep(0.5)
    after = json.loads(tf.io.gfile.GFile(path).read())["heartbeat"]
    assert after > before
    holder.release()


def test_local_filesystem_without_flock_falls_back_to_the_advisory_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "SETTLE_S", 0.01)

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    first = lock.lock_run_dir(tmp_path)
    assert first.held and first.advisory is not None
    with pytest.raises(lock.LockedError, match="advisory lock"):
        lock.lock_run_dir(tmp_path)
    first.release()
    assert os.listdir(tmp_path) == []
