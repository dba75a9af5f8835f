"""A Keras callback that logs attention pictures of fixed validation images to TensorBoard."""
import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tf_pyramid.modeling import ImagePreprocessor
from tf_pyramid.visualization import attention_figure, attention_views, figure_to_array


def write_image_summary(tag, picture, step):
    """The record `tf.summary.image` writes for one RGB uint8 picture [H, W, 3] (the image
    plugin's [width, height, PNG] strings), through the core `tf.summary.write`: the `tensorboard`
    package, which implements `tf.summary.image`, need not be installed (as the trainer's scalars).
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "images"
    height, width = picture.shape[:2]
    tensor = tf.stack([tf.as_string(width), tf.as_string(height),
                       tf.io.encode_png(tf.convert_to_tensor(picture, tf.uint8))])
    return tf.summary.write(tag, tensor, step=step, metadata=metadata.SerializeToString())


class AttentionImages(keras.callbacks.Callback):
    """Writes the attention picture (see `tf_pyramid.visualization`) of a few fixed images to
    TensorBoard (`tf.summary.image`) at the end of every `every` epochs.

    With `model.fit`: pass it in `callbacks=[...]`. In a custom loop: `cb.set_model(model)` once,
    then `cb.on_epoch_end(epoch)` after each epoch.

    Args:
        images: model-ready images [K, S, S, C] (as the validation pipeline yields them), or a
            `tf.data.Dataset` of (images, labels) / images batches: the first `max_images` are used.
        log_dir: TensorBoard log directory; the summaries go to `log_dir/<subdir>`.
        value_range: the images' value range for display; default: the model's own
            (`model.preprocessor`).
        max_images, every, tag, subdir, panel_px: as named.
        policy: attention policy; None = the model's own unless it samples (then "threshold").
        writer: an existing `tf.summary` writer to use instead of `log_dir`.
    """

    def __init__(self, images, log_dir=None, value_range=None, max_images=4, every=1,
                 tag="attention", subdir="attention", panel_px=128, policy=None,
                 class_names=None, writer=None):
        super().__init__()
        if log_dir is None and writer is None:
            raise ValueError("AttentionImages needs log_dir or writer.")
        self.images = self._take(images, max_images)
        self.log_dir = log_dir
        self.value_range = value_range
        self.every = max(1, int(every))
        self.tag = tag
        self.subdir = subdir
        self.panel_px = panel_px
        self.policy = policy
        self.class_names = class_names
        self._writer = writer

    @staticmethod
    def _take(images, max_images):
        if isinstance(images, tf.data.Dataset):
            batches = []
            for element in images:
                batch = element[0] if isinstance(element, (tuple, list)) else element
                batches.append(np.asarray(batch))
                if sum(len(b) for b in batches) >= max_images:
                    break
            images = np.concatenate(batches)
        images = np.asarray(images, np.float32)[:max_images]
        if images.ndim != 4 or not len(images):
            raise ValueError(f"AttentionImages needs images [K, S, S, C] with K >= 1; got shape "
                             f"{images.shape}.")
        return images

    @property
    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, self.subdir))
        return self._writer

    def picture(self):
        """The current attention picture, RGB uint8 [H, W, 3]."""
        value_range = self.value_range or ImagePreprocessor.of_model(self.model).value_range
        views = attention_views(self.model, self.images, policy=self.policy)
        fig = attention_figure(views, value_range, class_names=self.class_names,
                               panel_px=self.panel_px)
        return figure_to_array(fig)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        picture = self.picture()
        with self.writer.as_default():
            write_image_summary(self.tag, picture, step=int(epoch))
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
