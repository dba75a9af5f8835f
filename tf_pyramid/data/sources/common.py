"""What the three sources of encoded ImageNet-style images share (tfds `tfds.py`, TFRecords
`tfrecords.py`, a folder of classes `folders.py`; the registry is `sources/__init__.py`).

Each source returns an `ImageRecords`: a dataset of raw elements (a dict: a serialized
TFRecord and its shard, a tfds example, a file path and label), `parse` which turns one raw
element into the record dict `{"encoded": string, "label": int32 (0-based), "bboxes": float32
[N, 4] (ymin, xmin, ymax, xmax, normalised; N may be 0), "name": string (names the file in
errors)}`, plus what is known about the split. `parse` runs inside the builder's one parallel
map, with the decode and the augmentation: a separate parse stage costs a hand-off per element.
Order (deterministic or not) is set once, by the builder's `tf.data.Options` for the whole pipeline.
"""
import collections

import tensorflow as tf

IMAGENET_NUM_CLASSES = 1000
LABELS_FILE = "labels.txt"
SPLITS = ("train", "validation", "test")
NAMES_SHOWN = 10  # folders / files named in a warning or an error, at most
TFRECORD_SHUFFLE_BUFFER = 4_096   # encoded JPEGs of ~110 kB: ~450 MB of host memory
TFRECORD_CYCLE_LENGTH = 16
TFRECORD_READ_BUFFER = 8 << 20

ImageRecords = collections.namedtuple(
    "ImageRecords", ["dataset", "parse", "num_examples", "num_classes", "class_names", "sharded",
                     "lost_records"], defaults=[None])  # lost_records: TFRecords only


def shard_list(items, input_context):
    """Per-worker slice of a static list (files, or folder (path, label) pairs), when there are
    enough items to go round; returns (items, sharded), sharded False: shard the records instead."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return items, True
    if len(items) < input_context.num_input_pipelines:
        return items, False
    return items[input_context.input_pipeline_id::input_context.num_input_pipelines], True


def named(items):
    """The first few of `items` and how many there are, for a message."""
    shown = list(items)[:NAMES_SHOWN]
    more = len(items) - len(shown)
    return f"{shown}" + (f" and {more} more" if more else "")


def refuse_validation_fraction(dataset, validation_fraction):
    """tfds and TFRecord sources have their own validation split: no hash split there."""
    if validation_fraction is not None:
        raise ValueError(f"validation_fraction applies to dataset='folder' only ({dataset!r} has "
                         f"its own validation split); got {validation_fraction!r}.")


def source_class_names(dataset, own_names, num_classes, class_names):
    """The class names to report for a tfds / TFRecord source, checked against `class_names`
    (e.g. kept by the trainer from an earlier run), which must match what the data says."""
    if class_names is None:
        return own_names
    class_names = list(class_names)
    if (own_names is not None and class_names != list(own_names)) or (
            len(class_names) != num_classes):
        raise ValueError(f"The {dataset!r} data in this data_dir has {num_classes} classes "
                         f"{'(' + LABELS_FILE + ')' if own_names else ''}, which differ from the "
                         f"{len(class_names)} given class_names: this run's labels would not mean "
                         "what the model learnt. Point data_dir at the same data.")
    return class_names


def read_names(path):
    """The non-empty lines of a class-names file, or None when there is no such file."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return [line.strip() for line in f if line.strip()]
