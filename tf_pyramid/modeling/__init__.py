"""Modeling: the modules (layers), the pyramid model, the baselines and the paper's architectures."""
from tf_pyramid.modeling.architectures import (MODEL_NAMES, build_model, exit_levels,
                                                levels_for_resolution)
from tf_pyramid.modeling.baseline_classifier import BaselineClassifier
from tf_pyramid.modeling.pyramid_classifier import PyramidClassifier

__all__ = ["MODEL_NAMES", "BaselineClassifier", "PyramidClassifier", "build_model",
           "exit_levels", "levels_for_resolution"]
