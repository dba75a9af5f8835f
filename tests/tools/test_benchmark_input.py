"""tools/benchmark_input.py: the records it writes, its stage breakdown and its JSON output."""
import glob
import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO
from tests.helpers import run_python
from tf_pyramid.data import builder


@pytest.fixture(scope="module")
def benchmark_input():
    spec = importlib.util.spec_from_file_location(
        "benchmark_input", os.path.join(REPO, "tools", "benchmark_input.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def records(benchmark_input, tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    benchmark_input.write_records(str(directory), 16)
    return str(directory)


def test_records_are_imagenet_sized_jpegs_with_one_based_labels(records):
    files = sorted(glob.glob(os.path.join(records, "train-*")))
    assert len(files) == 8
    shapes, labels = [], []
    for serialized in tf.data.TFRecordDataset(files):
        example = tf.train.Example.FromString(serialized.numpy())
        encoded = example.features.feature["image/encoded"].bytes_list.value[0]
        assert tf.io.is_jpeg(encoded)
        shapes.append(tuple(tf.io.extract_jpeg_shape(encoded).numpy()))
        labels.append(example.features.feature["image/class/label"].int64_list.value[0])
    assert set(shapes) <= {(375, 500, 3), (500, 375, 3)}
    assert sorted(labels) == list(range(1, 17))


def test_stages_cut_the_training_pipeline_after_each_op(benchmark_input, records):
    full = builder.image_ops_after_decode(True, 32)
    datasets = benchmark_input.stage_datasets(records, 32, 4)
    assert list(datasets) == ["crop_bilinear"] + ["+" + name for name, _ in full]
    assert builder.image_ops_after_decode(True, 32) == full  # the patch is undone
    for name, dataset in datasets.items():
        images = np.concatenate([(batch[0] if isinstance(batch, tuple) else batch).numpy()
                                 for batch in dataset])
        assert images.shape == (16, 32, 32, 3), name
        if name == "+distort_color":
            continue  # distort_color leaves its clip to value_range
        low = -1.0 if name == "+value_range" else 0.0
        assert images.min() >= low - 1e-6 and images.max() <= 1.0 + 1e-6, name
        assert images.min() < low + 0.5, name  # the range is used, not only checked


def test_json_output_has_the_three_rates(tmp_path):
    result = run_python(["tools/benchmark_input.py", "--images=16", "--resolution=32",
                         "--batch=8", "--repeats=1", "--json"])
    rates = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(rates) == {"decode_only", "train", "eval"}
    assert all(rate > 0 for rate in rates.values())
