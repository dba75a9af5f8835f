"""Result files of a run written atomically, and read back with a clear message when damaged.

Every read and write goes through `tf.io.gfile`, so a run directory may be on any filesystem
TensorFlow knows (`gs://`, `s3://` with its plugin, `hdfs://`, the in-memory `ram://`) as well
as a local disk. A result file is written to a temporary file in the same directory and renamed
over the final name:

* on a local disk (POSIX) the temporary file is flushed to disk (`fsync`) and renamed with
  `rename(2)`, which is atomic: a reader sees the old file or the new one, never a half-written
  one (a full disk or a kill during the write leaves the previous file, and no temporary file);
* on an object store (`gs://`, `s3://`) a "rename" is a copy and a delete. Each object still
  appears whole or not at all (an upload is committed when it completes), so a reader never
  sees half a file, but a process killed between the copy and the delete leaves the temporary
  file behind: `remove_leftovers` removes it when the run next starts.

`.keras` files are written and read through a local temporary copy (Keras's zip reader and
writer want a local file), then copied with gfile.
"""
import json
import os
import re
import shutil
import tempfile
import zipfile

import numpy as np
import tensorflow as tf

gfile = tf.io.gfile


class DamagedFileError(ValueError):
    """A run file exists but cannot be read (truncated, overwritten, not the expected format)."""


def is_url(path):
    """Whether `path` names a file on a non-local TensorFlow filesystem (`gs://b/x`,
    `ram://x`); `file://` URLs are local."""
    path = os.fspath(path)
    return "://" in path and not path.startswith("file://")


def absolute(path):
    """A local path made absolute; a URL as it is (`os.path.abspath` would
    turn `gs://bucket/run` into `$PWD/gs:/bucket/run`)."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def exists(path):
    return gfile.exists(os.fspath(path))


def isdir(path):
    return gfile.isdir(os.fspath(path))


def isfile(path):
    return gfile.exists(os.fspath(path)) and not gfile.isdir(os.fspath(path))


def makedirs(path):
    gfile.makedirs(os.fspath(path))


def listdir(path):
    """Entry names of a directory (gfile adds a trailing '/' to sub-directories of some object
    stores; it is removed)."""
    return [name.rstrip("/") for name in gfile.listdir(os.fspath(path))]


def remove(path):
    gfile.remove(os.fspath(path))


def rmtree(path):
    gfile.rmtree(os.fspath(path))


def move(source, target):
    """Renames (local disk, HDFS) or copies and deletes (object stores) `source` to `target`."""
    gfile.rename(os.fspath(source), os.fspath(target), overwrite=False)


def move_tree(source, target, last=("saved_model.pb",)):
    """Renames the directory `source` to `target` (which must not exist). On a local disk one
    atomic `rename(2)`. Elsewhere file by file, the files named in `last` at the end (a
    SavedModel is complete once `saved_model.pb` appears), then `source` is removed: object
    stores have no directories to rename, and `ram://` renames only the directory's own entry."""
    source, target = os.fspath(source), os.fspath(target)
    if not is_url(source):
        gfile.rename(source, target)
        return target
    moves, folders = set(), [target]
    for folder, subfolders, names in gfile.walk(source):
        folders += [target + os.path.join(folder, name)[len(source):] for name in subfolders]
        for name in names:
            path = os.path.join(folder, name)
            if gfile.exists(path):  # `ram://` lists `a.extra/f` in `a/` too, as `a/.extra/f`
                moves.add((name in last, path, target + path[len(source):]))
    for folder in folders:
        gfile.makedirs(folder)
    for _, path, destination in sorted(moves):
        gfile.makedirs(os.path.dirname(destination))
        gfile.rename(path, destination, overwrite=True)
    try:
        gfile.rmtree(source)
    except tf.errors.NotFoundError:  # nothing left: stores without directory entries
        pass
    return target


def read_text(path):
    with gfile.GFile(os.fspath(path), "r") as f:
        return f.read()


def getmtime(path):
    """Seconds since the epoch (0 where the filesystem keeps no times, e.g. `ram://`)."""
    return gfile.stat(os.fspath(path)).mtime_nsec / 1e9


def json_default(value):
    """`json.dump(default=...)` for numpy scalars and arrays."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


TEMPORARY_NAME = re.compile(r"^\..+\.tmp-\d+(\.\w+)?$")     # ours: .NAME.tmp-PID[.keras]
CHECKPOINT_TEMPORARY = re.compile(r"^ckpt-\d+_temp$")         # TensorFlow's, mid-save


def remove_leftovers(directory):
    """Removes the temporary files a killed writer left in a run directory (and its
    checkpoints/): call only while holding the run's lock, when nothing else writes there.
    Returns the removed paths."""
    removed = []
    directory = os.fspath(directory)
    for folder in (directory, os.path.join(directory, "checkpoints")):
        if not isdir(folder):
            continue
        for name in listdir(folder):
            path = os.path.join(folder, name)
            if TEMPORARY_NAME.match(name) and not isdir(path):
                remove(path)
            elif CHECKPOINT_TEMPORARY.match(name) and isdir(path):
                rmtree(path)
            else:
                continue
            removed.append(path)
    return removed


def _temporary_name(path, suffix=""):
    directory, name = os.path.split(absolute(path))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}{suffix}")


def _sync(path, directory=False):
    """Makes a local write (or, for a directory, a rename in it) durable (POSIX); a no-op where
    the file cannot be opened so."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if not directory:
            raise
        return
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def replace_atomically(path, write, suffix=""):
    """Calls `write(temporary_path)`, then renames the temporary file to `path` (see the module
    docstring for what "atomic" means on each kind of filesystem).

    On any error the temporary file is removed and the error re-raised; `path` is unchanged.
    `suffix` ends the temporary name (Keras wants `.keras`).
    """
    path = os.fspath(path)
    tmp = _temporary_name(path, suffix)
    try:
        write(tmp)
        if not is_url(tmp):
            _sync(tmp)
        gfile.rename(tmp, absolute(path), overwrite=True)
    except BaseException:
        try:
            if gfile.exists(tmp):
                gfile.remove(tmp)
        except tf.errors.OpError:
            pass
        raise
    if not is_url(path):
        _sync(os.path.dirname(absolute(path)), directory=True)
    return path


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    def write(tmp):
        with gfile.GFile(tmp, "w") as f:
            f.write(text)
    return replace_atomically(path, write)


def write_json(path, data):
    """Writes `data` as indented JSON to `path` atomically (numpy scalars become numbers)."""
    return write_text(path, json.dumps(data, indent=2, default=json_default) + "\n")


def read_json(path):
    """The JSON in `path`; `DamagedFileError` (saying so) if it exists but does not parse."""
    try:
        with gfile.GFile(os.fspath(path), "rb") as f:
            raw = f.read()
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedFileError(
            f"{path} is damaged ({len(raw)} bytes, not valid JSON: {error}). It was probably cut "
            "short by a crash or a full disk; restore it from a backup or delete it.") from None


def _local_copy_dir():
    return tempfile.mkdtemp(prefix="tf_pyramid_keras_")


def save_keras(model, path):
    """`model.save(path)` atomically: a failed save (full disk) leaves no truncated file. A
    `.keras` file for another filesystem is saved locally first, then copied there."""
    if not str(path).endswith(".keras"):
        raise ValueError(f"A Keras model file must end in .keras; got {path}.")
    if not is_url(path):
        return replace_atomically(path, model.save, suffix=".keras")

    def save_then_copy(tmp):
        local_dir = _local_copy_dir()
        try:
            local = os.path.join(local_dir, "model.keras")
            model.save(local)
            gfile.copy(local, tmp, overwrite=True)
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)
    return replace_atomically(path, save_then_copy, suffix=".keras")


def check_keras_file(path, local=None):
    """Raises `DamagedFileError` unless `path` is a complete .keras archive (a zip archive whose
    members all pass their checksums and which holds the model config and weights). `local`: a
    local copy of `path` to read instead (the messages name `path`)."""
    local = os.fspath(local or path)
    size = os.path.getsize(local)
    hint = ("It was probably cut short by a crash or a full disk while the model was saved; "
            "write it again (a finished run: rerun the training command) or load a checkpoint.")
    if not zipfile.is_zipfile(local):
        raise DamagedFileError(f"{path} is damaged: not a complete .keras (zip) archive "
                               f"({size} bytes). {hint}")
    try:
        with zipfile.ZipFile(local) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise DamagedFileError(f"{path} is damaged: {error} ({size} bytes). {hint}") from None
    if bad is not None:
        raise DamagedFileError(f"{path} is damaged: member {bad!r} fails its checksum. {hint}")
    if "config.json" not in names or not any(n.startswith("model.weights.") for n in names):
        raise DamagedFileError(f"{path} is damaged: the archive lacks the model config or "
                               f"weights (it holds {sorted(names)}). {hint}")


def load_keras(path, **kwargs):
    """`keras.saving.load_model(path, **kwargs)` after `check_keras_file` (a damaged file gets a
    message that says so instead of Keras's "File not found"); a file on another filesystem is
    copied to a local temporary file first."""
    import keras  # noqa: PLC0415  (only the readers of .keras files need Keras)
    if not is_url(path):
        check_keras_file(path)
        return keras.saving.load_model(path, **kwargs)
    local_dir = _local_copy_dir()
    try:
        local = os.path.join(local_dir, "model.keras")
        gfile.copy(os.fspath(path), local, overwrite=True)
        check_keras_file(path, local)
        return keras.saving.load_model(local, **kwargs)
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
