"""Serving: SavedModel export for TF Serving with per-level early exit, and its preprocessing.

`export_saved_model(model, export_base, version=None)` writes `export_base/<version>/` with the
signatures described in `signatures` and docs/serving.md.
"""
from tf_pyramid.serving.anytime import anytime
from tf_pyramid.serving.export_lib import export_saved_model, load_model, next_version
from tf_pyramid.serving.preprocessing import (decode_images, prepare_images, resize_method_for,
                                              value_range_for)
from tf_pyramid.serving.signatures import ServingFunctions, signature_names

__all__ = ["anytime", "export_saved_model", "load_model", "next_version", "decode_images",
           "prepare_images", "resize_method_for", "value_range_for", "ServingFunctions",
           "signature_names"]
