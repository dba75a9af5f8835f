"""Atomic result files: a write that fails (full disk) leaves the previous file and no temporary
file; a damaged file is reported as damaged."""
import builtins
import contextlib
import errno
import os
import struct
import zipfile

import numpy as np
import pytest

import tf_pyramid
from tf_pyramid.runs import files


class _FullDisk:
    """A file object that accepts `capacity` bytes, then fails as a full disk does."""

    def __init__(self, f, capacity):
        self._f, self._left = f, capacity

    def write(self, data):
        if len(data) > self._left:
            self._f.write(data[:self._left])
            self._left = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._f.close()


@contextlib.contextmanager
def _full_disk(monkeypatch):
    """Within it, every file opened for writing (by Python or through `tf.io.gfile`) takes only
    200 bytes."""
    real_open, real_gfile = builtins.open, files.gfile.GFile

    def limited(opener):
        def limited_open(file, mode="r", *args, **kwargs):
            f = opener(file, mode, *args, **kwargs)
            return _FullDisk(f, 200) if any(c in mode for c in "wa+") else f
        return limited_open
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", limited(real_open))
        patch.setattr(files.gfile, "GFile", limited(real_gfile))
        yield


def test_json_round_trip_with_numpy_values(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"a": np.float32(0.5), "b": np.int64(3), "c": np.arange(2)})
    assert files.read_json(path) == {"a": 0.5, "b": 3, "c": [0, 1]}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_failed_json_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text('{"epochs": 1}\n')
    with _full_disk(monkeypatch), pytest.raises(OSError, match="No space left"):
        files.write_json(path, {"epochs": 2, "padding": "x" * 1000})
    assert path.read_text() == '{"epochs": 1}\n'
    assert os.listdir(tmp_path) == ["config.json"]


def test_damaged_json_is_reported(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model": "mnist_m2", "lev')
    with pytest.raises(files.DamagedFileError, match=r"config.json is damaged \(26 bytes"):
        files.read_json(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(files.DamagedFileError, match="is damaged"):
        files.read_json(path)


@pytest.fixture(scope="module")
def small_model():
    return tf_pyramid.build_model("mnist_bl1", levels=1, num_classes=3)


def test_failed_model_save_leaves_no_truncated_file(tmp_path, small_model, monkeypatch):
    path = tmp_path / "model.keras"
    with _full_disk(monkeypatch), pytest.raises(OSError, match="No space left"):
        files.save_keras(small_model, path)
    assert os.listdir(tmp_path) == []
    # The same failure under a plain `model.save` leaves the truncated file the issue saw, and
    # loading it says that it is damaged.
    plain = tmp_path / "plain.keras"
    with _full_disk(monkeypatch), pytest.raises(OSError, match="No space left"):
        small_model.save(plain)
    assert 0 < os.path.getsize(plain) <= 200
    with pytest.raises(files.DamagedFileError, match="plain.keras is damaged"):
        files.load_keras(plain)
    os.remove(plain)
    files.save_keras(small_model, path)
    assert os.listdir(tmp_path) == ["model.keras"]
    loaded = files.load_keras(path)
    images = np.random.default_rng(0).uniform(size=[2, 14, 14, 1]).astype("float32")
    np.testing.assert_allclose(loaded(images)["logits"], small_model(images)["logits"],
                               atol=1e-6)


def test_damaged_model_file_is_reported(tmp_path, small_model):
    good = tmp_path / "good.keras"
    small_model.save(good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(files.DamagedFileError, match="truncated.keras is damaged: not a complete"):
        files.load_keras(truncated)
    # A flipped byte inside a member: the archive is whole but the member fails its checksum.
    with zipfile.ZipFile(good) as archive:
        member = archive.getinfo("config.json")
    name_length, extra_length = struct.unpack("<HH", data[member.header_offset + 26:
                                                          member.header_offset + 30])
    offset = member.header_offset + 30 + name_length + extra_length + 10  # inside the data
    flipped = bytearray(data)
    flipped[offset] ^= 0xFF
    bad = tmp_path / "flipped.keras"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(files.DamagedFileError, match="'config.json' fails its checksum"):
        files.load_keras(bad)
    with pytest.raises(ValueError, match="must end in .keras"):
        files.save_keras(small_model, tmp_path / "model.h5")
