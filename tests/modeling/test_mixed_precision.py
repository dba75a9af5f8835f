"""Mixed precision on CPU: bfloat16 training follows float32's gradients, float16 is loss-scaled,
and `--dtype_policy` reaches the model through the typed config."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.modeling import PyramidClassifier, attention_policy
from tf_pyramid.runs import run_directory
from tf_pyramid.training.flags import FlagError, resolve_config

FE_SPECS = [["conv", 8], ["pool", 2, 2], ["conv", 16], ["pool", 3, 2], ["conv", 16]]
RULE = {"lambda_f": 1.0, "lambda_t": 1e-2, "lambda_r": 1e-2, "target_locations": 4.0,
        "level_weights": [1.0, 1.0, 1.0]}


def _model(dtype, levels=3):
    return PyramidClassifier(FE_SPECS, base_resolution=14, levels=levels, num_classes=10,
                             channels=1, seed=5, dtype=dtype)


def _data(side, batch=8):
    rng = np.random.default_rng(0)
    return (rng.uniform(-1, 1, (batch, side, side, 1)).astype("float32"),
            rng.integers(0, 10, batch))


def _loss_and_gradients(model, images, labels, masks, monkeypatch):
    """One training forward pass under the learning rule; the Bernoulli masks are recorded
    into `masks` when it is empty, else replayed from it (same masks for both policies)."""
    sample = attention_policy.attention_mask
    replay = iter(list(masks)) if masks else None

    def attention_mask(probabilities, kind, k=None, seed=None):
        if replay is not None:
            return next(replay)
        mask = sample(probabilities, kind, k, seed)
        masks.append(mask)
        return mask

    monkeypatch.setattr(attention_policy, "attention_mask", attention_mask)
    with tf.GradientTape() as tape:
        terms = model.learning_rule_losses(model(images, training=True), labels)
    monkeypatch.setattr(attention_policy, "attention_mask", sample)
    return terms, tape.gradient(terms["loss"], model.trainable_variables)


def test_bfloat16_gradients_are_close_to_float32s(monkeypatch):
    """Same weights, inputs and sampled masks; every loss term and gradient of the learning
    rule (cross-entropy, REINFORCE with lambda_f = 1, R_t, R_r, three levels) compared.

    Tolerance: bfloat16 keeps 8 significant bits (relative rounding 2**-9 per op); the backward
    pass sums such products over every attended patch, most of them for the first conv's kernel
    (measured: relative L2 error 0.10, cosine 0.995 there; <= 0.03 elsewhere). Per variable we
    ask cosine >= 0.98 and relative L2 error <= 0.25, and the float32 loss terms to agree to
    1e-3 relative (they are computed in float32 from bfloat16 features)."""
    images, labels = _data(56)
    reference, mixed = _model("float32"), _model("mixed_bfloat16")
    mixed.set_weights(reference.get_weights())
    for model in (reference, mixed):
        model.compile(learning_rule=RULE)
    masks = []
    terms32, gradients32 = _loss_and_gradients(reference, images, labels, masks, monkeypatch)
    terms16, gradients16 = _loss_and_gradients(mixed, images, labels, masks, monkeypatch)
    assert mixed.feature_extraction.conv0.compute_dtype == "bfloat16"
    for key, value in terms32.items():
        assert terms16[key].dtype == tf.float32
        np.testing.assert_allclose(float(terms16[key]), float(value), rtol=1e-3, err_msg=key)
    errors = []
    for variable, g32, g16 in zip(reference.trainable_variables, gradients32, gradients16):
        a, b = np.asarray(g32).ravel(), np.asarray(g16).ravel()
        assert g16.dtype == tf.float32 and np.all(np.isfinite(b)), variable.path
        cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        error = np.linalg.norm(a - b) / np.linalg.norm(a)
        assert cosine >= 0.98 and error <= 0.25, f"{variable.path}: cosine {cosine}, error {error}"
        errors.append(error)
    assert max(errors) > 0, "the mixed_bfloat16 model computed in float32"


def test_bfloat16_training_steps_keep_losses_finite():
    images, labels = _data(56, batch=4)
    model = _model("mixed_bfloat16")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), learning_rule=RULE)
    history = model.fit(images, labels, batch_size=2, epochs=2, verbose=0)
    for name in ("loss", "cross_entropy", "reinforce", "target_locations", "uniformity"):
        assert np.all(np.isfinite(history.history[name])), (name, history.history[name])
    assert int(model.optimizer.iterations.numpy()) == 4
    assert np.all(np.isfinite(model.reward_baseline.numpy()))
    assert model.reward_baseline.dtype == tf.float32


def test_float16_optimizer_is_loss_scaled_and_a_step_is_finite():
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 1.0)
    assert isinstance(run_directory.make_optimizer(schedule), keras.optimizers.Adam)
    optimizer = run_directory.make_optimizer(schedule, "mixed_float16")
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, keras.optimizers.Adam)
    images, labels = _data(28, batch=4)
    model = _model("mixed_float16", levels=2)
    model.compile(optimizer=optimizer, learning_rule=dict(RULE, level_weights=[1.0, 1.0]))
    assert model.optimizer is optimizer  # not wrapped twice
    before = [np.array(v) for v in model.trainable_variables]
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert int(optimizer.iterations.numpy()) == 1  # the step was applied, not skipped
    for old, variable in zip(before, model.trainable_variables):
        assert variable.dtype == "float32" and np.all(np.isfinite(np.asarray(variable)))
        assert not np.array_equal(old, np.asarray(variable)), variable.path


def test_float16_step_with_overflowing_gradients_is_skipped_and_the_scale_halved():
    """`train_step` differentiates the scaled loss: a scale of 2**40 overflows the float16
    gradients, so the LossScaleOptimizer must skip the update and halve the scale."""
    images, labels = _data(28, batch=4)
    model = _model("mixed_float16", levels=2)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2),
                                                    initial_scale=2.0 ** 40)
    model.compile(optimizer=optimizer, learning_rule=dict(RULE, level_weights=[1.0, 1.0]))
    before = [np.array(v) for v in model.trainable_variables]
    model.train_step((tf.constant(images), tf.constant(labels)))
    assert float(optimizer.dynamic_scale.numpy()) == 2.0 ** 39
    assert int(optimizer.iterations.numpy()) == 0
    for old, variable in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(np.asarray(variable), old, err_msg=variable.path)


def test_dtype_policy_setting(tmp_path):
    """One typed field: default float32 (also for a config.json written before it existed),
    reaches the model built from a run's config, and an unknown value names the choices."""
    config = tiny_config(tmp_path)
    assert config.model.dtype_policy == "float32"
    assert config.flag_values()["dtype_policy"] == "float32"
    old = config.to_dict()
    del old["model"]["dtype_policy"]
    assert ExperimentConfig.from_dict(old).model.dtype_policy == "float32"
    config.model.dtype_policy = "mixed_bfloat16"
    assert ExperimentConfig.from_dict(config.to_dict()).model.dtype_policy == "mixed_bfloat16"
    resolved = resolve_config(config)
    model = run_directory.build_from_config(resolved, 10, {
        "input_size": 28, "channels": 1, "value_range": [-1, 1], "resize_method": "area"})
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.feature_extraction.conv0.compute_dtype == "bfloat16"
    assert model.preprocessor.compute_dtype == "float32"
    config.model.dtype_policy = "float64"
    with pytest.raises(FlagError, match="Unknown --dtype_policy=float64; use one of float32, "
                                        "mixed_bfloat16, mixed_float16"):
        resolve_config(config)
    with pytest.raises(ValueError, match="Unknown dtype policy 'bfloat16'"):
        _model("bfloat16")
