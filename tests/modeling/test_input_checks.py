"""No silent wrong answers: integer pixels, wrong sizes behind unknown shapes, empty batches."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid

SIDE = 28
KINDS = ["mnist_m2", "mnist_bl1"]  # the pyramid model and a baseline, both 28 px at 2 levels
WRONG_SIZES = [(29, 29), (30, 30), (28, 30), (30, 28), (27, 27), (14, 14), (56, 56)]


def _model(name, **kwargs):
    keras.utils.set_random_seed(1)
    return tf_pyramid.build_model(name, levels=2, num_classes=3, **kwargs)


def _images(height=SIDE, width=SIDE, batch=2, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (batch, height, width, channels)).astype("float32")


def _any_size(model):
    """The model's logits under a tf.function traced for images of any size and rank."""
    return tf.function(lambda images: model(images)["logits"],
                       input_signature=[tf.TensorSpec(None, tf.float32)])


@pytest.mark.parametrize("name", KINDS)
@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_integer_images_are_refused_with_the_conversion(name, dtype):
    model = _model(name)
    pixels = (_images() * 255).astype(dtype)
    with pytest.raises(TypeError, match=r"float32 images in the model's input range.*got dtype "
                                        r"u?int(8|32).*tf.cast\(images, tf.float32\) / 255"):
        model(pixels)
    with pytest.raises(TypeError, match="input range"):
        tf.function(lambda x: model(x)["logits"])(tf.constant(pixels))
    # Other float dtypes are still taken (cast to float32).
    np.testing.assert_allclose(model(_images().astype(np.float64))["logits"],
                               model(_images())["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", KINDS)
def test_every_wrong_size_fails_under_a_tf_function_of_unknown_size(name):
    model = _model(name)
    logits = _any_size(model)
    np.testing.assert_allclose(logits(_images()), model(_images())["logits"], rtol=1e-5,
                               atol=1e-6)
    for height, width in WRONG_SIZES:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=r"of side 28 .*\[batch, 28, 28, 1\]"):
            logits(_images(height, width))
        # The same size, eagerly (static check).
        with pytest.raises(ValueError, match="side 28"):
            model(_images(height, width))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"with 1 channel\(s\)"):
        logits(_images(channels=3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank 4"):
        logits(_images()[0])
    # Unknown batch only (the trainer's and the serving graph's shape): no runtime check added.
    known = tf.function(lambda x: model(x)["logits"],
                        input_signature=[tf.TensorSpec([None, SIDE, SIDE, 1], tf.float32)])
    ops = known.get_concrete_function().graph.get_operations()
    assert not [op.name for op in ops if op.type == "Assert"]


@pytest.mark.parametrize("name", KINDS)
def test_wrong_size_fails_inside_a_saved_model_signature(name, tmp_path):
    model = _model(name)
    module = tf.Module()
    module.model = model
    module.logits = tf.function(
        lambda images: {"logits": model(images)["logits"]},
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="images")])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.logits})
    signature = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    np.testing.assert_allclose(signature(images=tf.constant(_images()))["logits"],
                               model(_images())["logits"], rtol=1e-5, atol=1e-6)
    for height, width in ((29, 29), (28, 30)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="of side 28"):
            signature(images=tf.constant(_images(height, width)))


@pytest.mark.parametrize("name", KINDS)
def test_fit_takes_images_of_unknown_size_and_refuses_a_wrong_one(name):
    model = _model(name)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    labels = np.array([0, 1, 2, 0], np.int32)

    def dataset(height, width):
        images = _images(height, width, batch=4)
        return tf.data.Dataset.from_generator(
            lambda: iter([(images, labels)]),
            output_signature=(tf.TensorSpec([None, None, None, 1], tf.float32),
                              tf.TensorSpec([None], tf.int32)))

    history = model.fit(dataset(SIDE, SIDE), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="of side 28"):
        model.fit(dataset(30, 30), epochs=1, verbose=0)


@pytest.mark.parametrize("name", KINDS)
def test_empty_batch_gives_empty_outputs(name):
    model = _model(name)
    outputs = model(_images(batch=3))
    empty = _images(batch=0)
    in_graph = tf.function(lambda x: model(x),
                           input_signature=[tf.TensorSpec([None, SIDE, SIDE, 1], tf.float32)])
    for got in (model(empty), in_graph(empty)):
        assert set(got) == set(outputs)
        for key, value in got.items():
            assert value.shape == (0, *outputs[key].shape[1:]), key
            assert value.dtype == outputs[key].dtype, key


def test_baseline_skips_its_layers_on_an_empty_batch(monkeypatch):
    """The layers never run on an empty batch (TF's conv kernels may return a wrongly shaped
    result for one, on some devices): here feature extraction fails if they do."""
    model = _model("mnist_bl1")
    layer = model.feature_extraction
    call = layer.call

    def refuse_empty(images, *args, **kwargs):
        with tf.control_dependencies([tf.debugging.assert_positive(
                tf.shape(images)[0], message="feature extraction ran on an empty batch")]):
            images = tf.identity(images)
        return call(images, *args, **kwargs)

    monkeypatch.setattr(layer, "call", refuse_empty)
    in_graph = tf.function(lambda x: model(x)["logits"],
                           input_signature=[tf.TensorSpec([None, SIDE, SIDE, 1], tf.float32)])
    assert in_graph(_images(batch=0)).shape == (0, 3)
    assert model(_images(batch=0))["logits"].shape == (0, 3)
    assert in_graph(_images(batch=2)).shape == (2, 3)


@pytest.mark.parametrize("name", KINDS)
def test_checks_hold_in_a_distribution_strategy_replica(name):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _model(name)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)])
    def replica_logits(images):
        return strategy.run(lambda x: model(x)["logits"], args=(images,))

    np.testing.assert_allclose(replica_logits(_images()), model(_images())["logits"], rtol=1e-5,
                               atol=1e-6)
    assert replica_logits(_images(batch=0)).shape == (0, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="of side 28"):
        replica_logits(_images(28, 30))
