"""Every module layer: shapes and initialisation (symbolic calls, serialization round trips and
dtype policies: the shared harness, test_layer_harness.py)."""
import keras
import numpy as np
import pytest

from tf_pyramid.modeling import layers

LAYER_CASES = [
    (layers.FeatureExtraction,
     {"layer_specs": [["conv", 8], ["pool", 2, 2], ["conv", 16], ["pool", 3, 2], ["conv", 16]]},
     (2, 14, 14, 1)),
    (layers.LocationModule, {"num_cells": 9}, (2, 3, 3, 16)),
    (layers.AggregationModule, {"features": 16}, (2, 3, 3, 16)),
    (layers.MergingModule, {"features": 16}, ((2, 16), (2, 16))),
    (layers.ClassificationModule, {"num_classes": 10}, (2, 16)),
]


def _inputs(shape, rng):
    if isinstance(shape[0], tuple):
        return [rng.normal(size=s).astype("float32") for s in shape]
    return rng.normal(size=shape).astype("float32")


@pytest.mark.parametrize("cls,kwargs,shape", LAYER_CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_xavier_weights_and_zero_biases(cls, kwargs, shape):
    layer = cls(**kwargs)
    layer(_inputs(shape, np.random.default_rng(0)))
    for variable in layer.trainable_variables:
        values = np.asarray(variable)
        if "bias" in variable.path:
            assert not values.any()
        else:
            receptive = int(np.prod(values.shape[:-2])) if values.ndim == 4 else 1
            fan_in, fan_out = values.shape[-2] * receptive, values.shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            assert np.abs(values).max() <= limit
            assert np.abs(values).max() > 0.8 * limit  # uniform over the full Glorot range


def test_module_shapes_and_activations():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    fe = layers.FeatureExtraction([["conv", 32], ["pool", 2, 2], ["conv", 64]])
    feature_map, vector = fe(rng.normal(size=(4, 14, 14, 1)).astype("float32"))
    assert feature_map.shape == (4, 7, 7, 64) and vector.shape == (4, 64)
    np.testing.assert_allclose(vector, np.asarray(feature_map).mean(axis=(1, 2)), rtol=1e-5)
    assert fe.compute_output_shape((None, 14, 14, 1)) == ((None, 7, 7, 64), (None, 64))
    probabilities = layers.LocationModule()(feature_map)
    assert probabilities.shape == (4, 9)
    assert np.all((np.asarray(probabilities) > 0) & (np.asarray(probabilities) < 1))
    # Aggregation: one 3x3 VALID conv over the grid equals a dense layer on the flattened grid.
    aggregation = layers.AggregationModule(64)
    grid = rng.normal(size=(4, 3, 3, 64)).astype("float32")
    aggregation(grid)
    weights = aggregation.get_weights()
    flat = grid.reshape(4, -1) @ weights[0].reshape(-1, 64) + weights[1]
    np.testing.assert_allclose(aggregation(grid), np.where(flat > 0, flat, 0.2 * flat),
                               rtol=1e-4, atol=1e-4)


def test_bad_layer_specs():
    with pytest.raises(ValueError, match="conv', filters"):
        layers.FeatureExtraction([["conv"]])
    with pytest.raises(ValueError, match="at least one conv"):
        layers.FeatureExtraction([["pool", 2, 2]])
