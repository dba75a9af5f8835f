"""The batched traversal against the slow reference, costs, gradient routing, serialization."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import area_pyramid
from tests.helpers import reference_outputs


def _model(name="mnist_m2", levels=3, learning_rule=None, **kwargs):
    keras.utils.set_random_seed(1)
    model = tf_pyramid.build_model(name, levels=levels, **kwargs)
    if learning_rule is not None:
        model.compile(optimizer="adam", learning_rule=learning_rule)
    return model


def _images(model, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    side = model.input_size
    return rng.uniform(0, 1, (batch, side, side, model.channels)).astype("float32")


def _masks_by_offset(trace, image):
    """(level, offset) -> mask of the traversal the model ran, for one image."""
    table = {}
    for level, masks in enumerate(trace["mask"]):
        index = trace["image_index"][level].numpy()
        offsets = trace["offset"][level].numpy()
        for patch in np.flatnonzero(index == image):
            table[(level, tuple(offsets[patch]))] = masks.numpy()[patch]
    return table


@pytest.mark.parametrize("name,levels", [("mnist_m2", 3), ("mnist_m3", 3), ("mnist_m1", 2)])
def test_traversal_equals_reference_on_sampled_masks(name, levels):
    model = _model(name, levels)
    images = _images(model)
    trace = model.traverse(images, policy="sample")
    outputs = model.summarize(trace, images.shape[0])
    for image in range(images.shape[0]):
        table = _masks_by_offset(trace, image)
        for depth in range(1, levels + 1):
            logits, macs, locations = reference_outputs(
                model, images[image], lambda level, offset, _: table[(level, offset)], depth)
            np.testing.assert_allclose(outputs["level_logits"][image, depth - 1], logits,
                                       rtol=1e-4, atol=1e-5)
            assert outputs["level_macs"][image, depth - 1] == macs
            assert outputs["level_num_locations"][image, depth - 1] == locations


@pytest.mark.parametrize("policy", ["threshold", "topk:9", "topk:0", "topk:2"])
def test_traversal_equals_reference_under_deterministic_policies(policy):
    """The reference derives the masks from its own probabilities: nothing is shared."""
    model = _model("mnist_m2", 3, policy=policy)
    images = _images(model, batch=2, seed=3)
    outputs = model(images)
    kind = policy.split(":")

    def masks(level, offset, probabilities):
        if kind[0] == "threshold":
            return probabilities >= 0.5
        k = int(kind[1])
        return np.isin(np.arange(9), np.argsort(-probabilities, kind="stable")[:k])

    for image in range(images.shape[0]):
        logits, macs, locations = reference_outputs(model, images[image], masks, 3)
        np.testing.assert_allclose(outputs["logits"][image], logits, rtol=1e-4, atol=1e-5)
        assert outputs["macs"][image] == macs
        assert outputs["num_locations"][image] == locations


def test_all_and_none_attended_counts():
    model = _model("mnist_m2", 3, policy="topk:9")
    images = _images(model)
    assert np.all(model(images)["num_locations"] == 9 + 81)
    model.policy = "topk:0"
    outputs = model(images)
    assert np.all(outputs["num_locations"] == 0)
    # Nothing attended: every level's prediction is the level-1 prediction.
    for depth in range(3):
        np.testing.assert_allclose(outputs["level_logits"][:, depth], outputs["level_logits"][:, 0])


def test_macs_hand_count_for_topk():
    """topk:2 over 3 levels: 1 + 2 + 4 patches, 1 + 2 location applications, 1 + 2 merges."""
    model = _model("mnist_m3", 3, policy="topk:2")
    outputs = model(_images(model, batch=2))
    fe, loc, agg, merge, cls = 1_291_392, 5_184, 36_864, 8_192, 640
    expected = [fe + cls,
                3 * fe + loc + agg + merge + cls,
                7 * fe + 3 * loc + 3 * (agg + merge) + cls]
    np.testing.assert_array_equal(outputs["level_macs"], [expected, expected])
    np.testing.assert_array_equal(outputs["level_num_locations"], [[0, 2, 6]] * 2)


def test_level_one_prediction_is_feature_extraction_plus_classifier():
    model = _model("mnist_m3", 3, policy="topk:4")
    images = _images(model)
    level_one = area_pyramid(images[0], 14, 3)[0]
    _, vector = model.feature_extraction(
        np.stack([area_pyramid(im, 14, 3)[0] for im in images]).astype("float32"))
    expected = model.classification_module(vector)
    np.testing.assert_allclose(model(images)["level_logits"][:, 0], expected, rtol=1e-5, atol=1e-5)
    assert level_one.shape == (14, 14, 1)
    # A truncated call runs only up to the requested depth.
    np.testing.assert_allclose(model(images, depth=1)["logits"], expected, rtol=1e-5, atol=1e-5)


def test_location_statistics_match_the_trace():
    model = _model("mnist_m2", 3)
    images = _images(model)
    trace = model.traverse(images, policy="sample")
    outputs = model.summarize(trace, images.shape[0])
    for image in range(images.shape[0]):
        log_prob, expected, count = 0.0, 0.0, 0
        for level in range(2):
            rows = trace["image_index"][level].numpy() == image
            p = trace["probabilities"][level].numpy()[rows].astype(np.float64)
            u = trace["mask"][level].numpy()[rows]
            log_prob += np.sum(u * np.log(p) + (1 - u) * np.log(1 - p))
            expected += p.sum()
            count += rows.sum()
            np.testing.assert_allclose(outputs["location_log_prob"][image, level + 1], log_prob,
                                       rtol=1e-4)
            np.testing.assert_allclose(outputs["expected_locations"][image, level + 1], expected,
                                       rtol=1e-5)
            assert outputs["location_applications"][image, level + 1] == count
        assert outputs["location_log_prob"][image, 0] == 0.0


def test_sampling_is_random_and_thresholding_is_not():
    model = _model("mnist_m2", 3)
    images = _images(model, batch=8)
    first = model(images, training=True)["level_num_locations"].numpy()
    second = model(images, training=True)["level_num_locations"].numpy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(model(images)["num_locations"], model(images)["num_locations"])


def test_gradient_routing():
    """Location losses reach only the location module; cross-entropy never reaches it."""
    model = _model("mnist_m2", 3)
    images = _images(model, batch=4)
    location_vars = {id(v) for v in model.location_module.trainable_variables}
    with tf.GradientTape(persistent=True) as tape:
        outputs = model(images, training=True)
        location_loss = (tf.reduce_sum(outputs["location_log_prob"])
                         + tf.reduce_sum(outputs["expected_locations"])
                         + tf.reduce_sum(outputs["cell_prob_sum"]))
        cross_entropy = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
            tf.zeros([4], tf.int32), outputs["logits"], from_logits=True))
    for variable in model.trainable_variables:
        to_location = tape.gradient(location_loss, variable)
        from_ce = tape.gradient(cross_entropy, variable)
        if id(variable) in location_vars:
            assert to_location is not None and np.any(to_location.numpy() != 0)
            assert from_ce is None or not np.any(from_ce.numpy())
        else:
            assert to_location is None or not np.any(to_location.numpy())
    fe_grads = tape.gradient(cross_entropy, model.feature_extraction.trainable_variables)
    assert all(g is not None and np.any(g.numpy()) for g in fe_grads)


def test_policy_can_be_changed_and_is_validated():
    model = _model("mnist_m2", 2)
    model.policy = "topk:3"
    assert model.policy == "topk:3"
    assert np.all(model(_images(model))["num_locations"] == 3)
    for bad in ("topk:10", "topk:x", "greedy", 3):
        with pytest.raises(ValueError, match="policy|topk"):
            model.policy = bad
    with pytest.raises(ValueError, match="policy"):
        tf_pyramid.build_model("mnist_m2", policy="best")


def test_works_inside_tf_function_with_dynamic_batch():
    model = _model("mnist_m2", 3)
    images = _images(model, batch=5)
    fn = tf.function(lambda x: model(x)["logits"],
                     input_signature=[tf.TensorSpec([None, 56, 56, 1], tf.float32)])
    np.testing.assert_allclose(fn(images), model(images)["logits"], rtol=1e-5, atol=1e-6)
    assert fn(images[:0]).shape == (0, 10)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((56, 56, 1), "float32"), "rank 4"),
    (np.zeros((2, 56, 56, 3), "float32"), "1 channel"),
    (np.zeros((2, 28, 28, 1), "float32"), "side 56"),
    (np.array([["a"]]), "numeric"),
])
def test_bad_images(bad, match):
    model = _model("mnist_m2", 3)
    with pytest.raises(ValueError, match=match):
        model(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Unknown model name 'mnist_m9'"):
        tf_pyramid.build_model("mnist_m9")
    for levels in (0, -1, 13, 2.5):
        with pytest.raises(ValueError, match="levels must be an integer"):
            tf_pyramid.build_model("mnist_m2", levels=levels)
    model = _model("mnist_m2", 2)
    with pytest.raises(ValueError, match="depth must be an integer between 1 and the model's"):
        model(_images(model), depth=3)


def test_model_serialization_round_trip(tmp_path):
    model = _model("mnist_m3", 3, policy="topk:2",
                   learning_rule={"lambda_f": 1e-6, "target_locations": [2.0, 6.0]})
    images = _images(model)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, tf_pyramid.PyramidClassifier)
    assert loaded.policy == "topk:2" and loaded.levels == 3
    assert loaded.learning_rule["target_locations"] == [2.0, 6.0]
    for key in ("level_logits", "level_macs", "level_num_locations"):
        np.testing.assert_allclose(loaded(images)[key], model(images)[key], rtol=1e-6)
    clone = tf_pyramid.PyramidClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


def test_baseline_outputs_and_round_trip(tmp_path):
    model = _model("mnist_bl3", 3)
    images = _images(model)
    outputs = model(images)
    assert outputs["logits"].shape == (3, 10)
    # Table 1 at N = 56: 288 N^2 + 4,608 N^2 + (13 x 13 after the VALID 3/2 pool) x 36,864,
    # FC 2 x 4,096, linear 640.
    expected = 288 * 56**2 + 4608 * 56**2 + 13 * 13 * 36864 + 2 * 4096 + 640
    assert np.all(outputs["macs"].numpy() == expected)
    path = str(tmp_path / "baseline.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(images)["logits"], outputs["logits"], rtol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        tf_pyramid.build_model("mnist_bl3", policy="topk:2")


def test_descend_fn_skips_the_work_of_stopped_images():
    model = _model("mnist_m2", 3, policy="topk:3")
    images = _images(model, batch=3)
    full = model(images)
    stop_first = lambda trace, level: tf.range(3) > 0  # image 0 stops after level 1
    trace = model.traverse(images, descend_fn=stop_first)
    early = model.summarize(trace, 3)
    assert early["num_locations"][0] == 0
    assert early["macs"][0] == full["level_macs"][0, 0]
    np.testing.assert_allclose(early["logits"][0], full["level_logits"][0, 0], rtol=1e-5)
    np.testing.assert_array_equal(early["macs"][1:], full["macs"][1:])
    np.testing.assert_allclose(early["logits"][1:], full["logits"][1:], rtol=1e-5, atol=1e-6)
    # The location module ran on no patch of image 0.
    assert trace["applied"][0].numpy().tolist() == [0.0, 1.0, 1.0]


def test_deepest_only_root_vectors_equal_the_last_truncation():
    model = _model("mnist_m2", 3, policy="sample")
    trace = model.traverse(_images(model, batch=4), training=False)
    every_depth = model.root_vectors(trace)
    deepest = model.root_vectors(trace, deepest_only=True)
    assert every_depth.shape[1] == 3 and deepest.shape[1] == 1
    np.testing.assert_allclose(deepest[:, 0], every_depth[:, -1], rtol=1e-5, atol=1e-6)


def test_child_crops_are_exact_pixels_on_large_levels():
    model = _model("imagenet_m1", 5)  # 512 px input, b = 32
    rng = np.random.default_rng(5)
    level = rng.uniform(-1, 1, (2, 512, 512, 3)).astype("float32")
    offsets = rng.integers(0, (512 - 32) // 16 + 1, (40, 2)) * 16
    offsets[0] = [480, 480]
    image_index = rng.integers(0, 2, 40)
    crops = model._crop_children(tf.constant(level), tf.constant(image_index, tf.int32),
                                 tf.constant(offsets, tf.int32)).numpy()
    for crop, image, (y, x) in zip(crops, image_index, offsets):
        np.testing.assert_array_equal(crop, level[image, y:y + 32, x:x + 32])


@pytest.mark.parametrize("name", ["mnist_m2", "mnist_bl2"])
def test_tf_checkpoint_holds_every_weight(tmp_path, name):
    """`tf.train.Checkpoint(model=...)` must save and restore all weights (no list-held layers)."""
    model = tf_pyramid.build_model(name, levels=2)
    model(np.zeros((1, 28, 28, 1), np.float32))
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    saved = [n for n, _ in tf.train.list_variables(path)
             if n.startswith("model/") and n.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(model.weights)

    other = tf_pyramid.build_model(name, levels=2)
    other(np.zeros((1, 28, 28, 1), np.float32))
    kernel = other.feature_extraction.stack[0].kernel
    assert not np.array_equal(kernel.numpy(), model.feature_extraction.stack[0].kernel.numpy())
    tf.train.Checkpoint(model=other).restore(path).assert_existing_objects_matched()
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
