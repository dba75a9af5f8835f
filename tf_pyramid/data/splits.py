"""`check_split`: does a split exist, with labels, before a long run depends on it?

A run evaluates its final split only at the very end: a split that is not there or has no labels
(tfds `imagenet2012` test: every label is -1; the Inception/slim TFRecord layout: no test files; a
folder without that split) would fail, or report nonsense, after all the training. This check
lists files and reads at most one record; it downloads, prepares and decodes nothing.
"""
import tensorflow as tf

from tf_pyramid.data import sources
from tf_pyramid.data import mnist
from tf_pyramid.data.builder import DATASETS


def check_split(dataset, split, *, source="tfds", data_dir=None, validation_fraction=None):
    """Raises ValueError / FileNotFoundError, saying what to do, unless `split` of `dataset` can be
    read with labels. Arguments as for `build_dataset` (`source`: MNIST only; `validation_fraction`:
    folder only). MNIST splits always have labels (tfds downloads `mnist` on first use)."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; expected one of {list(DATASETS)}.")
    if split not in sources.SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {list(sources.SPLITS)}.")
    if dataset == "mnist":
        if source not in mnist.SOURCES:
            raise ValueError(f"Unknown MNIST source {source!r}; expected one of "
                             f"{list(mnist.SOURCES)}.")
        if validation_fraction is not None:
            raise ValueError("MNIST has a fixed validation split: validation_fraction applies to "
                             f"dataset='folder' only; got {validation_fraction!r}.")
    elif dataset == "folder":
        sources.folders.folder_split(data_dir, split, validation_fraction=validation_fraction)
    elif dataset == "tfrecord":
        sources.common.refuse_validation_fraction(dataset, validation_fraction)
        _check_tfrecord_split(split, data_dir)
    else:
        sources.common.refuse_validation_fraction(dataset, validation_fraction)
        _check_tfds_imagenet_split(split, data_dir)


def _check_tfds_imagenet_split(split, data_dir):
    if split == "test":
        raise ValueError(
            "tfds imagenet2012's test split has no labels (tfds stores -1 for every test image: "
            "ImageNet's test labels are not public). Evaluate on 'validation', as the paper does.")
    import tensorflow_datasets as tfds

    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not builder.is_prepared():
        sources.tfds.check_manual_tars(sources.tfds.tfds_root(data_dir))  # build_dataset prepares then
        return
    splits = builder.info.splits
    if len(splits) and split not in splits:  # (tfds's mock builders report no splits)
        raise FileNotFoundError(
            f"tfds imagenet2012 in {builder.data_dir} was prepared without a {split!r} split (it "
            f"has {sorted(splits)}): put {', '.join(sources.tfds.MANUAL_TARS)} in the manual download "
            f"folder, delete {builder.data_dir} and call build_dataset again to prepare it.")


def _check_tfrecord_split(split, data_dir):
    files = sources.tfrecords.tfrecord_files(split, data_dir)  # FileNotFoundError with the layout
    try:
        first = next(iter(tf.data.TFRecordDataset(files).take(1)), None)
    except tf.errors.OpError as error:
        raise ValueError(f"Cannot read the TFRecords of split {split!r} ({files[0]} ...): "
                         f"{error.message}") from None
    if first is None:
        raise ValueError(f"The {len(files)} TFRecord files of split {split!r} ({files[0]} ...) "
                         "hold no records.")
    label = tf.io.parse_single_example(first, {"image/class/label": tf.io.FixedLenFeature(
        [], tf.int64, default_value=-1)})["image/class/label"].numpy()
    if label < 1:
        raise ValueError(
            f"Split {split!r} has no labels: the first record of {files[0]} has "
            + ("no image/class/label" if label == -1 else f"image/class/label {label}")
            + " (labels are 1-based in the Inception/slim layout, whose converter labels train "
            "and validation only). Evaluate on 'validation'.")
