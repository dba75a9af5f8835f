"""Restoring the newest checkpoint that loads, and keeping the damaged ones.

`tf.train.latest_checkpoint` trusts the `checkpoint` state file and gives up on the first
problem: a newest checkpoint with a missing `.index` makes it return None (a silent restart whose
`CheckpointManager` then deletes the older, intact checkpoints), a corrupt `.index` or `.data`
ends in a raw TF error that names no file, and a damaged state file in a `ValueError` or
`UnicodeDecodeError`. Here:

* the candidates are the numbered checkpoints found on disk (`NAME-N.index` / `NAME-N.data-*`)
  together with those the state file lists, newest (largest N) first; a damaged state file is
  reported, not fatal;
* `restore_newest` restores the newest candidate that restores and says which newer ones were
  skipped and why; when candidates exist but none restores it raises `CheckpointError` and
  touches nothing;
* `keep_damaged` moves the skipped (newer) checkpoints to `checkpoints/damaged/<time>/` with a
  note, and rewrites the state file to list only checkpoints up to the restored one, so a
  `CheckpointManager` created afterwards can neither overwrite (same step number) nor delete them.

Every file operation goes through `tf.io.gfile` (`runs.files`): the directory may be `gs://...`.
"""
import dataclasses
import datetime
import json
import os
import re
import time

import tensorflow as tf
from absl import logging

from tf_pyramid.runs import files

STATE_FILE = "checkpoint"
DAMAGED_DIR = "damaged"
_CHECKPOINT_FILE = re.compile(r"^(?P<prefix>.+-(?P<number>\d+))\.(index|data-\d+-of-\d+)$")


class CheckpointError(ValueError):
    """Checkpoints exist but the one(s) asked for do not restore; the message lists why."""


@dataclasses.dataclass
class Restored:
    """What `restore_newest` did: the restored prefix (None: no checkpoint at all), the newer
    candidates skipped as `(prefix, reason)`, and the state file's problem (None if sound)."""
    path: object = None
    skipped: list = dataclasses.field(default_factory=list)
    state_problem: object = None
    candidates: list = dataclasses.field(default_factory=list)


def checkpoint_number(prefix):
    match = re.search(r"-(\d+)$", prefix)
    return int(match.group(1)) if match else -1


def read_state(directory):
    """`(listed prefixes, problem)` of the state file: absolute prefixes, and a description of why
    the file cannot be used (None when it is sound or absent)."""
    path = os.path.join(directory, STATE_FILE)
    if not files.exists(path):
        return [], None
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception as error:  # noqa: BLE001  (ValueError, UnicodeDecodeError, text-proto errors)
        return [], f"{type(error).__name__}: {_first_line(error)}"
    if state is None or not state.model_checkpoint_path:
        return [], "empty or without a latest checkpoint"
    listed = list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]
    return sorted({_in_directory(directory, p) for p in listed}, key=checkpoint_number), None


def _in_directory(directory, prefix):
    """A state file's prefix (relative, absolute or a URL) as a path in `directory`."""
    return prefix if files.is_url(prefix) or os.path.isabs(prefix) \
        else os.path.join(directory, prefix)


def find_checkpoints(directory):
    """`(candidate prefixes newest first, state problem)`: the numbered checkpoints with files
    on disk, whatever the state file says, plus the listed ones that have any file."""
    prefixes = set()
    for name in (files.listdir(directory) if files.isdir(directory) else []):
        match = _CHECKPOINT_FILE.match(name)
        if match:
            prefixes.add(os.path.join(directory, match.group("prefix")))
    listed, problem = read_state(directory)
    prefixes.update(p for p in listed if _files_of(p))
    return sorted(prefixes, key=checkpoint_number, reverse=True), problem


def has_checkpoints(directory):
    """Whether `directory` holds any checkpoint file (a run to resume rather than start)."""
    return bool(find_checkpoints(directory)[0])


def _files_of(prefix):
    """The index and data files of the checkpoint `prefix` (listed, not globbed: a directory
    name may hold glob characters)."""
    directory, name = os.path.split(prefix)
    if not files.isdir(directory):
        return []
    return sorted(os.path.join(directory, n) for n in files.listdir(directory)
                  if (m := _CHECKPOINT_FILE.match(n)) and m.group("prefix") == name)


def _first_line(error):
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(error)).strip()
    return (text.splitlines() or [type(error).__name__])[0][:300]


def _why_not_restorable(checkpoint, prefix, partial):
    """None if `checkpoint` restored from `prefix`, else why not (naming the damaged file)."""
    name = os.path.basename(prefix)
    present = _files_of(prefix)
    if prefix + ".index" not in present:
        return f"its index file {name}.index is missing"
    if len(present) < 2:
        return f"its data file {name}.data-* is missing"
    try:
        # Reads the index only. Not `tf.train.load_checkpoint`, which first asks whether the
        # prefix is a directory: on `ram://` any prefix of a file name is one.
        tf.compat.v1.train.NewCheckpointReader(prefix)
    except Exception as error:  # noqa: BLE001
        return f"its index file {name}.index is damaged ({_first_line(error)})"
    try:
        status = checkpoint.restore(prefix)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as error:
        return f"it does not match this model ({_first_line(error)})"
    except Exception as error:  # noqa: BLE001  (DataLossError, IndexError, NotFoundError, ...)
        return f"its data file {name}.data-* is damaged ({_first_line(error)})"
    return None


def restore_file(checkpoint, prefix, partial=False):
    """Restores `checkpoint` from `prefix`; `CheckpointError` naming the file if it fails."""
    reason = _why_not_restorable(checkpoint, prefix, partial)
    if reason:
        raise CheckpointError(f"Checkpoint {prefix} does not restore: {reason}.")
    return prefix


def restore_newest(checkpoint, directory, partial=False):
    """Restores `checkpoint` from the newest checkpoint in `directory` that restores.

    `partial`: the checkpoint may hold more than `checkpoint` (e.g. an optimizer when loading a
    model only). Returns `Restored`; logs every skipped checkpoint. Raises `CheckpointError`
    (nothing moved or deleted) when checkpoints exist but none restores.
    """
    candidates, problem = find_checkpoints(directory)
    if problem:
        logging.warning("The checkpoint state file %s is unusable (%s); checkpoints are taken "
                        "from their file names.", os.path.join(directory, STATE_FILE), problem)
    skipped = []
    for prefix in candidates:
        reason = _why_not_restorable(checkpoint, prefix, partial)
        if reason is None:
            for path, why in skipped:
                logging.warning("Skipped checkpoint %s: %s.", path, why)
            return Restored(prefix, skipped, problem, candidates)
        skipped.append((prefix, reason))
    if candidates:
        lines = "\n".join(f"  {os.path.basename(p)}: {why}" for p, why in skipped)
        raise CheckpointError(
            f"None of the {len(candidates)} checkpoint(s) in {directory} restores:\n{lines}\n"
            "Nothing was deleted. Restore the directory from a backup, or move it away to start "
            "the run again from scratch.")
    return Restored(None, [], problem, [])


def keep_damaged(directory, restored):
    """Moves the checkpoints `restored` skipped (all newer than the restored one) and a damaged
    state file to `directory/damaged/<UTC time>/` with a note, and rewrites the state file to
    list the checkpoints up to the restored one. Returns the folder, or None if nothing moved.

    Only the process that owns `directory` (the chief) may call this.
    """
    moved_to = None
    if restored.skipped or restored.state_problem:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        moved_to = os.path.join(directory, DAMAGED_DIR, stamp)
        files.makedirs(moved_to)
        notes = [f"{os.path.basename(p)}: {why}" for p, why in restored.skipped]
        for prefix, _ in restored.skipped:
            for path in _files_of(prefix):
                files.move(path, os.path.join(moved_to, os.path.basename(path)))
        state_path = os.path.join(directory, STATE_FILE)
        if restored.state_problem and files.exists(state_path):
            files.move(state_path, os.path.join(moved_to, STATE_FILE))
            notes.append(f"{STATE_FILE} (the state file): {restored.state_problem}")
        files.write_text(os.path.join(moved_to, "WHY.txt"),
                         f"Moved here on {stamp} when the run resumed from "
                         f"{os.path.basename(restored.path or 'nothing')}:\n" +
                         "".join(f"  {line}\n" for line in notes))
        logging.warning("Kept the damaged checkpoint files in %s (see WHY.txt there).", moved_to)
    if restored.path:
        _rewrite_state(directory, restored.path)
    return moved_to


def _rewrite_state(directory, latest):
    """Makes the state file name `latest` as the newest and list the older checkpoints on disk
    (relative names, their index times as timestamps, so the manager's rotation still works)."""
    listed, problem = read_state(directory)
    keep = [p for p in find_checkpoints(directory)[0]
            if checkpoint_number(p) <= checkpoint_number(latest) and files.exists(p + ".index")]
    keep = sorted(keep, key=checkpoint_number)
    if not problem and listed and listed[-1] == latest and set(listed) == set(keep):
        return
    times = [min(files.getmtime(p + ".index"), time.time()) for p in keep]
    # The CheckpointState text proto, as CheckpointManager writes it (tf.train has no writer).
    lines = [f"model_checkpoint_path: {json.dumps(os.path.basename(latest))}"]
    lines += [f"all_model_checkpoint_paths: {json.dumps(os.path.basename(p))}" for p in keep]
    lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
    lines.append(f"last_preserved_timestamp: {min(times) - 1.0!r}")
    files.write_text(os.path.join(directory, STATE_FILE), "\n".join(lines) + "\n")


def manager_after_restore(checkpoint, directory, max_to_keep, restored=None):
    """The run's `tf.train.CheckpointManager`, created after `keep_damaged` (which left only
    checkpoints up to the restored one in its state): it deletes only older ones, oldest first."""
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)
    same_directory = restored is not None and restored.path and (
        os.path.dirname(files.absolute(restored.path)) == files.absolute(directory))
    if same_directory:
        newer = [p for p in find_checkpoints(directory)[0]
                 if checkpoint_number(p) > checkpoint_number(restored.path)]
        if newer:  # keep_damaged was not called (another process owns the directory)
            raise CheckpointError(f"{directory} holds checkpoints newer than the restored "
                                  f"{restored.path}: {newer}; they would be overwritten.")
    return manager
