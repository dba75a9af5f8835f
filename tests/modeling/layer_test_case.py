"""One set of checks for every layer and model of `tf_pyramid.modeling` (the idea of keras-hub's
`TestCase.run_layer_test` / `run_model_saving_test`, written for this package's promises):

* a symbolic call on `keras.KerasTensor`s gives the shapes and dtypes of an eager call;
* `get_config` / `from_config` and `serialize_keras_object` round trips keep the config, and
  with the same weights the copy computes the same outputs;
* under each dtype policy of `POLICIES`: outputs have the promised dtype (the compute dtype,
  or float32 where a layer promises float32 under any policy), every variable is float32, every
  sublayer runs under the same policy, and every trainable variable gets a finite gradient;
* models: one `fit` step with the learning rule (finite loss, weights move) and a `.keras`
  save / load round trip with equal outputs.
"""
import json
import os

import keras
import numpy as np
import tensorflow as tf

from tf_pyramid.modeling import ImagePreprocessor

POLICIES = ("float32", "mixed_bfloat16")


def _flat(structure):
    return keras.tree.flatten(structure)


def _symbolic(inputs):
    return keras.tree.map_structure(
        lambda x: keras.KerasTensor(x.shape, dtype=keras.backend.standardize_dtype(x.dtype)),
        inputs)


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


def expected_dtype(policy, float32_outputs):
    """The dtype of a layer's float outputs under `policy`."""
    return "float32" if float32_outputs else keras.DTypePolicy(policy).compute_dtype


def sublayers(layer):
    """Every layer held (directly or below) in `layer`'s attributes, `layer` excluded."""
    found, stack, seen = [], [layer], {id(layer)}
    while stack:
        for value in vars(stack.pop()).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if isinstance(item, keras.layers.Layer) and id(item) not in seen:
                    seen.add(id(item))
                    found.append(item)
                    stack.append(item)
    return found


def assert_policy_applied(layer, policy):
    """Variables float32; every sublayer (the float32 preprocessor aside) under `policy`."""
    for variable in layer.weights:
        assert _dtype(variable) == "float32", (
            f"{variable.path} is {_dtype(variable)}; variables stay float32 under {policy}")
    for sublayer in sublayers(layer):
        wanted = "float32" if isinstance(sublayer, ImagePreprocessor) else policy
        assert sublayer.dtype_policy.name == wanted, (
            f"{layer.name}/{sublayer.name} runs under {sublayer.dtype_policy.name}; expected "
            f"{wanted} (the policy given to {type(layer).__name__})")


def assert_outputs(outputs, shapes, dtype, where):
    """`outputs` (a structure of tensors) have `shapes` and float ones have `dtype`."""
    got_shapes = [tuple(x.shape) for x in _flat(outputs)]
    assert got_shapes == [tuple(s) for s in _flat_shapes(shapes)], (
        f"{where}: output shapes {got_shapes}, expected {shapes}")
    for x in _flat(outputs):
        if "float" in _dtype(x):
            assert _dtype(x) == dtype, f"{where}: a float output is {_dtype(x)}, expected {dtype}"


def _flat_shapes(shapes):
    if shapes and isinstance(shapes[0], (tuple, list)):
        return list(shapes)
    return [shapes]


def assert_config_round_trip(layer, inputs, call=None):
    """Config survives JSON both ways (`from_config`, `deserialize_keras_object`); the copy with
    the original's weights computes the same outputs."""
    call = call or (lambda lay, x: lay(x))
    expected = call(layer, inputs)
    config = layer.get_config()
    config_json = json.dumps(config, sort_keys=True)
    clones = [type(layer).from_config(json.loads(config_json)),
              keras.saving.deserialize_keras_object(
                  json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))]
    for clone in clones:
        assert type(clone) is type(layer)
        assert json.dumps(clone.get_config(), sort_keys=True) == config_json
        call(clone, inputs)  # builds it
        clone.set_weights(layer.get_weights())
        for got, want in zip(_flat(call(clone, inputs)), _flat(expected)):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def assert_finite_gradients(layer, inputs):
    """Every trainable variable gets a finite gradient of the sum of the float outputs."""
    with tf.GradientTape() as tape:
        total = tf.add_n([tf.reduce_sum(tf.cast(x, tf.float32)) for x in _flat(layer(inputs))
                          if "float" in _dtype(x)])
    gradients = tape.gradient(total, layer.trainable_variables)
    for variable, gradient in zip(layer.trainable_variables, gradients):
        assert gradient is not None, f"{variable.path} gets no gradient"
        assert np.all(np.isfinite(np.asarray(gradient))), f"{variable.path}: non-finite gradient"


def run_layer_test(cls, init_kwargs, inputs, expected_output_shape, float32_outputs=False):
    """All checks of the module docstring for a layer `cls(**init_kwargs)` called on `inputs`
    (an array or a list of arrays). `float32_outputs`: the layer promises float32 outputs under
    any policy (else its outputs are in the compute dtype)."""
    for policy in POLICIES:
        dtype = expected_dtype(policy, float32_outputs)
        layer = cls(**init_kwargs, dtype=policy)
        symbolic = layer(_symbolic(inputs))
        assert_outputs(symbolic, expected_output_shape, dtype, f"{cls.__name__} symbolic, {policy}")
        assert_outputs(layer(inputs), expected_output_shape, dtype,
                       f"{cls.__name__} eager, {policy}")
        assert_policy_applied(layer, policy)
        if layer.trainable_variables:
            assert_finite_gradients(layer, inputs)
        assert_config_round_trip(cls(**init_kwargs, dtype=policy), inputs)


def run_model_test(build, images, labels, learning_rule, tmp_path):
    """All checks of the module docstring for a model `build(dtype=policy)` (an
    `AnytimeClassifier`) on model-ready `images` and integer `labels`."""
    for policy in POLICIES:
        model = build(dtype=policy)
        batch = images.shape[0]
        eager = model(images)
        symbolic = model(keras.KerasTensor((None, *images.shape[1:]), dtype="float32"))
        assert sorted(symbolic) == sorted(eager)
        for key, value in eager.items():
            want = "float32" if "float" in _dtype(value) else _dtype(value)
            assert _dtype(value) == want, f"{key} is {_dtype(value)} under {policy}"
            assert _dtype(symbolic[key]) == _dtype(value), f"{key}: symbolic dtype differs"
            assert tuple(symbolic[key].shape)[1:] == tuple(value.shape)[1:], (
                f"{key}: symbolic shape {symbolic[key].shape}, eager {value.shape}")
            assert value.shape[0] == batch
        assert_policy_applied(model, policy)

        model.compile(optimizer=keras.optimizers.Adam(1e-3), learning_rule=learning_rule)
        before = [np.array(v) for v in model.trainable_variables]
        history = model.fit(images, labels, batch_size=batch, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1]), f"loss under {policy}: {history.history}"
        moved = [not np.array_equal(b, np.asarray(v))
                 for b, v in zip(before, model.trainable_variables)]
        assert all(moved), f"{sum(not m for m in moved)} variable(s) did not move under {policy}"
        assert_policy_applied(model, policy)

        path = os.path.join(tmp_path, f"{model.name}_{policy}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        assert type(loaded) is type(model) and loaded.dtype_policy.name == policy
        assert loaded.get_config() == model.get_config()
        assert_policy_applied(loaded, policy)
        reloaded = loaded(images)
        for key, value in model(images).items():
            np.testing.assert_array_equal(np.asarray(reloaded[key]), np.asarray(value),
                                          err_msg=f"{key} after the .keras round trip, {policy}")
        assert_config_round_trip(model, images,
                                 call=lambda m, x: m(x)["level_logits"])
