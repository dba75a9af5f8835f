"""Serving: SavedModel export for TF Serving with per-level early exit, and its preprocessing.

`export_saved_model(model, export_base, version=None)` writes `export_base/<version>/` with the
signatures described in `signatures` and docs/serving.md. Uses `runs`, `data` and `modeling`;
never `training`.
"""
from tf_pyramid.serving.export_lib import (export_saved_model, load_model, next_version,
                                          read_class_names_file, run_class_names)
from tf_pyramid.serving.preprocessing import decode_images, prepare_images
from tf_pyramid.serving.signatures import ServingFunctions, signature_names

__all__ = ["export_saved_model", "load_model", "next_version", "read_class_names_file",
           "run_class_names",
           "decode_images", "prepare_images", "ServingFunctions", "signature_names"]
