"""Modeling: the modules (layers), the pyramid model, the baselines, the paper's architectures,
the learning rule and the learning-rate schedule. Imports nothing else of tf_pyramid."""
from tf_pyramid.modeling.anytime_classifier import ANYTIME_KEYS, OUTPUT_KEYS, AnytimeClassifier
from tf_pyramid.modeling.architectures import (MODEL_NAMES, build_model, is_pyramid,
                                                levels_for_resolution)
from tf_pyramid.modeling.baseline_classifier import BaselineClassifier
from tf_pyramid.modeling.image_preprocessor import ImagePreprocessor
from tf_pyramid.modeling.pyramid_classifier import PyramidClassifier
from tf_pyramid.modeling.step_decay import StepDecay

__all__ = ["ANYTIME_KEYS", "OUTPUT_KEYS", "AnytimeClassifier", "MODEL_NAMES",
           "BaselineClassifier", "ImagePreprocessor", "PyramidClassifier", "StepDecay",
           "build_model", "is_pyramid", "levels_for_resolution"]
