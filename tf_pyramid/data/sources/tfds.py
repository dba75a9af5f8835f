"""tfds `imagenet2012` (manual download) as a source of encoded images (see `common`)."""
import os

import tensorflow as tf
from absl import logging

from tf_pyramid.data.sources import common

MANUAL_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
TEST_TAR = "ILSVRC2012_img_test.tar"


def tfds_root(data_dir):
    """The tfds data directory that `tfds.builder(name, data_dir=data_dir)` uses."""
    return os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def check_manual_tars(root):
    """FileNotFoundError with instructions when the manual ImageNet tars are not in place."""
    manual_dir = os.path.join(root, "downloads", "manual")
    missing = [tar for tar in MANUAL_TARS if not tf.io.gfile.exists(os.path.join(manual_dir, tar))]
    if missing:
        raise FileNotFoundError(
            f"tfds 'imagenet2012' is not prepared under {root} and its manual download is "
            f"missing: {', '.join(missing)} not in {manual_dir}. Register at "
            "https://image-net.org/download-images, download ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar, put them in {manual_dir}, then call build_dataset again: "
            "it prepares the data (several hours, once). (`tfds build imagenet2012 "
            f"--data_dir={root} --manual_dir={manual_dir}` does the same, but tfds's command "
            "line also needs `pip install apache-beam mlcroissant`.)")
    return manual_dir


def tfds_records(split, data_dir, *, training, seed, input_context, class_names=None,
                 validation_fraction=None):
    """tfds `imagenet2012` (manual download). Missing tars: FileNotFoundError with instructions."""
    import tensorflow_datasets as tfds

    common.refuse_validation_fraction("imagenet2012", validation_fraction)
    root = tfds_root(data_dir)
    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not builder.is_prepared():
        manual_dir = check_manual_tars(root)
        logging.info("Preparing tfds imagenet2012 from %s (several hours, once).", manual_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    splits = builder.info.splits
    if len(splits) and split not in splits:  # mocked builders report no splits
        raise ValueError(f"tfds imagenet2012 has no {split!r} split here (it has "
                         f"{sorted(splits)}); the test split needs {TEST_TAR} (and has no labels).")
    read_config = tfds.ReadConfig(input_context=input_context, shuffle_seed=seed,
                                  interleave_cycle_length=common.TFRECORD_CYCLE_LENGTH,
                                  num_parallel_calls_for_interleave_files=tf.data.AUTOTUNE)
    dataset = builder.as_dataset(split=split, shuffle_files=training, read_config=read_config,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    if training:
        dataset = dataset.shuffle(common.TFRECORD_SHUFFLE_BUFFER, seed=seed)
    num_examples = splits[split].num_examples if split in splits else None
    label = builder.info.features["label"]
    names = common.source_class_names("imagenet2012", list(label.names), label.num_classes, class_names)
    return common.ImageRecords(dataset, _parse_tfds_example, num_examples, label.num_classes, names,
                        sharded=input_context is not None)


def _parse_tfds_example(example):
    return {"encoded": example["image"], "label": tf.cast(example["label"], tf.int32),
            "bboxes": tf.zeros([0, 4], tf.float32), "name": example["file_name"]}
