"""Restore with fallback: every kind of damaged checkpoint is skipped (and kept), the newest
intact one restores every variable, and none restorable is an error that moves nothing."""
import hashlib
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tf_pyramid.runs import checkpoints

STEPS = (2, 4, 6)


def _values(step):
    """Distinct values per step: a large variable (several blocks of the data file) and two
    small ones."""
    return {"big": np.full([4096], float(step), np.float32) + np.arange(4096, dtype=np.float32),
            "small": np.array([step, -step], np.float32), "step": np.int64(step)}


def _checkpoint():
    variables = {"big": tf.Variable(np.zeros([4096], np.float32)),
                 "small": tf.Variable(np.zeros([2], np.float32)),
                 "step": tf.Variable(np.int64(0))}
    return tf.train.Checkpoint(**variables), variables


def _assert_holds(variables, step):
    for name, value in _values(step).items():
        np.testing.assert_array_equal(variables[name].numpy(), value, err_msg=name)


@pytest.fixture
def run_dir(tmp_path):
    """`tmp_path/checkpoints` with ckpt-2, ckpt-4, ckpt-6 written by a CheckpointManager."""
    checkpoint, variables = _checkpoint()
    directory = str(tmp_path / "checkpoints")
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=5)
    for step in STEPS:
        for name, value in _values(step).items():
            variables[name].assign(value)
        manager.save(checkpoint_number=step)
    return directory


def _prefix(directory, step):
    return os.path.join(directory, f"ckpt-{step}")


def _data(directory, step):
    return _prefix(directory, step) + ".data-00000-of-00001"


def _damage(directory, kind, step=6):
    index, data = _prefix(directory, step) + ".index", _data(directory, step)
    state = os.path.join(directory, "checkpoint")
    if kind == "deleted_index":
        os.remove(index)
    elif kind == "corrupt_index":
        with open(index, "r+b") as f:
            f.write(b"\x00" * 64)
    elif kind == "truncated_index":
        os.truncate(index, os.path.getsize(index) // 2)
    elif kind == "corrupt_data":  # one flipped byte inside the tensors: caught by the checksum
        with open(data, "r+b") as f:
            f.seek(5000)
            byte = f.read(1)
            f.seek(5000)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif kind == "truncated_data":
        os.truncate(data, os.path.getsize(data) // 3)
    elif kind == "empty_state":
        open(state, "w").close()
    elif kind == "garbage_state":
        with open(state, "wb") as f:
            f.write(bytes(range(256)))
    else:
        raise ValueError(kind)


def _tree(directory):
    """{relative path: sha256} of every file under `directory`."""
    result = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return result


@pytest.mark.parametrize("kind, reason", [
    ("deleted_index", r"index file ckpt-6\.index is missing"),
    ("corrupt_index", r"index file ckpt-6\.index is damaged \(.*checksum mismatch"),
    ("truncated_index", r"index file ckpt-6\.index is damaged"),
    ("corrupt_data", r"data file ckpt-6\.data-\* is damaged \(.*Checksum does not match"),
    ("truncated_data", r"data file ckpt-6\.data-\* is damaged"),
])
def test_damaged_newest_falls_back_and_is_kept(run_dir, kind, reason):
    _damage(run_dir, kind)
    damaged_files = {n: h for n, h in _tree(run_dir).items() if n.startswith("ckpt-6.")}
    checkpoint, variables = _checkpoint()
    # Restore the damaged one first (as a resume does), so a partial restore would show.
    restored = checkpoints.restore_newest(checkpoint, run_dir)
    assert restored.path == _prefix(run_dir, 4)
    _assert_holds(variables, 4)
    assert [os.path.basename(p) for p, _ in restored.skipped] == ["ckpt-6"]
    assert re.search(reason, restored.skipped[0][1]), restored.skipped[0][1]

    kept = checkpoints.keep_damaged(run_dir, restored)
    assert os.path.dirname(kept) == os.path.join(run_dir, "damaged")
    assert {n: h for n, h in _tree(kept).items() if n != "WHY.txt"} == damaged_files
    assert "ckpt-6" in open(os.path.join(kept, "WHY.txt")).read()
    state = tf.train.get_checkpoint_state(run_dir)
    assert os.path.basename(state.model_checkpoint_path) == "ckpt-4"
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-4"]

    # The manager made afterwards saves the new ckpt-6 beside the kept one and rotates out only
    # the older checkpoints.
    manager = checkpoints.manager_after_restore(checkpoint, run_dir, 2, restored)
    for step in (6, 8, 10):
        variables["step"].assign(step)
        manager.save(checkpoint_number=step)
    assert [os.path.basename(p) for p in manager.checkpoints] == ["ckpt-8", "ckpt-10"]
    assert not os.path.exists(_prefix(run_dir, 2) + ".index")
    assert {n: h for n, h in _tree(kept).items() if n != "WHY.txt"} == damaged_files


@pytest.mark.parametrize("kind", ["empty_state", "garbage_state"])
def test_damaged_state_file_uses_the_files_and_is_kept(run_dir, kind):
    _damage(run_dir, kind)
    with pytest.raises((ValueError, UnicodeDecodeError)):  # what tf.train would do
        tf.train.latest_checkpoint(run_dir)
    checkpoint, variables = _checkpoint()
    restored = checkpoints.restore_newest(checkpoint, run_dir)
    assert restored.path == _prefix(run_dir, 6) and not restored.skipped
    assert restored.state_problem
    _assert_holds(variables, 6)
    kept = checkpoints.keep_damaged(run_dir, restored)
    assert sorted(os.listdir(kept)) == ["WHY.txt", "checkpoint"]
    assert tf.train.latest_checkpoint(run_dir) == _prefix(run_dir, 6)


def test_damaged_state_and_newest_together(run_dir):
    _damage(run_dir, "garbage_state")
    _damage(run_dir, "deleted_index")
    checkpoint, variables = _checkpoint()
    restored = checkpoints.restore_newest(checkpoint, run_dir)
    assert restored.path == _prefix(run_dir, 4)
    _assert_holds(variables, 4)
    kept = checkpoints.keep_damaged(run_dir, restored)
    assert sorted(os.listdir(kept)) == ["WHY.txt", "checkpoint", "ckpt-6.data-00000-of-00001"]
    assert tf.train.latest_checkpoint(run_dir) == _prefix(run_dir, 4)


def test_none_restorable_is_an_error_and_moves_nothing(run_dir):
    _damage(run_dir, "corrupt_index", 6)
    _damage(run_dir, "truncated_data", 4)
    _damage(run_dir, "deleted_index", 2)
    before = _tree(run_dir)
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.restore_newest(_checkpoint()[0], run_dir)
    message = str(error.value)
    assert "None of the 3 checkpoint(s)" in message and "Nothing was deleted" in message
    for line in ("ckpt-6: its index file ckpt-6.index is damaged",
                 "ckpt-4: its data file ckpt-4.data-* is damaged",
                 "ckpt-2: its index file ckpt-2.index is missing"):
        assert line in message
    assert _tree(run_dir) == before


def test_explicit_checkpoint_and_mismatch(run_dir):
    _damage(run_dir, "truncated_data", 4)
    with pytest.raises(checkpoints.CheckpointError, match=r"ckpt-4 does not restore: its data"):
        checkpoints.restore_file(_checkpoint()[0], _prefix(run_dir, 4))
    other = tf.train.Checkpoint(big=tf.Variable(np.zeros([3], np.float32)))
    with pytest.raises(checkpoints.CheckpointError, match="does not match this model"):
        checkpoints.restore_file(other, _prefix(run_dir, 6))
    # A partial checkpoint object (a model without its optimizer) restores with partial=True.
    small = tf.Variable(np.zeros([2], np.float32))
    checkpoints.restore_file(tf.train.Checkpoint(small=small), _prefix(run_dir, 6), partial=True)
    np.testing.assert_array_equal(small.numpy(), [6.0, -6.0])


def test_no_checkpoints(tmp_path):
    assert checkpoints.restore_newest(_checkpoint()[0], str(tmp_path / "absent")).path is None
    assert not checkpoints.has_checkpoints(str(tmp_path))
    (tmp_path / "ckpt-3.data-00000-of-00001").write_bytes(b"x")  # a checkpoint without index
    assert checkpoints.has_checkpoints(str(tmp_path))
