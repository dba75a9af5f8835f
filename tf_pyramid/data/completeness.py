"""Refusing an evaluation that read less than its whole split.

An accuracy computed on part of a split (damaged TFRecord shards, undecodable or vanished files)
is not comparable with one on the whole split, and nothing in the number says so. After an
evaluation pass, `check_complete` compares the examples read with what the split holds: its known
size (folder, tfds), or, where the size is unknown without reading every shard (TFRecords),
the losses the pipeline counted; a difference raises `IncompleteSplitError` unless the caller
allows it.
"""
from absl import logging


class IncompleteSplitError(ValueError):
    """An evaluation read fewer examples than its split holds (see `check_complete`).
    `expected` (None: unknown, then at least `read` + the counted losses), `read`, `lost` (text)."""

    def __init__(self, message, expected, read, lost):
        super().__init__(message)
        self.expected, self.read, self.lost = expected, read, lost


def _losses(info):
    """Sentences on what the last finished pass lost, and the number of examples known lost."""
    parts, known = [], 0
    skipped = info.skipped_images
    if skipped is not None and skipped.last_pass_skipped:
        known += skipped.last_pass_skipped
        names = skipped.last_pass_names
        parts.append(f"{skipped.last_pass_skipped} undecodable or unreadable image(s) skipped"
                     + (f" (the first failing the format check: {', '.join(names)})"
                        if names else ""))
    lost = info.lost_records
    if lost is not None and lost.last_pass:
        known += lost.lost_records
        parts.append(lost.describe())
    return parts, known


def check_complete(info, num_read, *, allow_incomplete=False):
    """Raises `IncompleteSplitError` if an evaluation pass read fewer examples than the split of
    `info` (a `DatasetInfo` of an ImageNet-style source, after the pass) holds; with
    `allow_incomplete`, logs a warning instead. Returns the warning text ('' when complete).
    MNIST (no `skipped_images` counter; documented sizes) is not checked."""
    if info.skipped_images is None:
        return ""
    num_read = int(round(num_read))
    parts, known_lost = _losses(info)
    expected = info.num_examples
    if expected is not None:
        if num_read == expected:
            return ""
        wanted = f"{expected}"
    else:
        rest = info.lost_records.lost_rest_bytes if info.lost_records is not None else 0
        if not known_lost and not rest:
            return ""
        wanted = f"at least {num_read + known_lost}"
    what = "; ".join(parts) or "nothing was counted as lost (did the data change during the run?)"
    split = info.split or "the split"
    message = (f"Expected {wanted} examples from {split}, read {num_read}: {what}. An accuracy "
               "over part of the split is not comparable with one over all of it; repair the "
               "data, or accept a partial evaluation explicitly (--allow_incomplete; in Python "
               "allow_incomplete=True).")
    if not allow_incomplete:
        raise IncompleteSplitError(message, expected, num_read, what)
    logging.warning("Partial evaluation (allowed): %s", message)
    return message
