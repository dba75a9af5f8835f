"""Pictures of what pyramid models attend, and cost/accuracy trade-off plots (Agg backend)."""
from tf_pyramid.visualization.attention import ImageView, attention_views
from tf_pyramid.visualization.figures import (attention_figure, figure_shape, figure_to_array,
                                              save_figure)

__all__ = ["ImageView", "attention_views", "attention_figure", "figure_shape", "figure_to_array",
           "save_figure"]
