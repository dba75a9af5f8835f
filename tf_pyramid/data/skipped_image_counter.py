"""Counts images that were read but not decoded, with no Python in the per-example path."""
import numpy as np
import tensorflow as tf
from absl import logging

NAMES_LOGGED = 5  # file names kept (and logged) per pass


class SkippedImageCounter:
    """Two CPU int64 variables: images read, images decoded; skipped = read - decoded.

    The per-example map bumps `read` before decoding and `decoded` after it, so an image dropped
    for any reason (failed check, decoder error swallowed by `ignore_errors`) shows in the
    difference. The difference is exact once a pass has finished (during a pass, images still in
    flight in the parallel map count as read). `log_after_each_pass` appends an empty tail to the
    dataset that logs the count (absl) when a pass ends, with the names of the pass's first
    NAMES_LOGGED files that failed the structural check (`count_failed_check`; files that pass
    it and still fail in the decoder are counted, not named: no name reaches the error handler).
    Create it outside `strategy.scope()` (the usual place for input pipelines): tf.data can only
    use CPU resources.
    """

    def __init__(self, name):
        self.name = name
        with tf.init_scope(), tf.device("/CPU:0"):
            self.read = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_read")
            self.decoded = tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name=f"{name}_decoded")
            self.failed_this_pass = tf.Variable(0, dtype=tf.int64, trainable=False,
                                                name=f"{name}_failed_this_pass")
            # Slot i < NAMES_LOGGED: the pass's i-th failing file; the last slot takes the rest.
            self.names = tf.Variable([""] * (NAMES_LOGGED + 1), dtype=tf.string,
                                     trainable=False, name=f"{name}_names")
            # Parallel map calls may fail together: taking a slot is one exclusive step.
            self._names_lock = tf.CriticalSection(name=f"{name}_names_lock")
        self.last_pass_skipped = 0  # skipped in the last finished pass (set by `log`)
        self.last_pass_names = []  # its first failing names
        self._skipped_at_last_log = 0

    def count_read(self, structure):
        """`structure` (a tensor or a dict of them), after adding one to `read`: call it before
        anything that may fail (reading the file), so that a failure counts as skipped."""
        with tf.control_dependencies([self.read.assign_add(1)]):
            return tf.nest.map_structure(tf.identity, structure)

    def count_decoded(self, tensor):
        """`tensor`, after adding one to `decoded` (call on the decoded image)."""
        with tf.control_dependencies([tensor]):
            bump = self.decoded.assign_add(1)
        with tf.control_dependencies([bump]):
            return tf.identity(tensor)

    def count_failed_check(self, name):
        """An op that keeps `name` if it is among the pass's first NAMES_LOGGED failing files
        (call only for a record that failed the check, e.g. in the skip branch)."""
        def take_slot():
            slot = tf.minimum(self.failed_this_pass.assign_add(1) - 1, NAMES_LOGGED)
            return self.names.scatter_update(tf.IndexedSlices(tf.reshape(name, [1]),
                                                              tf.reshape(slot, [1])))

        return self._names_lock.execute(take_slot)

    @property
    def first_skipped_names(self):
        """The kept names (bytes decoded to str) of this pass's first failing files, in order."""
        count = min(int(self.failed_this_pass.numpy()), NAMES_LOGGED)
        return [name.decode("utf-8", "replace") for name in self.names.numpy()[:count]]

    @property
    def skipped(self):
        return int(self.read.numpy() - self.decoded.numpy())

    def log(self):
        """Logs the count and the pass's first failing names, then starts a new pass's names."""
        read, skipped = int(self.read.numpy()), self.skipped
        names, failed = self.first_skipped_names, int(self.failed_this_pass.numpy())
        self.last_pass_skipped = skipped - self._skipped_at_last_log
        self.last_pass_names, self._skipped_at_last_log = names, skipped
        if skipped:
            named = (f" This pass, {failed} failed the format check; the first: "
                     f"{', '.join(names)}{', ...' if failed > len(names) else ''}."
                     if names else "")
            logging.warning("%s: skipped %d undecodable image(s) (or unreadable files) of %d "
                            "read so far (strict=True raises on the first, naming the file).%s",
                            self.name, skipped, read, named)
        else:
            logging.info("%s: %d images read, none undecodable.", self.name, read)
        self.failed_this_pass.assign(0)
        self.names.assign([""] * (NAMES_LOGGED + 1))
        return skipped

    def log_after_each_pass(self, dataset):
        """`dataset` followed by an empty tail whose only effect is to call `log()`."""
        return call_after_each_pass(dataset, self.log)


def call_after_each_pass(dataset, fn):
    """`dataset` followed by an empty tail whose only effect is to call `fn()` (returning an
    int64) once at the end of every pass over it, not once per example."""
    def call_once(_):
        called = tf.py_function(lambda: np.int64(fn()), [], tf.int64)
        with tf.control_dependencies([called]):
            return tf.nest.map_structure(
                lambda spec: tf.zeros([d or 0 for d in spec.shape], spec.dtype),
                dataset.element_spec)

    tail = tf.data.Dataset.range(1).map(call_once).filter(lambda *_: False)
    return dataset.concatenate(tail)
