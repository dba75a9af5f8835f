"""Result files of a run written atomically, and read back with a clear message when damaged.

A result file is written to a temporary file in the same directory, flushed to disk and renamed
over the final name: a reader sees the old file or the new one, never a half-written one (a full
disk or a kill during the write leaves the previous file, and no temporary file, behind).
"""
import json
import os
import re
import shutil
import zipfile

import numpy as np


class DamagedFileError(ValueError):
    """A run file exists but cannot be read (truncated, overwritten, not the expected format)."""


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
    for folder in (directory, os.path.join(directory, "checkpoints")):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if TEMPORARY_NAME.match(name) and os.path.isfile(path):
                os.remove(path)
            elif CHECKPOINT_TEMPORARY.match(name) and os.path.isdir(path):
                shutil.rmtree(path)
            else:
                continue
            removed.append(path)
    return removed


def _temporary_name(path, suffix=""):
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}{suffix}")


def _sync_directory(directory):
    """Makes a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_atomically(path, write, suffix=""):
    """Calls `write(temporary_path)`, then renames the temporary file to `path`.

    On any error the temporary file is removed and the error re-raised; `path` is unchanged.
    `suffix` ends the temporary name (Keras wants `.keras`).
    """
    tmp = _temporary_name(path, suffix)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _sync_directory(os.path.dirname(os.path.abspath(path)))
    return path


def write_json(path, data):
    """Writes `data` as indented JSON to `path` atomically (numpy scalars become numbers)."""
    text = json.dumps(data, indent=2, default=json_default) + "\n"

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    return replace_atomically(path, write)


def read_json(path):
    """The JSON in `path`; `DamagedFileError` (saying so) if it exists but does not parse."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedFileError(
            f"{path} is damaged ({len(raw)} bytes, not valid JSON: {error}). It was probably cut "
            "short by a crash or a full disk; restore it from a backup or delete it.") from None


def save_keras(model, path):
    """`model.save(path)` atomically: a failed save (full disk) leaves no truncated file."""
    if not str(path).endswith(".keras"):
        raise ValueError(f"A Keras model file must end in .keras; got {path}.")
    return replace_atomically(path, model.save, suffix=".keras")


def check_keras_file(path):
    """Raises `DamagedFileError` unless `path` is a complete .keras archive (a zip archive whose
    members all pass their checksums and which holds the model config and weights)."""
    size = os.path.getsize(path)
    hint = ("It was probably cut short by a crash or a full disk while the model was saved; "
            "write it again (a finished run: rerun the training command) or load a checkpoint.")
    if not zipfile.is_zipfile(path):
        raise DamagedFileError(f"{path} is damaged: not a complete .keras (zip) archive "
                               f"({size} bytes). {hint}")
    try:
        with zipfile.ZipFile(path) as archive:
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
    message that says so instead of Keras's "File not found")."""
    import keras  # noqa: PLC0415  (only the readers of .keras files need Keras)
    check_keras_file(path)
    return keras.saving.load_model(path, **kwargs)
