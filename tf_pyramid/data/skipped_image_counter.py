"""Counts images that were read but not decoded, with no Python in the per-example path."""
import tensorflow as tf
from absl import logging


class SkippedImageCounter:
    """Two CPU int64 variables: images read, images decoded; skipped = read - decoded.

    The per-example map bumps `read` before decoding and `decoded` after it, so an image dropped
    for any reason (failed check, decoder error swallowed by `ignore_errors`) shows in the
    difference. The difference is exact once a pass has finished (during a pass, images still in
    flight in the parallel map count as read). `log_after_each_pass` appends an empty tail to the
    dataset that logs the count (absl) when a pass ends. Create it outside `strategy.scope()`
    (the usual place for input pipelines): tf.data can only use CPU resources.
    """

    def __init__(self, name):
        self.name = name
        with tf.init_scope(), tf.device("/CPU:0"):
            self.read = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_read")
            self.decoded = tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name=f"{name}_decoded")

    def count_read(self, tensor):
        """`tensor`, after adding one to `read`."""
        with tf.control_dependencies([self.read.assign_add(1)]):
            return tf.identity(tensor)

    def count_decoded(self, tensor):
        """`tensor`, after adding one to `decoded` (call on the decoded image)."""
        with tf.control_dependencies([tensor]):
            bump = self.decoded.assign_add(1)
        with tf.control_dependencies([bump]):
            return tf.identity(tensor)

    @property
    def skipped(self):
        return int(self.read.numpy() - self.decoded.numpy())

    def log(self):
        read, skipped = int(self.read.numpy()), self.skipped
        if skipped:
            logging.warning("%s: skipped %d undecodable image(s) of %d read so far "
                            "(strict=True raises on the first, naming the file).",
                            self.name, skipped, read)
        else:
            logging.info("%s: %d images read, none undecodable.", self.name, read)
        return skipped

    def log_after_each_pass(self, dataset):
        """`dataset` followed by an empty tail whose only effect is to call `log()`."""
        def log_once(_):
            logged = tf.py_function(self.log, [], tf.int64)  # once per pass, not per example
            with tf.control_dependencies([logged]):
                return tf.nest.map_structure(
                    lambda spec: tf.zeros([d or 0 for d in spec.shape], spec.dtype),
                    dataset.element_spec)

        tail = tf.data.Dataset.range(1).map(log_once).filter(lambda *_: False)
        return dataset.concatenate(tail)
