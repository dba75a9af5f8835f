"""The learning rules (paper eq. 1-3, 6, 12-15) against values and gradients computed by hand."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tf_pyramid.modeling import learning_rule

LAMBDA_F, LAMBDA_T, LAMBDA_R, C_T, C_R = 0.5, 0.3, 0.7, 2.0, 0.1


def _model(levels=2, optimizer="adam", **rule):
    keras.utils.set_random_seed(2)
    rule = dict(dict(lambda_f=LAMBDA_F, lambda_t=LAMBDA_T, lambda_r=LAMBDA_R,
                     target_locations=C_T, target_cell_probability=C_R, mc_samples=1), **rule)
    model = tf_pyramid.build_model("mnist_m2", levels=levels, num_classes=4)
    model.compile(optimizer=optimizer, learning_rule=rule)
    return model


def _batch(n=6, side=28, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (n, side, side, 1)).astype("float32"),
            rng.integers(0, 4, n).astype("int32"))


def _location_pass(model, images, labels):
    """One sampled traversal and the loss terms, with gradients w.r.t. the location module."""
    kernel, bias = model.location_module.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        trace = model.traverse(images, policy="sample")
        outputs = model.summarize(trace, images.shape[0])
        terms = model.learning_rule_losses(outputs, labels)
    return trace, outputs, terms, tape, kernel, bias


def test_reinforce_gradient_is_the_score_function_gradient():
    model = _model()
    model.reward_baseline.assign([0.0, -1.3])
    images, labels = _batch()
    trace, outputs, terms, tape, kernel, bias = _location_pass(model, images, labels)
    # Analytic: d/dz [u log s(z) + (1-u) log s(-z)] = u - s(z), so
    # dL/dz = -lambda_f / N * (log p(y|l,x) - b) * (u - p) for every cell of every image.
    log_p_y = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels, outputs["logits"]).numpy()
    advantage = (log_p_y - (-1.3)).astype(np.float64)
    u, p = trace["mask"][0].numpy(), trace["probabilities"][0].numpy()
    d_logits = -LAMBDA_F / len(labels) * advantage[:, None] * (u - p)           # [N, 9]
    features = trace["feature_map"][0].numpy().reshape(len(labels), -1)
    np.testing.assert_allclose(tape.gradient(terms["reinforce"], bias), d_logits.sum(0),
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(
        tape.gradient(terms["reinforce"], kernel).numpy().reshape(-1, 9), features.T @ d_logits,
        rtol=1e-3, atol=1e-6)
    # The value: mean over images of -lambda_f * (log p(y) - b) * log p(l|x).
    log_p_l = np.sum(u * np.log(p) + (1 - u) * np.log(1 - p), axis=1)
    np.testing.assert_allclose(terms["reinforce"], np.mean(-LAMBDA_F * advantage * log_p_l),
                               rtol=1e-4)


def test_target_locations_and_uniformity_terms_by_hand():
    model = _model()
    images, labels = _batch(seed=1)
    trace, outputs, terms, tape, _, bias = _location_pass(model, images, labels)
    p = trace["probabilities"][0].numpy().astype(np.float64)                     # [N, 9]
    n = len(labels)
    mean_pt = p.sum(axis=1).mean()                                               # eq. 14
    np.testing.assert_allclose(terms["target_locations"], LAMBDA_T / 2 * (mean_pt - C_T) ** 2,
                               rtol=1e-5)
    pbar = p.mean(axis=0)                                                        # eq. 15
    np.testing.assert_allclose(terms["uniformity"],
                               LAMBDA_R / 18 * np.sum((pbar - C_R) ** 2), rtol=1e-5)
    # Gradients w.r.t. the location logits' bias: d p / d z = p (1 - p).
    d_rt = LAMBDA_T * (mean_pt - C_T) / n * p * (1 - p)
    np.testing.assert_allclose(tape.gradient(terms["target_locations"], bias), d_rt.sum(0),
                               rtol=1e-4)
    d_rr = LAMBDA_R / 9 * (pbar - C_R)[None, :] / n * p * (1 - p)
    np.testing.assert_allclose(tape.gradient(terms["uniformity"], bias), d_rr.sum(0), rtol=1e-4,
                               atol=1e-9)


def test_terms_route_gradients_to_the_right_modules():
    model = _model(levels=3)
    images, labels = _batch(side=56)
    location = {id(v) for v in model.location_module.trainable_variables}
    _, _, terms, tape, _, _ = _location_pass(model, images, labels)
    for name in ("reinforce", "target_locations", "uniformity", "cross_entropy"):
        for variable in model.trainable_variables:
            grad = tape.gradient(terms[name], variable)
            moved = grad is not None and bool(np.any(grad.numpy()))
            if name == "cross_entropy":
                assert moved != (id(variable) in location), (name, variable.path)
            elif id(variable) not in location:
                assert not moved, (name, variable.path)
        if name != "cross_entropy":
            assert any(np.any(tape.gradient(terms[name], v).numpy())
                       for v in model.location_module.trainable_variables)


def test_train_step_without_location_terms_leaves_the_location_module_alone():
    model = _model(lambda_f=0.0, lambda_t=0.0, lambda_r=0.0, optimizer=keras.optimizers.SGD(0.1))
    images, labels = _batch()
    before = [np.array(v) for v in model.trainable_variables]
    model.train_on_batch(images, labels)
    location = {id(v) for v in model.location_module.trainable_variables}
    for variable, old in zip(model.trainable_variables, before):
        assert np.array_equal(np.asarray(variable), old) == (id(variable) in location)


def test_baseline_moving_average():
    model = _model(levels=3)
    images, labels = _batch(side=56)
    model.reward_baseline.assign([0.5, -1.0, -2.0])
    outputs = model(images, training=True)
    model.update_reward_baseline(outputs, labels)
    log_p = -tf.nn.sparse_softmax_cross_entropy_with_logits(
        np.repeat(labels[:, None], 3, 1), outputs["level_logits"]).numpy().mean(axis=0)
    np.testing.assert_allclose(model.reward_baseline,
                               0.9 * np.array([0.5, -1.0, -2.0]) + 0.1 * log_p, rtol=1e-5)


def test_multi_level_rule_is_the_weighted_sum_of_single_level_rules():
    model = _model(levels=3, target_locations=[1.5, 4.0], level_weights=[0.5, 1.0, 2.0])
    images, labels = _batch(side=56)
    outputs = model(images, training=True)
    combined = model.learning_rule_losses(outputs, labels)
    parts = []
    for depth, weight in enumerate([0.5, 1.0, 2.0]):
        model.learning_rule["level_weights"] = [0.0] * 3
        model.learning_rule["level_weights"][depth] = weight
        parts.append(model.learning_rule_losses(outputs, labels))
    for name in combined:
        np.testing.assert_allclose(combined[name], sum(p[name] for p in parts), rtol=1e-5)
    # Depth 1 has no location module: only cross-entropy.
    assert parts[0]["reinforce"] == 0 and parts[0]["target_locations"] == 0
    # Depth 3 uses c_t^2 = 4.0 on p_t of the 3-level traversal.
    expected = 2.0 * LAMBDA_T / 2 * (np.mean(outputs["expected_locations"][:, 2]) - 4.0) ** 2
    np.testing.assert_allclose(parts[2]["target_locations"], expected, rtol=1e-5)


def test_monte_carlo_samples_repeat_the_batch():
    model = _model(mc_samples=3, optimizer=keras.optimizers.Adam(1e-3))
    images, labels = _batch(n=4)
    logs = model.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"]) and "level_2_accuracy" in logs


@pytest.mark.parametrize("target,depth", [(2.0, 2), (6.0, 3), (40.0, 4)])
def test_consistent_cell_probability(target, depth):
    q = learning_rule.uniform_cell_probability(target, depth)
    assert sum((9 * q) ** j for j in range(1, depth)) == pytest.approx(target, rel=1e-9)


def test_bad_learning_rule_arguments():
    with pytest.raises(ValueError, match="target_locations"):
        _model(levels=3, target_locations=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="level_weights"):
        _model(levels=3, level_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="Unknown learning_rule keys"):
        _model(lambda_x=1.0)


def test_models_without_attention_are_not_repeated_m_times():
    """M copies of an image only differ by their masks: a model with one exit level gets the
    batch once (the accuracy metric counts the examples it saw)."""
    for name, levels, seen in (("mnist_bl1", 2, 4), ("mnist_m2", 1, 4), ("mnist_m2", 2, 8)):
        model = tf_pyramid.build_model(name, levels=levels, num_classes=4)
        model.compile(optimizer="adam", learning_rule={"mc_samples": 2})
        images, labels = _batch(n=4, side=model.input_size)
        model.train_on_batch(images, labels)
        accuracy = [m for m in model.metrics if m.name == "level_1_accuracy"][0]
        assert float(accuracy.count.numpy()) == seen, name
