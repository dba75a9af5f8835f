"""The in-graph serving preprocessing agrees with the evaluation pipelines of tf_pyramid.data."""
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tf_pyramid.data import InputConvention, input_convention
from tf_pyramid.serving import preprocessing

MNIST_28 = input_convention("mnist", 28)
MNIST_56 = input_convention("mnist", 56)
IMAGENET_32 = input_convention("imagenet2012", 32)
IMAGENET_64 = input_convention("imagenet2012", 64)


def test_conventions():
    assert MNIST_28 == InputConvention(28, 1, (0.0, 1.0), "area")
    assert IMAGENET_64 == InputConvention(64, 3, (-1.0, 1.0), "bilinear")
    assert InputConvention.from_config(IMAGENET_64.get_config()) == IMAGENET_64
    model = tf_pyramid.build_model("mnist_bl1", levels=2, input_convention=MNIST_28.get_config())
    assert InputConvention.of_model(model) == MNIST_28
    assert InputConvention.of_model(model, "-1, 1").value_range == (-1.0, 1.0)
    with pytest.raises(ValueError, match="low < high"):
        InputConvention.of_model(model, "1,0")
    with pytest.raises(ValueError, match="no input convention"):
        InputConvention.of_model(tf_pyramid.build_model("mnist_bl1", levels=2))


def test_imagenet_matches_the_evaluation_pipeline():
    image_ops = pytest.importorskip("tf_pyramid.data.image_ops")
    image = np.random.default_rng(0).integers(0, 256, [75, 120, 3]).astype(np.uint8)
    expected = image_ops.value_range(image_ops.resize_antialiased(image, size=64))
    got = preprocessing.prepare_images(image[None].astype(np.float32), IMAGENET_64)[0]
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_mnist_matches_the_evaluation_pipeline():
    mnist = pytest.importorskip("tf_pyramid.data.mnist")
    image = np.random.default_rng(1).integers(0, 256, [56, 56, 1]).astype(np.float32)
    expected = mnist.area_resize(tf.constant(image / 255.0), size=28)
    got = preprocessing.prepare_images(image[None], MNIST_28)[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    same = preprocessing.prepare_images(image[None], MNIST_56)[0]
    np.testing.assert_array_equal(same, image / np.float32(255.0))


def test_decoded_bytes_equal_the_float_path():
    image = np.random.default_rng(2).integers(0, 256, [33, 47, 3]).astype(np.uint8)
    encoded = tf.io.encode_png(image)
    decoded = preprocessing.decode_images(tf.stack([encoded, encoded]), IMAGENET_32)
    floats = IMAGENET_32.resize(image[None].astype(np.float32))
    np.testing.assert_array_equal(decoded, tf.concat([floats, floats], 0))
    gray = preprocessing.decode_images(encoded[None], input_convention("mnist", 32))
    assert gray.shape == (1, 32, 32, 1)
