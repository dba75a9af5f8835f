"""TFRecords in the Inception/slim layout as a source of encoded images (see `common`)."""
import functools
import os

import tensorflow as tf

from tf_pyramid.data import tfrecord_shards
from tf_pyramid.data.sources import common


def tfrecord_files(split, data_dir):
    """Files of a split: `<dir>/<split>-*` (Inception/slim layout) or a pattern with `{split}`."""
    if not data_dir:
        raise ValueError("dataset='tfrecord' needs data_dir: a directory of "
                         "'train-00000-of-01024'-style files, or a file pattern with {split}.")
    pattern = (data_dir.format(split=split) if "{split}" in data_dir
               else os.path.join(data_dir, f"{split}-*"))
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"No TFRecord files match {pattern!r} (split {split!r}). Expected the Inception/slim "
            "layout: <data_dir>/train-00000-of-01024 ..., <data_dir>/validation-00000-of-00128 "
            "..., with features image/encoded and 1-based image/class/label."
            + (" That conversion writes no test files (ImageNet's test labels are not public): "
               "evaluate on 'validation'." if split == "test" else ""))
    return files


def _parse_tfrecord(raw, num_classes, with_boxes):
    """{"serialized", "shard"} -> record dict; checks the 1-based label. Boxes are parsed only
    for training (the crop is their only reader); otherwise [0, 4]."""
    shard = raw["shard"]
    box_keys = ("ymin", "xmin", "ymax", "xmax") if with_boxes else ()
    features = tf.io.parse_single_example(raw["serialized"], {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        **{f"image/object/bbox/{k}": tf.io.RaggedFeature(tf.float32) for k in box_keys},
    })
    name = tf.strings.join([shard, features["image/filename"]], separator=":")
    label = tf.cast(features["image/class/label"], tf.int32) - 1  # stored 1-based (slim)
    check = tf.debugging.Assert(
        (label >= 0) & (label < num_classes),
        ["image/class/label must be 1-based, in [1, num_classes]; got", label + 1,
         "with num_classes", num_classes, "in", name])
    with tf.control_dependencies([check]):
        label = tf.identity(label)
    bboxes = (tf.stack([features[f"image/object/bbox/{k}"] for k in box_keys], axis=1)
              if with_boxes else tf.zeros([0, 4], tf.float32))
    return {"encoded": features["image/encoded"], "label": label, "bboxes": bboxes, "name": name}


def tfrecord_records(split, data_dir, *, training, seed, input_context, class_names=None,
                     validation_fraction=None):
    """TFRecords in the Inception/slim layout; `labels.txt` beside them names the classes."""
    common.refuse_validation_fraction("tfrecord", validation_fraction)
    files = tfrecord_files(split, data_dir)
    own_names = common.read_names(os.path.join(os.path.dirname(files[0]), common.LABELS_FILE))
    num_classes = len(own_names) if own_names else common.IMAGENET_NUM_CLASSES
    class_names = common.source_class_names("tfrecord", own_names, num_classes, class_names)
    files, sharded = common.shard_list(files, input_context)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed)
    # A damaged record costs itself (and, with a damaged length header, the rest of its shard),
    # counted and named in `lost` (tfrecord_shards), instead of silently ending its shard.
    lost = tfrecord_shards.LostRecordCounter(f"tfrecord/{split}")
    dataset = dataset.interleave(
        lambda shard: tfrecord_shards.shard_records(shard, lost, common.TFRECORD_READ_BUFFER),
        cycle_length=min(common.TFRECORD_CYCLE_LENGTH, len(files)), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        dataset = dataset.shuffle(common.TFRECORD_SHUFFLE_BUFFER, seed=seed)
    parse = functools.partial(_parse_tfrecord, num_classes=num_classes, with_boxes=training)
    return common.ImageRecords(dataset, parse, None, num_classes, class_names, sharded, lost)
