"""Damaged TFRecord shards: one bad record costs that record, counted and named, not the rest of
its shard in silence; an evaluation that read less than its split is refused unless allowed."""
import json
import logging
import os
import shutil
import struct

import numpy as np
import pytest

from tests.helpers import encode, run_module, sample_photos, slim_example, tiny_args, \
    write_tfrecords
from tf_pyramid.data import build_dataset
from tf_pyramid.data.completeness import IncompleteSplitError
from tf_pyramid.data.tfrecord_shards import masked_crc32c

RECORDS_PER_SHARD = 12


def _record_offsets(path):
    """Byte offset of every record of a TFRecord file (from the length headers)."""
    data, offsets, position = open(path, "rb").read(), [], 0
    while position < len(data):
        offsets.append(position)
        position += 16 + struct.unpack("<Q", data[position:position + 8])[0]
    return offsets


def _flip(path, position):
    data = bytearray(open(path, "rb").read())
    data[position] ^= 0xFF
    open(path, "wb").write(bytes(data))


def damage_payload(path, record):
    """Flips one byte inside the data of `record` (0-based): its data CRC no longer matches."""
    _flip(path, _record_offsets(path)[record] + 12 + 40)


def damage_length(path, record):
    """Flips one byte of the length header of `record`: the rest of the file cannot be framed."""
    _flip(path, _record_offsets(path)[record] + 1)


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory):
    """Clean slim-layout shards of real photos: train 4 x 12, validation 1 x 12; labels.txt."""
    root = tmp_path_factory.mktemp("records")
    photos = list(sample_photos().values())
    for split, count, shards in (("train", 48, 4), ("validation", 12, 1)):
        examples = [slim_example(encode(photos[i % 3][::4, ::4], "JPEG"), 1 + i % 2, f"{i}.jpg")
                    for i in range(count)]
        write_tfrecords(str(root), split, examples, shards)
    (root / "labels.txt").write_text("a\nb\n")
    return root


@pytest.fixture
def damaged(records_dir, tmp_path):
    """A fresh copy of `records_dir` to damage."""
    copy = tmp_path / "damaged"
    shutil.copytree(records_dir, copy)
    return copy


def _count(dataset):
    return sum(int(labels.shape[0]) for _, labels in dataset)


def test_crc_of_length_headers_matches_tensorflows(records_dir):
    header = open(records_dir / "validation-00000-of-00001", "rb").read(12)
    assert masked_crc32c(header[:8]) == struct.unpack("<I", header[8:])[0]


@pytest.mark.parametrize("training", [True, False])
def test_a_damaged_record_costs_only_itself_every_pass(damaged, training, caplog):
    shard = damaged / "train-00000-of-00004"
    damage_payload(str(shard), 3)
    ds, info = build_dataset("tfrecord", "train", resolution=16, batch_size=8,
                             training=training, data_dir=str(damaged), seed=1)
    with caplog.at_level(logging.WARNING):
        counts = [_count(ds), _count(ds)]
    assert counts == [47, 47]  # was [39, 39]: the shard ended at its damaged record
    assert info.lost_records.lost_records == 1 and info.lost_records.total_records == 2
    lines = [r.getMessage() for r in caplog.records if "this pass lost data" in r.getMessage()]
    assert len(lines) == 2  # one per pass, not one per record
    offset = _record_offsets(str(shard))[3]
    assert (f"1 damaged record(s) skipped in 1 damaged TFRecord shard(s): {shard} (1 record(s) "
            f"skipped, at byte {offset})") in lines[0]


def test_damaged_length_header_and_truncated_file_are_counted(damaged):
    damage_length(str(damaged / "train-00001-of-00004"), 5)
    cut = damaged / "train-00002-of-00004"
    data = cut.read_bytes()
    cut.write_bytes(data[:-100])  # the last record cut short
    damage_payload(str(damaged / "train-00003-of-00004"), 0)
    damage_payload(str(damaged / "train-00003-of-00004"), 11)
    ds, info = build_dataset("tfrecord", "train", resolution=16, batch_size=8, training=False,
                             data_dir=str(damaged))
    assert _count(ds) == 12 + 5 + 11 + 10
    losses = info.lost_records.last_pass
    length_loss = losses[str(damaged / "train-00001-of-00004")]
    assert length_loss.records == 0 and length_loss.rest_bytes > 0
    assert "damaged length header at byte" in length_loss.detail
    assert losses[str(cut)].records == 1 and "cut short" in losses[str(cut)].detail
    assert losses[str(damaged / "train-00003-of-00004")].records == 2
    assert info.lost_records.lost_records == 3


def test_a_shard_deleted_after_listing_is_named(damaged):
    ds, info = build_dataset("tfrecord", "train", resolution=16, batch_size=8, training=False,
                             data_dir=str(damaged))
    os.remove(damaged / "train-00003-of-00004")
    assert _count(ds) == 36
    loss = info.lost_records.last_pass[str(damaged / "train-00003-of-00004")]
    assert "unreadable after byte 0" in loss.detail


@pytest.fixture(scope="module")
def trained_run(records_dir, tmp_path_factory):
    """A tiny imagenet_bl1 run trained (CLI) on the clean records."""
    model_dir = tmp_path_factory.mktemp("runs") / "run"
    process = run_module("tf_pyramid.train", tiny_args(
        model_dir, dataset="tfrecord", data_dir=records_dir, model="imagenet_bl1", resolution=32,
        epochs=1, steps_per_epoch=2, batch_size=8, eval_batch_size=8))
    assert process.returncode == 0, process.stderr[-3000:]
    return model_dir


def test_evaluate_refuses_a_split_read_in_part(trained_run, damaged):
    damage_payload(str(damaged / "validation-00000-of-00001"), 3)
    process = run_module("tf_pyramid.evaluate", [f"--model_dir={trained_run}",
                                                 f"--data_dir={damaged}"])
    # Before: rc 0, "num_examples": 3, "none undecodable".
    assert process.returncode == 2, (process.stdout, process.stderr[-3000:])
    assert ("Expected at least 12 examples from tfrecord/validation, read 11: 1 damaged "
            "record(s) skipped in 1 damaged TFRecord shard(s): "
            f"{damaged / 'validation-00000-of-00001'}") in process.stderr
    assert "--allow_incomplete" in process.stderr


def test_evaluate_allows_a_partial_split_when_asked(trained_run, damaged):
    from tf_pyramid.evaluators.finished_run import evaluate_run  # noqa: PLC0415

    damage_payload(str(damaged / "validation-00000-of-00001"), 3)
    with pytest.raises(IncompleteSplitError) as refused:
        evaluate_run(str(trained_run), data_dir=str(damaged))
    assert refused.value.read == 11 and refused.value.expected is None
    result = evaluate_run(str(trained_run), data_dir=str(damaged), allow_incomplete=True)
    assert result["num_examples"] == 11 and "1 damaged record(s)" in result["incomplete"]
    clean = evaluate_run(str(trained_run))
    assert clean["num_examples"] == 12 and "incomplete" not in clean
    assert np.isfinite(clean["levels"][0]["accuracy"])


def test_training_reads_past_a_damaged_record(trained_run, damaged, tmp_path):
    damage_payload(str(damaged / "train-00000-of-00004"), 3)
    process = run_module("tf_pyramid.train", tiny_args(
        tmp_path / "run", dataset="tfrecord", data_dir=damaged, model="imagenet_bl1",
        resolution=32, epochs=2, steps_per_epoch=2, batch_size=8, eval_batch_size=8))
    assert process.returncode == 0, process.stderr[-3000:]
    passes = process.stderr.count("tfrecord/train: 47 images read")  # was 39, in silence
    warnings = process.stderr.count("tfrecord/train: this pass lost data: 1 damaged record(s)")
    assert passes >= 1 and warnings == passes, process.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_examples"] == 12


@pytest.mark.slow  # two fresh training processes
def test_a_run_whose_final_evaluation_reads_part_of_its_split_stops_then_allows(records_dir,
                                                                                 damaged,
                                                                                 tmp_path):
    damage_payload(str(damaged / "validation-00000-of-00001"), 3)
    args = tiny_args(tmp_path / "run", dataset="tfrecord", data_dir=damaged, model="imagenet_bl1",
                     resolution=32, epochs=1, steps_per_epoch=2, batch_size=8, eval_batch_size=8)
    refused = run_module("tf_pyramid.train", args)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "Error: Expected at least 12 examples from tfrecord/validation, read 11" in \
        refused.stderr and "--allow_incomplete" in refused.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
    allowed = run_module("tf_pyramid.train", [*args, "--allow_incomplete"])
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "Training already finished" in allowed.stderr  # the trained steps were kept
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_examples"] == 11 and "1 damaged record(s)" in metrics["incomplete"]
