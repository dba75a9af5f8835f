"""Input pipelines: MNIST variants and ImageNet-style images with the paper's augmentation.

`build_dataset(...)` is the entry point (see builder.py); preprocessing ops are registered by name
(`OPS.names()`); `InputConvention` says how images are prepared for a model (saved with it);
`evaluate_redrawn` averages an evaluation over re-drawn passes (paper: K = 20); `check_split`
refuses, cheaply, a split that is missing or has no labels (before a run needs it). Imports
nothing of tf_pyramid outside this package.
"""
from tf_pyramid.data import image_ops  # registers the ImageNet-style ops
from tf_pyramid.data import mnist  # registers the MNIST ops
from tf_pyramid.data.builder import DATASETS, SPLITS, build_dataset, input_convention
from tf_pyramid.data.dataset_info import DatasetInfo
from tf_pyramid.data.redrawn_passes import PAPER_NUM_PASSES, evaluate_redrawn
from tf_pyramid.data.input_convention import InputConvention
from tf_pyramid.data.registry import OPS, get_op, register_op
from tf_pyramid.data.splits import check_split

__all__ = ["DATASETS", "SPLITS", "OPS", "DatasetInfo", "InputConvention", "PAPER_NUM_PASSES",
           "build_dataset", "check_split", "evaluate_redrawn", "get_op", "image_ops",
           "input_convention", "mnist", "register_op"]
