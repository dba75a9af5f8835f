"""Sources of encoded ImageNet-style images (paper A.6.2): tfds, TFRecords, a folder of classes.

Each source returns an `ImageRecords`: a dataset of dicts `{"encoded": string, "label": int32
(0-based), "bboxes": float32 [N, 4] (ymin, xmin, ymax, xmax, normalised; N may be 0), "name":
string (names the file in errors)}` plus what is known about the split. Decoding happens later,
in the builder's parallel map, so that the training crop can decode only the cropped window.
Order (deterministic or not) is set once, by the builder's `tf.data.Options` for the whole pipeline.
"""
import collections
import os

import tensorflow as tf
from absl import logging

IMAGENET_NUM_CLASSES = 1000
MANUAL_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
TEST_TAR = "ILSVRC2012_img_test.tar"
CLASS_INDEX_FILE = "class_index.txt"
LABELS_FILE = "labels.txt"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
SPLITS = ("train", "validation", "test")
TFRECORD_SHUFFLE_BUFFER = 4_096   # encoded JPEGs of ~110 kB: ~450 MB of host memory
TFRECORD_CYCLE_LENGTH = 16
TFRECORD_READ_BUFFER = 8 << 20

ImageRecords = collections.namedtuple(
    "ImageRecords", ["dataset", "num_examples", "num_classes", "class_names", "sharded"])


def _shard_list(items, input_context):
    """Per-worker slice of a static list (files, or folder (path, label) pairs), when there are
    enough items to go round; returns (items, sharded), sharded False: shard the records instead."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return items, True
    if len(items) < input_context.num_input_pipelines:
        return items, False
    return items[input_context.input_pipeline_id::input_context.num_input_pipelines], True


# -------------------------------------------------------------------------------------------- tfds
def tfds_records(split, data_dir, *, training, seed, input_context):
    """tfds `imagenet2012` (manual download). Missing tars: FileNotFoundError with instructions."""
    import tensorflow_datasets as tfds

    root = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not builder.is_prepared():
        manual_dir = os.path.join(root, "downloads", "manual")
        missing = [tar for tar in MANUAL_TARS
                   if not tf.io.gfile.exists(os.path.join(manual_dir, tar))]
        if missing:
            raise FileNotFoundError(
                f"tfds 'imagenet2012' is not prepared under {root} and its manual download is "
                f"missing: {', '.join(missing)} not in {manual_dir}. Register at "
                "https://image-net.org/download-images, download ILSVRC2012_img_train.tar and "
                f"ILSVRC2012_img_val.tar (optionally {TEST_TAR} for the test split), put them in "
                f"{manual_dir}, then run `tfds build imagenet2012 --data_dir={root} "
                f"--manual_dir={manual_dir}` (several hours) or call build_dataset again.")
        logging.info("Preparing tfds imagenet2012 from %s (several hours, once).", manual_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    splits = builder.info.splits
    if len(splits) and split not in splits:  # mocked builders report no splits
        raise ValueError(f"tfds imagenet2012 has no {split!r} split here (it has "
                         f"{sorted(splits)}); the test split needs {TEST_TAR}.")
    read_config = tfds.ReadConfig(input_context=input_context, shuffle_seed=seed,
                                  interleave_cycle_length=TFRECORD_CYCLE_LENGTH,
                                  num_parallel_calls_for_interleave_files=tf.data.AUTOTUNE)
    dataset = builder.as_dataset(split=split, shuffle_files=training, read_config=read_config,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    dataset = dataset.map(lambda example: {
        "encoded": example["image"], "label": tf.cast(example["label"], tf.int32),
        "bboxes": tf.zeros([0, 4], tf.float32), "name": example["file_name"]},
        num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        dataset = dataset.shuffle(TFRECORD_SHUFFLE_BUFFER, seed=seed)
    num_examples = splits[split].num_examples if split in splits else None
    label = builder.info.features["label"]
    return ImageRecords(dataset, num_examples, label.num_classes, list(label.names),
                        sharded=input_context is not None)


# --------------------------------------------------------------------------------------- TFRecords
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
            "..., with features image/encoded and 1-based image/class/label.")
    return files


def _parse_tfrecord(serialized, shard, num_classes):
    features = tf.io.parse_single_example(serialized, {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        **{f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32)
           for k in ("ymin", "xmin", "ymax", "xmax")},
    })
    name = tf.strings.join([shard, features["image/filename"]], separator=":")
    label = tf.cast(features["image/class/label"], tf.int32) - 1  # stored 1-based (slim)
    check = tf.debugging.Assert(
        (label >= 0) & (label < num_classes),
        ["image/class/label must be 1-based, in [1, num_classes]; got", label + 1,
         "with num_classes", num_classes, "in", name])
    with tf.control_dependencies([check]):
        label = tf.identity(label)
    bboxes = tf.stack([tf.sparse.to_dense(features[f"image/object/bbox/{k}"])
                       for k in ("ymin", "xmin", "ymax", "xmax")], axis=1)
    return {"encoded": features["image/encoded"], "label": label, "bboxes": bboxes, "name": name}


def _read_names(path):
    """The non-empty lines of a class-names file, or None when there is no such file."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return [line.strip() for line in f if line.strip()]


def tfrecord_records(split, data_dir, *, training, seed, input_context):
    """TFRecords in the Inception/slim layout; `labels.txt` beside them names the classes."""
    files = tfrecord_files(split, data_dir)
    class_names = _read_names(os.path.join(os.path.dirname(files[0]), LABELS_FILE))
    num_classes = len(class_names) if class_names else IMAGENET_NUM_CLASSES
    files, sharded = _shard_list(files, input_context)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.interleave(
        lambda shard: tf.data.TFRecordDataset(shard, buffer_size=TFRECORD_READ_BUFFER).map(
            lambda serialized: (serialized, shard)),
        cycle_length=min(TFRECORD_CYCLE_LENGTH, len(files)), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        dataset = dataset.shuffle(TFRECORD_SHUFFLE_BUFFER, seed=seed)
    dataset = dataset.map(lambda serialized, shard: _parse_tfrecord(serialized, shard, num_classes),
                          num_parallel_calls=tf.data.AUTOTUNE)
    return ImageRecords(dataset, None, num_classes, class_names, sharded)


# ------------------------------------------------------------------------------------------ folder
def _subfolders(directory):
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(directory)
                  if tf.io.gfile.isdir(os.path.join(directory, name)))


def folder_class_names(root):
    """Class names in label order, from `<root>/class_index.txt` (written on first use).

    The first call lists the class sub-folders of every split folder, sorts them and writes the
    index (one name per line, line i = label i), so that labels stay fixed when folders are added
    later and a trained model's outputs can be named.
    """
    path = os.path.join(root, CLASS_INDEX_FILE)
    names = _read_names(path)
    if names is not None:
        return names
    names = sorted({name for split in SPLITS if tf.io.gfile.isdir(os.path.join(root, split))
                    for name in _subfolders(os.path.join(root, split))})
    try:
        with tf.io.gfile.GFile(path, "w") as f:
            f.write("".join(f"{name}\n" for name in names))
        logging.info("Wrote the class index (%d classes) to %s.", len(names), path)
    except (tf.errors.OpError, OSError) as error:
        logging.warning("Could not write the class index %s (%s); labels follow the sorted "
                        "folder names.", path, error)
    return names


def folder_records(split, data_dir, *, training, seed, input_context):
    """Images in `<data_dir>/<split>/<class name>/<file>`; label = line of the class index."""
    if not data_dir:
        raise ValueError("dataset='folder' needs data_dir: a folder with <split>/<class>/<image> "
                         "(e.g. train/cat/001.jpg).")
    split_dir = os.path.join(data_dir, split)
    if not tf.io.gfile.isdir(split_dir):
        raise FileNotFoundError(f"No folder {split_dir!r}: expected <data_dir>/{split}/<class "
                                "name>/<image file> (JPEG, PNG, GIF or BMP).")
    class_names = folder_class_names(data_dir)
    index = {name: i for i, name in enumerate(class_names)}
    class_dirs = _subfolders(split_dir)
    unknown = [name for name in class_dirs if name not in index]
    if unknown:
        raise ValueError(f"Class folders {unknown} of {split_dir!r} are not in "
                         f"{os.path.join(data_dir, CLASS_INDEX_FILE)}; add them (new labels go "
                         "at the end) or delete the index to rebuild it.")
    paths, labels = [], []
    for name in class_dirs:
        class_dir = os.path.join(split_dir, name)
        for file in sorted(tf.io.gfile.listdir(class_dir)):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(os.path.join(class_dir, file))
                labels.append(index[name])
    if not paths:
        raise ValueError(f"No images in {split_dir!r}: expected <class name>/<file> with one of "
                         f"the extensions {IMAGE_EXTENSIONS}.")
    num_examples = len(paths)
    files, sharded = _shard_list(list(zip(paths, labels)), input_context)
    paths, labels = zip(*files)
    dataset = tf.data.Dataset.from_tensor_slices((list(paths), tf.constant(labels, tf.int32)))
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed)
    dataset = dataset.map(lambda path, label: {
        "encoded": tf.io.read_file(path), "label": label, "bboxes": tf.zeros([0, 4], tf.float32),
        "name": path}, num_parallel_calls=tf.data.AUTOTUNE)
    return ImageRecords(dataset, num_examples, len(class_names), class_names, sharded)


SOURCES = {"imagenet2012": tfds_records, "tfrecord": tfrecord_records, "folder": folder_records}
