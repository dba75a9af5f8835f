"""The model's preprocessing layer: raw pixels -> model-ready inputs, saved with the model.

It is tied to the data pipelines by the equivalence tests below: the evaluation pipelines
(MNIST canvases of every variant, real photos through the folder source) give, value for value,
what the layer gives on the same decoded image."""
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import encode, sample_photos
from tf_pyramid.data import build_dataset, input_convention
from tf_pyramid.data import compiled_ops
from tf_pyramid.data import image_ops
from tf_pyramid.modeling import ImagePreprocessor

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _layer(dataset, resolution, variant="plain"):
    return ImagePreprocessor.from_convention(input_convention(dataset, resolution, variant))


def _to_pixels(images, info):
    """Model-ready images of a pipeline -> 0-255 floats, by its convention's value range."""
    low, high = info.input_convention.value_range
    return (images - np.float32(low)) / np.float32(high - low) * np.float32(255.0)


# ---------------------------------------------------------------------- the layer by itself
def test_config_round_trip_and_validation():
    layer = ImagePreprocessor(28, 1, (-1, 1), "area", name="p")
    again = ImagePreprocessor.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    assert layer.convention() == input_convention("mnist", 28,
                                                  mnist_input="symmetric").get_config()
    assert again.input_range == (0.0, 255.0)
    with pytest.raises(ValueError, match="resize_method must be one of"):
        ImagePreprocessor(28, 1, (-1, 1), "bicubic")
    with pytest.raises(ValueError, match="value_range needs"):
        ImagePreprocessor(28, 1, (1, -1), "area")
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ImagePreprocessor(28, 2, (-1, 1), "area")


def test_dtypes_ranks_and_channels():
    pixels = np.random.default_rng(0).integers(0, 256, [2, 56, 56, 3]).astype(np.uint8)
    gray = _layer("mnist", 28)
    as_float = gray(pixels.astype(np.float32))
    np.testing.assert_allclose(gray(pixels), as_float, atol=1e-6)  # uint8 = float 0-255
    np.testing.assert_allclose(gray(pixels[0]), as_float[0], atol=1e-6)  # one image [H, W, C]
    luma = np.tensordot(pixels.astype(np.float32), [0.299, 0.587, 0.114], axes=1)[..., None]
    np.testing.assert_allclose(as_float, gray(luma), atol=1e-5)  # RGB -> BT.601 luma
    rgba = np.concatenate([pixels, np.full([2, 56, 56, 1], 7, np.uint8)], axis=-1)
    np.testing.assert_allclose(gray(rgba), as_float, atol=1e-6)  # alpha dropped
    rgb = _layer("imagenet2012", 56)
    one = pixels[..., :1]
    np.testing.assert_allclose(rgb(one), rgb(np.repeat(one, 3, axis=-1)), atol=0)  # grey -> RGB
    # The right size is an identity: only the scale applies.
    np.testing.assert_allclose(rgb(pixels), pixels / np.float32(127.5) - 1, atol=1e-6)
    assert float(tf.reduce_min(gray(np.full([1, 9, 9, 1], 300.0)))) == pytest.approx(
        gray.value_range[1])  # clipped to white
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        gray(np.zeros([1, 28, 28, 2], np.float32))
    with pytest.raises(TypeError, match="pixel values"):
        gray(tf.constant(["x"]))


def test_unknown_sizes_in_a_graph():
    layer = _layer("imagenet2012", 32)
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    for height, width in ((32, 32), (75, 120), (300, 200)):
        image = np.random.default_rng(height).uniform(0, 255, [1, height, width, 3])
        np.testing.assert_allclose(traced(image.astype(np.float32)),
                                   layer(image.astype(np.float32)), atol=1e-6)
        assert traced(image.astype(np.float32)).shape == (1, 32, 32, 3)


# ------------------------------------------------- the evaluation pipelines give the same values
@pytest.mark.parametrize("variant", ["plain", "noisy", "textured"])
@pytest.mark.parametrize("resolution", [14, 28, 56])
def test_mnist_evaluation_pipeline_equals_the_layer_on_its_canvases(variant, resolution):
    """The same seed draws the same canvases at every resolution: the 56 px pipeline gives the
    canvases themselves (mapped back to 0-255), the layer takes them to `resolution`."""
    def first_batch(r):
        dataset, info = build_dataset("mnist", "test", resolution=r, batch_size=64,
                                      training=False, variant=variant, source="bundled", seed=11)
        return next(iter(dataset))[0].numpy(), info

    canvases = _to_pixels(*first_batch(56))  # 0-255 floats
    expected = first_batch(resolution)[0]
    layer = _layer("mnist", resolution, variant)
    # 1e-6 of the [-1, 1] scale: float32 rounding grows with the range's width.
    tolerance = 1e-6 * (layer.value_range[1] - layer.value_range[0]) / 2
    np.testing.assert_allclose(layer(canvases), expected, atol=tolerance)
    if variant != "textured":  # the canvases are whole pixel values: uint8 holds them exactly
        pixels = np.round(canvases).astype(np.uint8)
        np.testing.assert_allclose(layer(pixels), expected, atol=tolerance)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """One photo per class folder (JPEG and PNG, several sizes): label -> encoded bytes."""
    root = tmp_path_factory.mktemp("photos")
    files = {}
    for index, (name, photo) in enumerate(sorted(sample_photos().items())):
        for fmt, size in (("JPEG", None), ("PNG", (97, 130))):
            image = photo if size is None else np.round(
                tf.image.resize(photo, size, antialias=True).numpy()).astype(np.uint8)
            label_name = f"{index}_{name}_{fmt.lower()}"
            folder = root / "validation" / label_name
            folder.mkdir(parents=True)
            data = encode(image, fmt)
            (folder / f"{name}.{fmt.lower()}").write_bytes(data)
            files[label_name] = data
    return root, [files[name] for name in sorted(files)]


@pytest.mark.parametrize("resolution", [32, 64, 128, 224])
@pytest.mark.parametrize("kernels", ["tensorflow_ops", "compiled"])
def test_photo_evaluation_pipeline_equals_the_layer_on_the_decoded_image(
        photo_folder, resolution, kernels, request):
    """Mip-map (shrinking > 2x) and plain bilinear paths alike, with TensorFlow's ops and with
    the compiled resize kernel where one can be built."""
    root, encoded = photo_folder
    if kernels == "compiled":
        if request.getfixturevalue("compiled_kernels") is None:
            pytest.skip("no C++ compiler: the pipeline runs on TensorFlow's ops only")
        context = _nothing()
    else:
        context = compiled_ops.tensorflow_ops_only()
    with context:
        assert compiled_ops.in_use() == (kernels == "compiled")
        dataset, _ = build_dataset("folder", "validation", resolution=resolution, batch_size=8,
                                   training=False, data_dir=str(root))
        images, labels = (t.numpy() for t in next(iter(dataset)))
    layer = _layer("folder", resolution)
    for image, label in zip(images, labels):
        decoded = image_ops.decode_for_size(encoded[label], size=resolution)
        np.testing.assert_allclose(layer(decoded[None])[0], image, atol=1e-6)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


# --------------------------------------------------------- predict / evaluate take raw pixels
def _digits(count=24):
    """Bundled digits on their 56 px canvases (uint8), the 28 px model inputs the evaluation
    pipeline makes of them, and their labels."""
    def first(r):
        dataset, info = build_dataset("mnist", "test", resolution=r, batch_size=count,
                                      training=False, source="bundled", seed=5)
        images, labels = next(iter(dataset))
        return _to_pixels(images.numpy(), info), labels.numpy()
    canvases, labels = first(56)
    low, high = input_convention("mnist", 28).value_range
    model_ready = first(28)[0] / np.float32(255.0) * np.float32(high - low) + np.float32(low)
    return np.round(canvases).astype(np.uint8), model_ready, labels


@pytest.mark.parametrize("name", ["mnist_m2", "mnist_bl2"])
def test_predict_and_evaluate_take_raw_pixels(name):
    keras.utils.set_random_seed(1)
    model = tf_pyramid.build_model(name, levels=2,
                                   input_convention=input_convention("mnist", 28).get_config())
    pixels, model_ready, labels = _digits()
    expected = model(model_ready, training=False)["logits"].numpy()
    for raw in (pixels, pixels.astype(np.float32)):
        got = model.predict(raw, batch_size=8, verbose=0)["logits"]
        np.testing.assert_allclose(got, expected, atol=1e-4)
    model.compile(optimizer="adam")
    raw_logs = model.evaluate(pixels, labels, batch_size=8, verbose=0, return_dict=True)
    # evaluate's own metric against the predictions of the model-ready images
    accuracy = float(np.mean(expected.argmax(-1) == labels))
    level = "level_2_accuracy" if model.exit_levels == 2 else "level_1_accuracy"
    assert abs(raw_logs[level] - accuracy) < 1e-6


def test_fit_and_its_validation_take_model_ready_batches_evaluate_raw_pixels():
    keras.utils.set_random_seed(2)
    model = tf_pyramid.build_model("mnist_bl1", levels=2,
                                   input_convention=input_convention("mnist", 28).get_config())
    model.compile(optimizer="adam")
    pixels, model_ready, labels = _digits(16)
    model.evaluate(pixels, labels, verbose=0)  # compiles a raw-pixel test function first
    history = model.fit(model_ready, labels, batch_size=8, epochs=1, verbose=0,
                        validation_data=(model_ready, labels))
    after = model.evaluate(pixels, labels, batch_size=8, verbose=0, return_dict=True)
    assert abs(history.history["val_level_1_accuracy"][-1] - after["level_1_accuracy"]) < 1e-6
    assert abs(history.history["val_loss"][-1] - after["loss"]) < 1e-4


def test_scaled_data_is_refused_with_what_to_pass_instead():
    model = tf_pyramid.build_model("mnist_m2", levels=2,
                                   input_convention=input_convention("mnist", 28).get_config())
    pixels, model_ready, labels = _digits(8)
    unit = pixels.astype(np.float32) / 255
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"scaled to \[0, 1\].*Multiply"):
        model.predict(unit, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"below 0.*scaled to \[-1, 1\]"):
        model.predict(model_ready, verbose=0)
    model.compile(optimizer="adam")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"evaluate takes raw pixel"):
        model.evaluate(unit, labels, verbose=0)
    # Not refused: integer 0/1 images (dark pixels) and an all-black batch.
    model.predict(np.ones([2, 28, 28, 1], np.uint8), verbose=0)
    model.predict(np.zeros([2, 28, 28, 1], np.float32), verbose=0)


def test_a_model_without_convention_predicts_on_model_ready_inputs():
    model = tf_pyramid.build_model("mnist_bl1", levels=2, num_classes=3)
    x = np.random.default_rng(0).uniform(-1, 1, [4, 28, 28, 1]).astype(np.float32)
    assert model.preprocessor is None
    np.testing.assert_allclose(model.predict(x, verbose=0)["logits"], model(x)["logits"],
                               atol=1e-5)


# ------------------------------------------------------------------------------- saved models
def test_the_layer_is_saved_in_model_keras(tmp_path):
    convention = dict(input_convention("imagenet2012", 32).get_config(), value_range=[0.0, 1.0])
    model = tf_pyramid.build_model("imagenet_bl1", levels=1, num_classes=3,
                                   input_convention=convention)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.preprocessor, ImagePreprocessor)
    assert loaded.input_convention == convention
    assert loaded.get_config()["preprocessor"]["registered_name"] == "tf_pyramid>ImagePreprocessor"
    photo = np.random.default_rng(0).integers(0, 256, [2, 50, 70, 3]).astype(np.uint8)
    np.testing.assert_allclose(loaded.predict(photo, verbose=0)["logits"],
                               model.predict(photo, verbose=0)["logits"], atol=1e-5)


def test_a_model_saved_before_the_layer_loads_with_its_convention_as_the_layer(tmp_path):
    """tests/modeling/data/pyramid_v0_3.keras: written by tf_pyramid 0.3.0 before this layer
    (a plain `input_convention` dict in its config), with the logits that version's
    `InputConvention.prepare` path gave on 16 px raw pixels (the model takes 8 px)."""
    path = tmp_path / "old.keras"
    shutil.copy(os.path.join(DATA, "pyramid_v0_3.keras"), path)
    with open(os.path.join(DATA, "pyramid_v0_3.json")) as f:
        reference = json.load(f)
    model = keras.saving.load_model(path)
    assert model.preprocessor.convention() == input_convention(
        "mnist", 8, mnist_input="symmetric").get_config()  # the range it was trained on
    pixels = np.array(reference["pixels"], np.uint8)
    np.testing.assert_allclose(model.predict(pixels, verbose=0)["logits"],
                               reference["logits"], atol=1e-5)
    model.save(tmp_path / "again.keras")  # and saves in the new form
    again = keras.saving.load_model(tmp_path / "again.keras")
    assert "input_convention" not in again.get_config()
    assert again.input_convention == model.input_convention
