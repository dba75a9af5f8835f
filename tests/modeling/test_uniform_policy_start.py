"""Where the location module starts a training run: every cell with probability c_r.

The default initialisation (Glorot kernel, zero bias) gives every cell p ~ 0.5, about 25 attended
cells for a 3-level MNIST model asked for 6. At the paper's settings (Adam, lr 0.01) R_t's large
error and Adam's normalised steps then drive p to ~0 within a few dozen steps; on the full MNIST
data one such run never attended again. The uniform start holds the count near c_t from step 1.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tf_pyramid.data import build_dataset
from tf_pyramid.modeling import learning_rule as rules

# The MNIST pyramid rule (flags/common/mnist_pyramid.cfg) at 56 px with c_t 6.
MNIST_RULE = dict(lambda_f=1e-6, lambda_t=1e-7, lambda_r=1e-7, mc_samples=2,
                  target_locations=6.0)


def test_uniform_policy_gives_the_probability_for_every_image_and_still_learns():
    model = tf_pyramid.build_model("mnist_m1", levels=3, seed=0)
    location = model.location_module
    location.initialize_uniform_policy(0.3)
    features = tf.random.stateless_uniform([5, *model.feature_map_shape], seed=[1, 2],
                                           maxval=3.0)
    with tf.GradientTape() as tape:
        probabilities = location(features)
        total = tf.reduce_sum(probabilities[:, 4])
    np.testing.assert_allclose(probabilities.numpy(), 0.3, rtol=1e-6)
    kernel_gradient = tape.gradient(total, location.conv.kernel)
    # d sum_i sigmoid(b + F_i . w_4) / d w_4 = sum_i q (1 - q) F_i at w = 0; other cells 0.
    expected = 0.3 * 0.7 * tf.reduce_sum(features, axis=0)
    np.testing.assert_allclose(kernel_gradient.numpy()[..., 4], expected.numpy(), rtol=1e-5)
    assert np.all(kernel_gradient.numpy()[..., :4] == 0.0)


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5])
def test_uniform_policy_refuses_probabilities_outside_0_1(q):
    location = tf_pyramid.build_model("mnist_m1", levels=2, seed=0).location_module
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        location.initialize_uniform_policy(q)


def test_initial_cell_probability_is_c_r_of_the_full_depth():
    rule = rules.resolve_learning_rule(MNIST_RULE, 3)
    q = rules.initial_cell_probability(rule, 3)
    assert 9 * q + 81 * q * q == pytest.approx(6.0, rel=1e-9)  # the expected count is c_t
    assert rules.initial_cell_probability(rules.resolve_learning_rule(
        dict(MNIST_RULE, target_locations=2.0), 2), 2) == pytest.approx(2 / 9)
    # Per-depth targets (multi-level rule): the deepest depth's.
    multi = rules.resolve_learning_rule(dict(MNIST_RULE, target_locations=[1.5, 6.0],
                                             level_weights=[0, 1, 1]), 3)
    assert rules.initial_cell_probability(multi, 3) == pytest.approx(q)
    # A configured c_r wins, kept inside [0.01, 0.99]; no target and one level: no start.
    assert rules.initial_cell_probability(
        rules.resolve_learning_rule(dict(MNIST_RULE, target_cell_probability=0.4), 3), 3) == 0.4
    assert rules.initial_cell_probability(
        rules.resolve_learning_rule(dict(MNIST_RULE, target_cell_probability=1.0), 3), 3) == 0.99
    assert rules.initial_cell_probability(
        rules.resolve_learning_rule(dict(MNIST_RULE, target_locations=0.0), 3), 3) is None
    assert rules.initial_cell_probability(rules.resolve_learning_rule(MNIST_RULE, 1), 1) is None


def _attended_cells_per_step(uniform_start, steps):
    """Per-step mean attended cells of M1 at 56 px (c_t 6) at the paper's optimiser settings on
    the bundled digits (standardised), seed 1."""
    keras.utils.set_random_seed(1)
    model = tf_pyramid.build_model("mnist_m1", levels=3, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
                  learning_rule=MNIST_RULE)
    if uniform_start:
        model.location_module.initialize_uniform_policy(
            rules.initial_cell_probability(model.learning_rule, 3))
    dataset, _ = build_dataset("mnist", "train", resolution=56, batch_size=128, training=True,
                               source="bundled", seed=1, drop_remainder=True)
    cells = []
    for images, labels in dataset.repeat().take(steps):
        model.reset_metrics()
        cells.append(float(model.train_on_batch(images, labels, return_dict=True)
                           ["num_locations"]))
    return np.array(cells)


def test_training_from_the_uniform_start_keeps_attending_near_c_t():
    uniform = _attended_cells_per_step(True, 25)
    default = _attended_cells_per_step(False, 25)
    assert 4.5 <= uniform[0] <= 7.5, uniform[:3]  # starts at c_t = 6
    assert uniform.min() >= 3.0 and uniform[5:].mean() == pytest.approx(6.0, abs=1.5), uniform
    # What the uniform start prevents: from ~25 cells, down to under 2 within the 25 steps (0.44).
    assert default[0] > 15.0 and default.min() < 2.0, default


def test_a_fresh_training_run_starts_uniform(tmp_path):
    from tests.helpers import tiny_config  # noqa: PLC0415
    from tf_pyramid.training import Trainer  # noqa: PLC0415
    trainer = Trainer(tiny_config(tmp_path / "fresh")).setup()  # M1, 2 levels, c_t 2
    try:
        location = trainer.model.location_module
        assert trainer.uniform_start == pytest.approx(2 / 9)
        assert np.all(location.conv.kernel.numpy() == 0.0)
        np.testing.assert_allclose(location.conv.bias.numpy(), np.log((2 / 9) / (7 / 9)),
                                   rtol=1e-6)
    finally:
        trainer.close()
