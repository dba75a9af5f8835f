"""A training run's directory: its config, its model (built from the config, loaded from
model.keras or a checkpoint), weight copies between runs (`--init_from`), and what keeps a run's
work safe: checkpoints restored with fallback (`checkpoints`), atomic files (`files`), the run lock
(`lock`) and the resume-time config check (`run_config`). Sits below `training` and `serving`,
which both use it and never import each other."""
from tf_pyramid.runs.run_directory import (build_from_config, check_same_inputs, checkpoint_for,
                                           copy_module_weights,
                                           load_run_model,
                                           read_class_names, read_config, write_class_names)

__all__ = ["build_from_config", "check_same_inputs", "checkpoint_for", "copy_module_weights",
           "load_run_model", "read_class_names", "read_config",
           "write_class_names"]
