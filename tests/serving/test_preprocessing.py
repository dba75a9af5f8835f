"""The in-graph serving preprocessing agrees with the evaluation pipelines of tf_pyramid.data."""
import numpy as np
import pytest
import tensorflow as tf

from tf_pyramid.serving import preprocessing


def test_conventions():
    assert preprocessing.value_range_for(1) == (0.0, 1.0)
    assert preprocessing.value_range_for(3) == (-1.0, 1.0)
    assert preprocessing.value_range_for(3, "mnist_textured") == (0.0, 1.0)
    assert preprocessing.value_range_for(1, "imagenet2012") == (-1.0, 1.0)
    assert preprocessing.resize_method_for(1) == "area"
    assert preprocessing.resize_method_for(3, "imagenet2012") == "bilinear"
    assert preprocessing.parse_value_range("-1, 1") == (-1.0, 1.0)
    with pytest.raises(ValueError):
        preprocessing.parse_value_range("1,0")


def test_imagenet_matches_the_evaluation_pipeline():
    image_ops = pytest.importorskip("tf_pyramid.data.image_ops")
    image = np.random.default_rng(0).integers(0, 256, [75, 120, 3]).astype(np.uint8)
    expected = image_ops.value_range(image_ops.resize_antialiased(image, size=64))
    got = preprocessing.prepare_images(image[None].astype(np.float32), 64, 3, (-1.0, 1.0),
                                       "bilinear")[0]
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_mnist_matches_the_evaluation_pipeline():
    mnist = pytest.importorskip("tf_pyramid.data.mnist")
    image = np.random.default_rng(1).integers(0, 256, [56, 56, 1]).astype(np.float32)
    expected = mnist.area_resize(tf.constant(image / 255.0), size=28)
    got = preprocessing.prepare_images(image[None], 28, 1, (0.0, 1.0), "area")[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    same = preprocessing.prepare_images(image[None], 56, 1, (0.0, 1.0), "area")[0]
    np.testing.assert_array_equal(same, image / np.float32(255.0))


def test_decoded_bytes_equal_the_float_path():
    image = np.random.default_rng(2).integers(0, 256, [33, 47, 3]).astype(np.uint8)
    encoded = tf.io.encode_png(image)
    decoded = preprocessing.decode_images(tf.stack([encoded, encoded]), 32, 3, "bilinear")
    floats = preprocessing.resize_images(image[None].astype(np.float32), 32, "bilinear")
    np.testing.assert_array_equal(decoded, tf.concat([floats, floats], 0))
    gray = preprocessing.decode_images(encoded[None], 32, 1, "area")
    assert gray.shape == (1, 32, 32, 1)
