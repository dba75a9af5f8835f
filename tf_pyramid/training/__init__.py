"""Training: the trainer loop and its actions, its flags, distribution strategies and per-level
evaluation (see docs/training.md). Uses `runs`, `data` and `modeling`; never `serving`."""
from tf_pyramid.training.evaluation import Evaluator
from tf_pyramid.training.flags import FlagError, default_config, define_flags, resolve_config
from tf_pyramid.training.trainer import Trainer, train

__all__ = ["Evaluator", "FlagError", "Trainer", "default_config", "define_flags",
           "resolve_config", "train"]
