"""`check_split`: a missing or unlabelled split is refused, with the fix, without reading data."""
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.helpers import write_tfrecords
from tf_pyramid.data import check_split


@pytest.fixture
def no_download(monkeypatch):
    """Any tfds download or preparation fails the test."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("check_split must not download or prepare")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


def test_mnist_splits_have_labels_and_nothing_is_downloaded(tmp_path, no_download):
    for source in ("tfds", "bundled"):
        for split in ("train", "validation", "test"):
            assert check_split("mnist", split, source=source, data_dir=str(tmp_path)) is None
    with pytest.raises(ValueError, match="Unknown MNIST source 'kaggle'"):
        check_split("mnist", "test", source="kaggle")
    with pytest.raises(ValueError, match="validation_fraction applies to dataset='folder' only"):
        check_split("mnist", "validation", source="bundled", validation_fraction=0.1)
    with pytest.raises(ValueError, match="Unknown split 'dev'"):
        check_split("mnist", "dev", source="bundled")
    with pytest.raises(ValueError, match="Unknown dataset 'cifar10'"):
        check_split("cifar10", "test")


def test_tfds_imagenet(tmp_path, no_download):
    with pytest.raises(ValueError, match=r"test split has no labels.*-1.*Evaluate on 'validation'"):
        check_split("imagenet2012", "test", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"(?s)ILSVRC2012_img_train.tar, "
                       r"ILSVRC2012_img_val.tar not in .*downloads/manual"):
        check_split("imagenet2012", "validation", data_dir=str(tmp_path))
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for tar in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        (manual / tar).write_bytes(b"")
    check_split("imagenet2012", "validation", data_dir=str(tmp_path))  # build_dataset prepares
    assert sorted(p.name for p in tmp_path.iterdir()) == ["downloads"]  # nothing prepared
    with pytest.raises(ValueError, match="validation_fraction applies to dataset='folder'"):
        check_split("imagenet2012", "validation", data_dir=str(tmp_path), validation_fraction=0.1)


def _example(label=None):
    feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}
    if label is not None:
        feature["image/class/label"] = tf.train.Feature(int64_list=tf.train.Int64List(
            value=[label]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_tfrecord_slim_layout(tmp_path):
    write_tfrecords(str(tmp_path), "train", [_example(3), _example(1)], 2)
    write_tfrecords(str(tmp_path), "validation", [_example(7)], 1)
    check_split("tfrecord", "train", data_dir=str(tmp_path))
    check_split("tfrecord", "validation", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"No TFRecord files match .*test-\*.*writes no "
                       r"test files.*evaluate on 'validation'"):
        check_split("tfrecord", "test", data_dir=str(tmp_path))
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    write_tfrecords(str(unlabelled), "test", [_example(), _example()], 1)
    with pytest.raises(ValueError, match=r"Split 'test' has no labels: the first record of "
                       r".*test-00000-of-00001 has no image/class/label"):
        check_split("tfrecord", "test", data_dir=str(unlabelled))
    write_tfrecords(str(unlabelled), "validation", [_example(0)], 1)
    with pytest.raises(ValueError, match=r"has image/class/label 0 \(labels are 1-based"):
        check_split("tfrecord", "validation", data_dir=str(unlabelled))
    (unlabelled / "train-00000-of-00001").write_bytes(b"not a TFRecord file at all")
    with pytest.raises(ValueError, match=r"Cannot read the TFRecords of split 'train'"):
        check_split("tfrecord", "train", data_dir=str(unlabelled))


def test_folder_layouts(tmp_path, image_files):
    jpeg = image_files["colour.jpg"][0]
    for path in ("imagefolder/train/cat/1.jpg", "imagefolder/val/cat/2.jpg",
                 "flat/cat/1.jpg", "flat/dog/1.jpg", "flat/dog/2.jpg",
                 "flatval/train/cat/1.jpg", "flatval/val/ILSVRC2012_val_00000001.JPEG"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(jpeg)
    imagefolder, flat = str(tmp_path / "imagefolder"), str(tmp_path / "flat")
    check_split("folder", "validation", data_dir=imagefolder)
    with pytest.raises(FileNotFoundError, match=r"No test split .*no .*/test/ folder"):
        check_split("folder", "test", data_dir=imagefolder)
    with pytest.raises(FileNotFoundError, match=r"has no validation split.*validation_fraction"):
        check_split("folder", "validation", data_dir=flat)
    check_split("folder", "validation", data_dir=flat, validation_fraction=0.5)
    with pytest.raises(FileNotFoundError, match=r"flat folder of class folders has train and "
                       r"validation"):
        check_split("folder", "test", data_dir=flat, validation_fraction=0.5)
    with pytest.raises(ValueError, match=r"val' has no class folders, only 1 image files, which "
                       r"have no labels"):
        check_split("folder", "validation", data_dir=str(tmp_path / "flatval"))
    with pytest.raises(FileNotFoundError, match=r"No folder .*nowhere"):
        check_split("folder", "validation", data_dir=str(tmp_path / "nowhere"))
