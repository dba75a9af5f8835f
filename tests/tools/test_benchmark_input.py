"""tools/benchmark_input.py: the records it writes, its stage breakdown and its JSON output."""
import glob
import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import CHI2_999, REPO, chi_square_uniform, run_python
from tf_pyramid.data import builder
from tf_pyramid.data import compiled_ops


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


@pytest.mark.parametrize("training", [True, False])
def test_slim_references_give_full_size_images_in_minus_one_one(benchmark_input, records,
                                                                training):
    images = np.concatenate([batch.numpy() for batch in benchmark_input.slim_dataset(
        records, 48, 5, training)])
    assert images.shape == (16, 48, 48, 3) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.5 and images.max() > 0.5  # the range is used, not only checked


def test_slim_eval_reference_is_the_central_crop_resized(benchmark_input, records):
    """preprocess_for_eval by hand: central 87.5% of the decoded image, bilinear, [-1, 1]."""
    serialized = next(iter(tf.data.TFRecordDataset(
        sorted(glob.glob(os.path.join(records, "train-*")))[:1])))
    encoded = tf.train.Example.FromString(
        serialized.numpy()).features.feature["image/encoded"].bytes_list.value[0]
    image = tf.io.decode_jpeg(encoded, channels=3).numpy() / np.float32(255)
    height, width = image.shape[:2]
    top, left = int((height - height * 0.875) / 2), int((width - width * 0.875) / 2)
    center = image[top:height - top, left:width - left]
    expected = tf.image.resize(center, [40, 40]).numpy() * 2 - 1
    got = benchmark_input.slim_eval_preprocess(tf.constant(encoded), 40).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_slim_train_reference_draws_every_resize_and_colour_ordering(benchmark_input,
                                                                     monkeypatch):
    """slim's selector picks each of its 4 cases (stateful draws, as slim), and the resize
    case decides the output: nearest keeps only source pixel values."""
    image = tf.constant(np.random.default_rng(0).uniform(size=[30, 40, 3]), tf.float32)
    picked = []
    original = benchmark_input._slim_random_selector

    def recording(x, fn, num_cases):
        return original(x, lambda y, k: (picked.append(k), fn(y, k))[1], num_cases)

    monkeypatch.setattr(benchmark_input, "_slim_random_selector", recording)
    encoded = tf.io.encode_jpeg(tf.cast(image * 255, tf.uint8))
    tf.function(benchmark_input.slim_train_preprocess).get_concrete_function(encoded, 16)
    assert picked == [0, 1, 2, 3] * 2  # traced: every case of both selectors is a branch
    cases = tf.data.Dataset.range(400).map(lambda _: original(
        tf.zeros([]), lambda x, k: x + float(k), 4)).batch(400).get_single_element().numpy()
    counts = np.bincount(cases.astype(int), minlength=4)
    assert len(counts) == 4 and chi_square_uniform(counts) < CHI2_999[3], counts


def test_json_output_has_every_rate(tmp_path, compiled_kernels):
    result = run_python(["tools/benchmark_input.py", "--images=16", "--resolution=32",
                         "--batch=8", "--repeats=1", "--json"])
    output = json.loads(result.stdout.strip().splitlines()[-1])
    pipelines = {"decode_only", "train", "train_tf_ops", "eval", "eval_tf_ops", "slim_reference",
                 "slim_eval_reference"}
    assert set(output) == pipelines | {"cpu_ms", "full_rate", "startup_ms", "median_ratios",
                                       "compiled_ops"}
    if compiled_ops.find_compiler():
        assert output["compiled_ops"] is None  # the kernels are built and used here
    else:
        assert "compiler" in output["compiled_ops"] or "could not run" in output["compiled_ops"]
    assert all(output[name] > 0 for name in pipelines)  # steady-state images/s
    for measure in ("cpu_ms", "full_rate", "startup_ms"):
        assert set(output[measure]) == pipelines
        assert all(value > 0 for value in output[measure].values())
    ratios = output["median_ratios"]
    assert set(ratios) == {"train/slim_reference", "eval/slim_eval_reference",
                           "train/train_tf_ops", "eval/eval_tf_ops"}
    for paired in ratios.values():
        assert set(paired) == {"rate", "cpu", "full_rate"} and all(v > 0 for v in paired.values())
    # One round: the median is that round's ratio, the ratio of the only (hence best) passes.
    train, slim = output["train"], output["slim_reference"]
    assert ratios["train/slim_reference"]["rate"] == pytest.approx(train / slim, rel=0.01)


def test_paired_ratios_are_medians_of_per_round_ratios(benchmark_input):
    """Round by round ours runs 2x, 1x, 4x the reference (the machine's speed drifting in
    between): the median of the per-round ratios is 2, where the ratio of the bests says 4."""
    def passes(rates):
        return [{"rate": r, "full_rate": r / 2, "cpu_ms": 1000 / r} for r in rates]

    ours, reference = passes([20, 100, 400]), passes([10, 100, 100])
    assert benchmark_input.paired_ratios(ours, reference) == {
        "rate": 2.0, "full_rate": 2.0, "cpu": 2.0}
    assert max(p["rate"] for p in ours) / max(p["rate"] for p in reference) == 4.0


def test_a_pass_is_split_into_startup_and_steady_state(benchmark_input):
    """4 batches of 8: the first is startup, the other 24 images the steady state."""
    dataset = tf.data.Dataset.range(32).map(lambda i: tf.cast(i, tf.float32)).batch(8)
    measured = benchmark_input.measure_pass(dataset)
    assert set(measured) == {"startup_ms", "startup_cpu_ms", "rate", "cpu_ms", "full_rate"}
    assert measured["rate"] > 0 and measured["full_rate"] > 0 and measured["startup_ms"] > 0
    seconds_steady = 24 / measured["rate"]
    assert 32 / measured["full_rate"] == pytest.approx(
        seconds_steady + measured["startup_ms"] / 1000, rel=1e-6)
