"""Training: the trainer loop, its flags, distribution strategies, the learning-rate schedule and
per-level evaluation (see docs/training.md)."""
from tf_pyramid.training.evaluation import Evaluator
from tf_pyramid.training.flags import FlagError, default_config, define_flags, resolve_config
from tf_pyramid.training.schedule import StepDecay
from tf_pyramid.training.trainer import Trainer, train

__all__ = ["Evaluator", "FlagError", "StepDecay", "Trainer", "default_config", "define_flags",
           "resolve_config", "train"]
