"""tf_pyramid: image classification by top-down image-pyramid traversal with hard attention.

Importing the package registers every class a saved model can contain (models, layers, the
learning-rate schedule), so `keras.saving.load_model` reads a run's `model.keras` after
`import tf_pyramid`.
"""
from tf_pyramid.modeling import MODEL_NAMES
from tf_pyramid.modeling import AnytimeClassifier
from tf_pyramid.modeling import BaselineClassifier
from tf_pyramid.modeling import ImagePreprocessor
from tf_pyramid.modeling import PyramidClassifier
from tf_pyramid.modeling import StepDecay
from tf_pyramid.modeling import build_model
from tf_pyramid.modeling import layers

__version__ = "0.3.0"
__all__ = ["MODEL_NAMES", "AnytimeClassifier", "BaselineClassifier", "ImagePreprocessor",
           "PyramidClassifier", "StepDecay", "build_model", "layers"]
