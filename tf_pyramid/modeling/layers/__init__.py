"""One Keras layer per module of the pyramid model (paper Sec. 3, A.2)."""
from tf_pyramid.modeling.layers.aggregation_module import AggregationModule
from tf_pyramid.modeling.layers.classification_module import ClassificationModule
from tf_pyramid.modeling.layers.feature_extraction import FeatureExtraction
from tf_pyramid.modeling.layers.location_module import LocationModule
from tf_pyramid.modeling.layers.merging_module import MergingModule

__all__ = ["AggregationModule", "ClassificationModule", "FeatureExtraction", "LocationModule",
           "MergingModule"]
