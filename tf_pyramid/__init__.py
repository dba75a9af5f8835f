"""tf_pyramid: image classification by top-down image-pyramid traversal with hard attention."""
from tf_pyramid.modeling import MODEL_NAMES
from tf_pyramid.modeling import BaselineClassifier
from tf_pyramid.modeling import PyramidClassifier
from tf_pyramid.modeling import build_model
from tf_pyramid.modeling import layers

__version__ = "0.1.0"
__all__ = ["MODEL_NAMES", "BaselineClassifier", "PyramidClassifier", "build_model", "layers"]
