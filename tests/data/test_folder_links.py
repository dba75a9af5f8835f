"""Folder datasets with links, special files and odd names, as users' disks have them: each real
folder is read once (no loop, no duplicate, no file under another class's label), FIFOs and
non-UTF-8 names are left out and named, and a run whose class folders changed is stopped."""
import logging
import os
import shutil

import pytest

from tests.helpers import encode, run_module, run_python, sample_photos, tiny_args
from tf_pyramid.data import build_dataset
from tf_pyramid.data.sources.folders import ClassSetChangedError, folder_split


@pytest.fixture(scope="module")
def jpeg():
    return encode(sample_photos()["coffee"][::8, ::8], "JPEG")


def _classes(root, jpeg, counts=(("cat", 3), ("dog", 4))):
    for name, count in counts:
        (root / "train" / name).mkdir(parents=True)
        for i in range(count):
            (root / "train" / name / f"{i}.jpg").write_bytes(jpeg)


def _labels(found):
    return sorted(zip(found.labels, [os.path.relpath(p) for p in found.paths]))


def test_links_to_itself_its_parent_or_another_class_are_not_followed(tmp_path, jpeg, caplog):
    root = tmp_path / "data"
    _classes(root, jpeg)
    cat = root / "train" / "cat"
    os.symlink(".", cat / "self")
    os.symlink("..", cat / "up")  # before: the 4 dog files also labelled cat
    os.symlink("../dog", cat / "dogs")
    os.symlink(os.path.abspath(cat / "0.jpg"), cat / "linked.jpg")  # a link to a file: kept
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(jpeg)
    os.symlink(outside, cat / "more")  # data on another disk: followed, once
    os.symlink(outside, cat / "more_again")
    with caplog.at_level(logging.WARNING):
        found = folder_split(str(root), "train")
    names = [os.path.relpath(p, root) for p in found.paths]
    assert sorted(n for n, label in zip(names, found.labels) if label == 0) == [
        "train/cat/0.jpg", "train/cat/1.jpg", "train/cat/2.jpg", "train/cat/linked.jpg",
        "train/cat/more/x.jpg"]
    assert sum(label == 1 for label in found.labels) == 4
    assert found.left_out == {"links_inside": 3, "links_repeated": 1}
    assert "left out 3 directory links into the data folder itself" in caplog.text
    assert f"{cat / 'up'}" in caplog.text and f"{cat / 'more_again'}" in caplog.text


def test_fifo_and_non_utf8_names_are_left_out_and_named(tmp_path, jpeg, caplog):
    root = tmp_path / "data"
    _classes(root, jpeg)
    os.mkfifo(root / "train" / "cat" / "x.jpg")  # before: the pass blocked on it forever
    with open(os.fsencode(root / "train" / "dog") + b"/caf\xe9.jpg", "wb") as f:
        f.write(jpeg)  # before: the whole split refused, the file not named
    with caplog.at_level(logging.WARNING):
        ds, info = build_dataset("folder", "train", resolution=16, batch_size=4, training=False,
                                 data_dir=str(root))
        count = sum(int(labels.shape[0]) for _, labels in ds)
    assert count == 7 and info.num_examples == 7
    assert "left out 1 not regular files (FIFOs, sockets, devices" in caplog.text
    assert "x.jpg" in caplog.text
    assert "left out 1 file names that are not valid UTF-8" in caplog.text
    assert "dog/caf\\xe9.jpg" in caplog.text  # its bytes, escaped


def test_two_self_links_and_a_fifo_finish_in_a_fresh_process(tmp_path, jpeg):
    root = tmp_path / "data"
    _classes(root, jpeg)
    os.symlink(".", root / "train" / "cat" / "a")
    os.symlink(".", root / "train" / "cat" / "b")  # before: build_dataset never returned
    os.mkfifo(root / "train" / "dog" / "pipe.png")
    script = ("import sys; from tf_pyramid.data import build_dataset\n"
              "ds, info = build_dataset('folder', 'train', resolution=16, batch_size=4, "
              "training=True, data_dir=sys.argv[1], seed=1)\n"
              "print('examples', sum(int(y.shape[0]) for _, y in ds), info.num_examples)\n")
    result = run_python(["-c", script, str(root)], timeout=120)
    assert "examples 7 7" in result.stdout


def test_class_set_changes_are_refused_naming_the_classes(tmp_path, jpeg):
    root = tmp_path / "data"
    _classes(root, jpeg, (("cat", 1), ("dog", 1), ("emu", 1)))
    (root / "val" / "cat").mkdir(parents=True)
    (root / "val" / "cat" / "1.jpg").write_bytes(jpeg)
    run = ["cat", "dog", "emu"]
    assert len(folder_split(str(root), "validation", class_names=run).paths) == 1
    shutil.rmtree(root / "train" / "dog")
    (root / "train" / "fox").mkdir()
    with pytest.raises(ClassSetChangedError, match=r"run's class list \(3 classes\): missing "
                       r"\['dog'\]; not in the list \['fox'\]"):
        folder_split(str(root), "validation", class_names=run)
    with pytest.raises(ValueError, match=r"Class folders \['fox'\] of .*train' are not in the "
                       r"given class_names"):
        folder_split(str(root), "train", class_names=run)
    (root / "train" / "fox").rmdir()
    with pytest.raises(ClassSetChangedError, match=r"missing \['dog'\]\. The run's labels"):
        folder_split(str(root), "train", class_names=run)


@pytest.mark.slow
def test_resumed_run_stops_when_a_class_folder_was_removed(tmp_path, jpeg):
    data = tmp_path / "data"
    _classes(data, jpeg, (("cat", 4), ("dog", 4), ("emu", 4)))
    shutil.copytree(data / "train", data / "val")
    model_dir = tmp_path / "run"
    args = tiny_args(model_dir, dataset="folder", data_dir=data, model="imagenet_bl1",
                     resolution=32, batch_size=4, eval_batch_size=4, epochs=2, steps_per_epoch=1)
    first = run_module("tf_pyramid.train", args + ["--stop_after_steps=1"])
    assert (model_dir / "checkpoints").exists(), first.stderr[-3000:]
    for split in ("train", "val"):  # before: resumed on cat and dog, rc 0
        shutil.rmtree(data / split / "emu")
    process = run_module("tf_pyramid.train", args)
    assert process.returncode != 0
    assert "missing ['emu']" in process.stderr, process.stderr[-3000:]
    evaluation = run_module("tf_pyramid.evaluate", [f"--model_dir={model_dir}",
                                                    "--use_checkpoint"])
    assert evaluation.returncode == 2 and "missing ['emu']" in evaluation.stderr
