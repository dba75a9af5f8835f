"""Training: the trainer loop and its actions, its flags and distribution strategies (see
docs/training.md). Uses `runs`, `data`, `modeling` and the `evaluators`; never `serving`."""
from tf_pyramid.training.flags import FlagError, default_config, define_flags, resolve_config
from tf_pyramid.training.trainer import Trainer, train

__all__ = ["FlagError", "Trainer", "default_config", "define_flags", "resolve_config", "train"]
