"""ImageNet-style sources on real files: folder, TFRecords (slim layout), tfds imagenet2012 (mock);
undecodable files skipped and counted, `strict` naming the file, sharding, determinism."""
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.helpers import slim_example, write_tfrecords
from tf_pyramid.data import build_dataset

RES = 32


def _collect(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


@pytest.mark.parametrize("training", [False, True])
def test_folder_skips_and_counts_bad_files(image_folder, training, caplog):
    root, expected = image_folder
    ds, info = build_dataset("folder", "train", resolution=RES, batch_size=4, training=training,
                             data_dir=str(root), seed=0)
    good = [row for row in expected["train"] if row[2]]
    assert info.class_names == ["cat", "dog"] and info.num_classes == 2 and info.channels == 3
    assert info.num_examples == len(expected["train"])  # files found, before decoding
    assert not (root / "class_index.txt").exists()  # nothing is written into the data folder
    with caplog.at_level(logging.INFO):
        images, labels = _collect(ds)
    assert images.shape == (len(good), RES, RES, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32
    assert sorted(labels) == sorted(label for _, label, _ in good)
    assert images.min() >= -1.0 and images.max() <= 1.0 and images.min() < -0.5
    bad = len(expected["train"]) - len(good)
    assert bad >= 4 and info.skipped_images.skipped == bad
    assert f"skipped {bad} undecodable image(s)" in caplog.text


def test_strict_raises_naming_the_file(image_folder):
    root, _ = image_folder
    ds, _ = build_dataset("folder", "train", resolution=RES, batch_size=4, training=False,
                          data_dir=str(root), strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"Undecodable image file \(strict=True\).*(text|truncated|empty)"):
        _collect(ds)


def test_eval_path_is_the_scaled_jpeg_decode_then_the_mipmap_resize(image_folder, image_files):
    root, _ = image_folder
    ds, info = build_dataset("folder", "validation", resolution=RES, batch_size=16,
                             training=False, data_dir=str(root))
    images, labels = _collect(ds)
    # Validation holds sorted(image_files)[0::4] per class: cmyk.jpg, png_named.jpg (good) and
    # zz_garbled.jpg, which passes the in-graph check but fails in the decoder: dropped, counted.
    assert info.skipped_images.skipped == 2
    encoded = image_files["cmyk.jpg"][0]
    assert tuple(tf.io.extract_jpeg_shape(encoded).numpy()[:2]) == (300, 451)
    # Short side 300 >= 8 * 32: decoded at 1/8 scale (38 x 57), which then shrinks less than 2x:
    # one bilinear resize.
    decoded = tf.io.decode_jpeg(encoded, channels=3, ratio=8)
    assert decoded.shape[:2] == (38, 57)
    expected = tf.image.resize(tf.cast(decoded, tf.float32) / 255, [RES, RES]).numpy()
    np.testing.assert_allclose(images[0], expected * 2 - 1, atol=1e-5)
    assert list(labels) == [0, 0, 1, 1]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected <data_dir>/train/<class name>"):
        build_dataset("folder", "train", resolution=RES, batch_size=2, training=True,
                      data_dir=str(tmp_path / "nowhere"))
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="No images in"):
        build_dataset("folder", "train", resolution=RES, batch_size=2, training=True,
                      data_dir=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="needs data_dir"):
        build_dataset("folder", "train", resolution=RES, batch_size=2, training=True)


def test_tfrecords_labels_boxes_and_counting(tfrecord_dir):
    directory, expected = tfrecord_dir
    for training in (False, True):
        ds, info = build_dataset("tfrecord", "train", resolution=RES, batch_size=5,
                                 training=training, data_dir=str(directory), seed=1)
        images, labels = _collect(ds)
        good = [label for _, label, ok in expected["train"] if ok]
        assert sorted(labels) == sorted(good)  # 1-based on disk, 0-based out
        assert images.shape == (len(good), RES, RES, 3)
        assert images.min() >= -1 and images.max() <= 1
        assert info.num_classes == 1000 and info.num_examples is None
        assert info.skipped_images.skipped == len(expected["train"]) - len(good)
    ds, _ = build_dataset("tfrecord", "validation", resolution=RES, batch_size=5, training=False,
                          data_dir=str(directory), strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"validation-0000\d-of-00002:valid"):
        _collect(ds)


def test_tfrecords_reject_zero_based_labels(tmp_path, image_files):
    write_tfrecords(str(tmp_path), "train",
                    [slim_example(image_files["colour.jpg"][0], 0, "zero.jpg")], 1)
    ds, _ = build_dataset("tfrecord", "train", resolution=RES, batch_size=1, training=False,
                          data_dir=str(tmp_path), strict=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must be 1-based"):
        _collect(ds)


def test_tfrecord_errors_and_labels_file(tmp_path, tfrecord_dir):
    with pytest.raises(FileNotFoundError, match="No TFRecord files match.*Inception/slim"):
        build_dataset("tfrecord", "test", resolution=RES, batch_size=2, training=False,
                      data_dir=str(tmp_path / "none"))
    directory, _ = tfrecord_dir
    (directory / "labels.txt").write_text("".join(f"class{i}\n" for i in range(5)))
    pattern = os.path.join(str(directory), "{split}-0000[01]-of-00004")
    ds, info = build_dataset("tfrecord", "train", resolution=RES, batch_size=64, training=False,
                             data_dir=pattern)
    assert info.num_classes == 5 and info.class_names[0] == "class0"
    assert len(_collect(ds)[1]) > 0


def test_seed_reproduces_training_stream_and_passes_differ(tfrecord_dir):
    directory, _ = tfrecord_dir
    kwargs = dict(resolution=RES, batch_size=4, training=True, data_dir=str(directory), seed=9)
    ds, _ = build_dataset("tfrecord", "train", **kwargs)
    first, second = _collect(ds), _collect(ds)
    again = _collect(build_dataset("tfrecord", "train", **kwargs)[0])
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], second[0])


@pytest.mark.parametrize("source", ["tfrecord", "folder"])
def test_input_context_shards_per_worker(source, tfrecord_dir, image_folder):
    directory = str(tfrecord_dir[0] if source == "tfrecord" else image_folder[0])
    per_worker = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                             num_replicas_in_sync=2)
        ds, _ = build_dataset(source, "train", resolution=RES, batch_size=6, training=False,
                              data_dir=directory, input_context=context)
        batches = [y.numpy() for _, y in ds]
        sizes = [len(b) for b in batches]
        assert max(sizes) <= 3 and (source == "folder" or max(sizes) == 3)  # 6 / 2 replicas
        per_worker.append(np.concatenate(batches))
    whole = _collect(build_dataset(source, "train", resolution=RES, batch_size=6, training=False,
                                   data_dir=directory)[0])[1]
    assert len(per_worker[0]) > 0 and len(per_worker[1]) > 0
    assert sorted(np.concatenate(per_worker)) == sorted(whole)


def test_tfds_imagenet_missing_manual_download_gives_instructions(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)ILSVRC2012_img_train.tar.*"
                       r"ILSVRC2012_img_val.tar.*downloads/manual.*call build_dataset again.*"
                       r"tfds build imagenet2012.*apache-beam"):
        build_dataset("imagenet2012", "train", resolution=RES, batch_size=2, training=True,
                      data_dir=str(tmp_path))


@pytest.mark.parametrize("training", [False, True])
def test_tfds_imagenet_mock(tmp_path, training):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for tar in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        (manual / tar).write_bytes(b"")  # present; mock_data makes preparation a no-op
    with tfds.testing.mock_data(num_examples=6):
        ds, info = build_dataset("imagenet2012", "validation", resolution=RES, batch_size=4,
                                 training=training, data_dir=str(tmp_path), seed=2)
        images, labels = _collect(ds)
    assert images.shape == (6, RES, RES, 3) and images.min() >= -1 and images.max() <= 1
    assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 1000
    assert info.num_classes == 1000 and info.class_names[0] == "n01440764"
    assert info.skipped_images.skipped == 0


def test_first_skipped_files_are_named_once_per_pass(tmp_path, image_files, caplog):
    """7 files fail the check: each pass logs 7 of them skipped and names 5 (then "...")."""
    bad = [f"bad_{i}.jpg" for i in range(7)]
    folder = tmp_path / "train" / "cat"
    folder.mkdir(parents=True)
    for name in bad:
        (folder / name).write_bytes(image_files["truncated.jpg"][0])
    (folder / "good.jpg").write_bytes(image_files["colour.jpg"][0])
    ds, info = build_dataset("folder", "train", resolution=RES, batch_size=4, training=True,
                             data_dir=str(tmp_path), seed=3)
    for epoch in (1, 2):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert len(_collect(ds)[1]) == 1
        assert info.skipped_images.skipped == 7 * epoch
        message = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()][-1]
        assert "This pass, 7 failed the format check; the first: " in message
        named = message.split("the first: ")[1][:-1].split(", ")  # [:-1]: the final period
        assert named[-1] == "..." and len(named) == 6
        assert {os.path.basename(path) for path in named[:5]} <= set(bad)
        assert len(set(named[:5])) == 5
        assert info.skipped_images.first_skipped_names == []  # reset for the next pass
