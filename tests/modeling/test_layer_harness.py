"""The shared harness (`layer_test_case`) applied to every module layer, the preprocessor and
both model classes, under the float32 and mixed_bfloat16 dtype policies."""
import numpy as np
import pytest

from tests.modeling import layer_test_case
from tf_pyramid.modeling import BaselineClassifier, ImagePreprocessor, PyramidClassifier, layers

FE_SPECS = [["conv", 8], ["pool", 2, 2], ["conv", 16], ["pool", 3, 2], ["conv", 16]]

# (class, constructor arguments, input shapes, output shapes, float32 outputs under any policy)
LAYER_CASES = [
    (layers.FeatureExtraction, {"layer_specs": FE_SPECS}, (2, 14, 14, 1),
     [(2, 3, 3, 16), (2, 16)], False),
    (layers.LocationModule, {"num_cells": 9}, (2, 3, 3, 16), (2, 9), True),
    (layers.AggregationModule, {"features": 16}, (2, 3, 3, 16), (2, 16), False),
    (layers.MergingModule, {"features": 16}, [(2, 16), (2, 16)], (2, 16), False),
    (layers.ClassificationModule, {"num_classes": 10}, (2, 16), (2, 10), True),
]


def _inputs(shape, rng):
    if isinstance(shape, list):
        return [rng.normal(size=s).astype("float32") for s in shape]
    return rng.normal(size=shape).astype("float32")


def test_every_module_layer_is_in_the_harness():
    covered = {case[0].__name__ for case in LAYER_CASES}
    assert covered == set(layers.__all__), f"not in LAYER_CASES: {set(layers.__all__) - covered}"


@pytest.mark.parametrize("cls,kwargs,shape,output_shape,float32_outputs", LAYER_CASES,
                         ids=[case[0].__name__ for case in LAYER_CASES])
def test_module_layer(cls, kwargs, shape, output_shape, float32_outputs):
    layer_test_case.run_layer_test(cls, kwargs, _inputs(shape, np.random.default_rng(0)),
                                   output_shape, float32_outputs=float32_outputs)


@pytest.mark.parametrize("pixels", ["uint8", "float32"])
def test_image_preprocessor(pixels):
    """Raw pixels of another size in, float32 model inputs out, whatever the policy."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 40, 36, 3)).astype(pixels)
    kwargs = {"input_size": 28, "channels": 1, "value_range": [-1.0, 1.0],
              "resize_method": "area"}
    layer_test_case.run_layer_test(ImagePreprocessor, kwargs, images, (2, 28, 28, 1),
                                   float32_outputs=True)


CONVENTION = {"input_size": 28, "channels": 1, "value_range": [-1.0, 1.0],
              "resize_method": "area"}


def _batch(side):
    rng = np.random.default_rng(1)
    return (rng.uniform(-1, 1, size=(4, side, side, 1)).astype("float32"),
            rng.integers(0, 10, size=(4,)))


def test_pyramid_classifier(tmp_path):
    images, labels = _batch(28)

    def build(dtype):
        return PyramidClassifier(FE_SPECS, base_resolution=14, levels=2, num_classes=10,
                                 channels=1, seed=5, input_convention=CONVENTION, dtype=dtype)

    layer_test_case.run_model_test(
        build, images, labels, {"lambda_f": 1e-2, "lambda_t": 1e-2, "lambda_r": 1e-2,
                                "target_locations": 2.0, "mc_samples": 2}, tmp_path)


def test_baseline_classifier(tmp_path):
    images, labels = _batch(28)

    def build(dtype):
        return BaselineClassifier(FE_SPECS, input_size=28, num_classes=10, channels=1,
                                  input_convention=CONVENTION, dtype=dtype)

    layer_test_case.run_model_test(build, images, labels, None, tmp_path)
