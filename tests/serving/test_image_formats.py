"""`serving_bytes` takes every documented image format for 1- and 3-channel models."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import encoded_files, pil_pixels
from tf_pyramid import serving
from tf_pyramid.data import input_convention

# (model, levels, dataset): a 1-channel MNIST-type pyramid and a 3-channel ImageNet baseline.
MODELS = {1: ("mnist_m2", 2, "mnist"), 3: ("imagenet_bl1", 1, "imagenet2012")}


def _functions(channels, name=None):
    model_name, levels, dataset = MODELS[channels]
    name = name or model_name
    keras.utils.set_random_seed(2)
    model = tf_pyramid.build_model(name, levels=levels, num_classes=4)
    model.input_convention = input_convention(dataset, model.input_size).get_config()
    assert model.channels == channels
    return serving.ServingFunctions(model, model.preprocessor)


@pytest.mark.parametrize("channels", [1, 3])
def test_serving_bytes_takes_every_format(channels):
    functions = _functions(channels)
    files = encoded_files()
    serving_bytes = tf.function(functions.serving_bytes,
                                input_signature=[tf.TensorSpec([None], tf.string)])
    got = serving_bytes(tf.constant(list(files.values())))
    # What the float path says on PIL's decode of the same files.
    pixels = np.stack([pil_pixels(data, channels) for data in files.values()])
    expected = functions.serving_default(pixels)
    assert got["probabilities"].shape == (len(files), 4)
    # JPEG decoders differ by a few levels on some pixels; an undecoded or wrongly converted
    # image (e.g. inverted CMYK, a missing channel) changes the untrained model's output by more.
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=0.02)
    np.testing.assert_array_equal(got["macs"], expected["macs"])


def test_exported_1_channel_model_takes_gif_bmp_webp_and_cmyk(tmp_path):
    functions = _functions(1, "mnist_bl1")  # a baseline: fewer signatures, a faster export
    path = serving.export_saved_model(functions.model, str(tmp_path))
    signature = tf.saved_model.load(path).signatures["serving_bytes"]
    files = encoded_files()
    names = ["gif", "bmp", "webp", "jpeg_cmyk", "png_rgba"]
    got = signature(image_bytes=tf.constant([files[n] for n in names]))
    expected = functions.serving_bytes(tf.constant([files[n] for n in names]))
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-6)
    truncated = files["jpeg_rgb"][:len(files["jpeg_rgb"]) // 2]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"element\] \[2\] \[could not be decoded \(Invalid JPEG data"):
        signature(image_bytes=tf.constant([files["gif"], files["webp"], truncated]))
