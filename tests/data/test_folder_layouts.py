"""Folder datasets as users have them: train/ + val/ (ImageNet, torchvision ImageFolder), flat class
folders (Keras image_dataset_from_directory) with a hash-chosen validation split, train/ + test/;
real photos with a corrupt file among them; the data folder is never written to."""
import hashlib
import logging
import os
import shutil

import numpy as np
import pytest

from tests.helpers import encode
from tf_pyramid.data import build_dataset
from tf_pyramid.data.sources.folders import folder_split, in_validation

RES = 16


@pytest.fixture(scope="module")
def jpegs():
    """Twelve small, different JPEGs cut from skimage's colour photos."""
    from skimage import data
    photos = (data.chelsea(), data.coffee(), data.astronaut())
    return [encode(photo[8 * i:8 * i + 96:2, 8 * i:8 * i + 128:2], "JPEG")
            for i in range(4) for photo in photos]


def _write(root, relative_paths, jpegs):
    for i, relative in enumerate(relative_paths):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpegs[i % len(jpegs)])


def _snapshot(root):
    """Every file and folder under root with its size and mtime: any write shows."""
    entries = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            stat = os.stat(os.path.join(directory, name))
            entries[os.path.relpath(os.path.join(directory, name), root)] = (
                stat.st_size if name in files else None, stat.st_mtime_ns)
    entries["."] = (None, os.stat(root).st_mtime_ns)
    return entries


def _labels_and_count(ds):
    labels = np.concatenate([y.numpy() for _, y in ds])
    return sorted(labels.tolist())


def _corrupt(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # truncated JPEG: no end-of-image marker


@pytest.mark.parametrize("validation_folder", ["val", "validation"])
def test_train_and_val_folders_with_a_corrupt_file(tmp_path, jpegs, validation_folder, caplog):
    root = tmp_path / "data"
    _write(root, [f"train/{c}/{i}.jpg" for c in ("dog", "cat") for i in range(4)]
           + [f"{validation_folder}/{c}/v{i}.JPEG" for c in ("dog", "cat") for i in range(2)],
           jpegs)
    _corrupt(root / "train" / "dog" / "2.jpg")
    before = _snapshot(root)
    ds, info = build_dataset("folder", "train", resolution=RES, batch_size=3, training=True,
                             data_dir=str(root), seed=1)
    with caplog.at_level(logging.INFO):
        assert _labels_and_count(ds) == [0] * 4 + [1] * 3  # cat = 0, dog = 1; one dog skipped
    assert info.class_names == ["cat", "dog"] and info.num_examples == 8
    assert info.skipped_images.skipped == 1 and "skipped 1 undecodable" in caplog.text
    ds, info = build_dataset("folder", "validation", resolution=RES, batch_size=3,
                             training=False, data_dir=str(root))
    images = np.concatenate([x.numpy() for x, _ in ds])
    assert _labels_and_count(ds) == [0, 0, 1, 1] and info.skipped_images.skipped == 0
    assert images.shape == (4, RES, RES, 3) and -1 <= images.min() < images.max() <= 1
    assert _snapshot(root) == before


def test_flat_class_folders_with_hash_validation_split(tmp_path, jpegs):
    root = tmp_path / "flat"
    files = ([f"cat/{i:02d}.jpg" for i in range(12)] + [f"dog/{i:02d}.png.jpg" for i in range(9)]
             + ["dog/nested/deeper/x.jpg", "fish/only.jpg"])
    _write(root, files, jpegs)
    _corrupt(root / "cat" / "03.jpg")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()  # hidden: not a class
    before = _snapshot(root)

    train = folder_split(str(root), "train", validation_fraction=0.3)
    validation = folder_split(str(root), "validation", validation_fraction=0.3)
    relative = lambda split: {os.path.relpath(p, root) for p in split.paths}  # noqa: E731
    assert train.class_names == validation.class_names == ["cat", "dog", "fish"]
    assert relative(train) | relative(validation) == set(files)  # nested files included
    assert not relative(train) & relative(validation) and len(relative(validation)) >= 3
    # The split is a property of each relative path alone: a copy elsewhere splits the same way.
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, copy)
    assert {os.path.relpath(p, copy) for p in folder_split(
        str(copy), "validation", validation_fraction=0.3).paths} == relative(validation)
    # Without a fraction the flat folder is one training split.
    assert {os.path.relpath(p, root) for p in folder_split(str(root), "train").paths} == set(files)

    ds, info = build_dataset("folder", "validation", resolution=RES, batch_size=4,
                             training=False, data_dir=str(root), validation_fraction=0.3)
    good_validation = [label for path, label in zip(validation.paths, validation.labels)
                       if not path.endswith("cat/03.jpg")]
    assert _labels_and_count(ds) == sorted(good_validation)
    assert info.num_examples == len(validation.paths)
    ds, info = build_dataset("folder", "train", resolution=RES, batch_size=4, training=True,
                             data_dir=str(root), validation_fraction=0.3, seed=0)
    assert len(_labels_and_count(ds)) + info.skipped_images.skipped == len(train.paths)
    assert info.skipped_images.skipped == int(os.path.join(str(root), "cat", "03.jpg")
                                              in train.paths)
    assert _snapshot(root) == before


def test_hash_split_rule_fraction_and_stability():
    paths = [f"n{c:08d}/ILSVRC2012_{i:05d}.JPEG" for c in range(20) for i in range(1_000)]
    chosen = [in_validation(p, 0.1) for p in paths]
    # Binomial(20,000, 0.1): mean 2,000, sd 42; 5 sd either side.
    assert abs(sum(chosen) - 2_000) < 5 * 42
    # The rule is sha256 of the relative path: what makes it the same on every machine.
    for path, is_validation in zip(paths[:200], chosen[:200]):
        digest = int(hashlib.sha256(path.encode()).hexdigest()[:16], 16)
        assert is_validation == (digest / 2 ** 64 < 0.1)
    # A larger fraction only adds files to validation (nothing moves the other way).
    larger = [in_validation(p, 0.2) for p in paths]
    assert all(b for a, b in zip(chosen, larger) if a) and sum(larger) > sum(chosen)


def test_train_and_test_folders_and_validation_from_train(tmp_path, jpegs):
    root = tmp_path / "data"
    _write(root, [f"train/{c}/{i}.jpg" for c in ("a", "b") for i in range(10)]
           + [f"test/{c}/{i}.jpg" for c in ("a", "b") for i in range(2)], jpegs)
    test = folder_split(str(root), "test")
    assert len(test.paths) == 4 and test.labels == [0, 0, 1, 1]
    train = folder_split(str(root), "train", validation_fraction=0.25)
    validation = folder_split(str(root), "validation", validation_fraction=0.25)
    assert not set(train.paths) & set(validation.paths)
    assert len(train.paths) + len(validation.paths) == 20
    assert all("/train/" in p for p in validation.paths)
    with pytest.raises(FileNotFoundError, match=r"has no validation split.*val/.*"
                       r"validation_fraction \(e.g. 0.1\)"):
        folder_split(str(root), "validation")


def test_class_names_given_by_the_run_fix_the_labels(tmp_path, jpegs):
    root = tmp_path / "data"
    _write(root, ["cat/1.jpg", "dog/1.jpg", "dog/2.jpg"], jpegs)
    with pytest.raises(ValueError, match=r"differ from the run's class list \(3 classes\): "
                       r"missing \['zebra'\]"):  # a class folder gone since the run started
        folder_split(str(root), "train", class_names=["dog", "cat", "zebra"])
    (root / "zebra").mkdir()  # an empty class folder is still the class
    found = folder_split(str(root), "train", class_names=["dog", "cat", "zebra"])
    assert found.class_names == ["dog", "cat", "zebra"]
    assert sorted(zip(found.labels, [os.path.basename(os.path.dirname(p)) for p in found.paths])
                  ) == [(0, "dog"), (0, "dog"), (1, "cat")]
    ds, info = build_dataset("folder", "train", resolution=RES, batch_size=4, training=False,
                             data_dir=str(root), class_names=["dog", "cat", "zebra"])
    assert info.num_classes == 3 and _labels_and_count(ds) == [0, 0, 1]
    (root / "bird").mkdir()
    _write(root, ["bird/1.jpg"], jpegs)
    with pytest.raises(ValueError, match=r"Class folders \['bird'\].*not in the given "
                       r"class_names \(3, the run's class list\)"):
        folder_split(str(root), "train", class_names=["dog", "cat", "zebra"])


def test_validation_class_unknown_to_the_training_folder(tmp_path, jpegs):
    root = tmp_path / "data"
    _write(root, ["train/cat/1.jpg", "train/dog/1.jpg", "val/cat/1.jpg", "val/emu/1.jpg"], jpegs)
    with pytest.raises(ValueError, match=r"Class folders \['emu'\] of .*val' are not in the "
                       r"class folders of .*train'"):
        folder_split(str(root), "validation")


def test_empty_split_folder_and_empty_class_folders(tmp_path, jpegs, caplog):
    (tmp_path / "a" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"train' has no class folders: expected .*train/<class"):
        folder_split(str(tmp_path / "a"), "train")
    assert os.listdir(tmp_path / "a") == ["train"]  # no class index written
    _write(tmp_path / "b", ["val/ILSVRC2012_val_00000001.JPEG", "train/cat/1.jpg"], jpegs)
    with pytest.raises(ValueError, match=r"val' has no class folders, only 1 image files, which "
                       r"have no labels: sort them into one sub-folder per class"):
        folder_split(str(tmp_path / "b"), "validation")
    _write(tmp_path / "c", ["train/cat/1.jpg", "train/dog/1.jpg"], jpegs)
    for name in ("emu", "yak"):
        (tmp_path / "c" / "train" / name).mkdir()
    with caplog.at_level(logging.WARNING):
        found = folder_split(str(tmp_path / "c"), "train")
    assert found.class_names == ["cat", "dog", "emu", "yak"] and sorted(found.labels) == [0, 1]
    assert "class folders with no image files (['emu', 'yak'])" in caplog.text


@pytest.mark.parametrize("folders,split,fraction,error,message", [
    (["val/a", "validation/a"], "validation", None, ValueError, "both validation/ and val/"),
    (["train/a", "cat"], "train", None, ValueError, r"mixes split folders \['train'\] with "
     r"other folders \['cat'\]"),
    (["train/a", "val/a"], "train", 0.1, ValueError, "already is a validation folder"),
    (["a", "b"], "test", None, FileNotFoundError, "flat folder of class folders has train and "
     "validation"),
    (["train/a"], "test", None, FileNotFoundError, r"no .*/test/ folder.*Evaluate on "
     "'validation'"),
    (["a"], "train", 1.0, ValueError, "strictly between 0 and 1"),
    (["a"], "train", 0, ValueError, "strictly between 0 and 1"),
])
def test_layout_errors_say_what_to_do(tmp_path, jpegs, folders, split, fraction, error, message):
    _write(tmp_path, [f"{folder}/1.jpg" for folder in folders], jpegs)
    with pytest.raises(error, match=message):
        folder_split(str(tmp_path), split, validation_fraction=fraction)


def test_class_names_and_fraction_are_refused_where_they_do_not_apply(tmp_path):
    with pytest.raises(ValueError, match="apply to ImageNet-style datasets only"):
        build_dataset("mnist", "train", resolution=28, batch_size=2, training=True,
                      source="bundled", validation_fraction=0.1)
    with pytest.raises(ValueError, match="validation_fraction applies to dataset='folder' only"):
        build_dataset("tfrecord", "train", resolution=RES, batch_size=2, training=True,
                      data_dir=str(tmp_path / "none"), validation_fraction=0.1)
