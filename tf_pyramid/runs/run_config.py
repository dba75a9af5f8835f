"""A resumed run's settings against the saved `config.json`, and the history of its configs.

A run resumes from its checkpoint whatever flags the rerun is given, so the trainer compares
them with the saved config first. A change that makes the checkpoint meaningless for this run
(another architecture, depth, input size or data) is refused with a message naming the flag;
any other change (epochs, learning rate, batch size, the learning-rule weights, ...) is logged,
and the config it replaces is kept as `config_history/NNN-until-step-S.json` before the new
`config.json` is written.
"""
import dataclasses
import json
import os

from absl import logging

from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.runs import files
from tf_pyramid.runs.run_directory import CONFIG_FILE, read_config
HISTORY_DIR = "config_history"

# Flags whose change makes the checkpoint meaningless for this run, and why.
INCOMPATIBLE = {
    "model": "the checkpoint holds another architecture's weights",
    "levels": "the depth fixes the model's per-level variables and its input size",
    "resolution": "the input side fixes the number of levels the model was trained for",
    "dataset": "the weights were learnt for other images and classes",
    "variant": "the weights were learnt for another MNIST variant (another input distribution)",
    "dtype_policy": "the checkpoint's optimizer state is laid out for its own policy (mixed_float16 "
                    "keeps it inside a loss-scale wrapper) and the run's numerics would change "
                    "mid-run; start a new run with --init_from instead",
    "mnist_input": "the weights were learnt on MNIST inputs of another value range",
}
# Facts of the data (config.json's `run` section) that must not change either.
INCOMPATIBLE_RUN = {
    "num_classes": "the classifier has one output per class",
    "channels": "the first convolution has one input channel per image channel",
    "input_convention": "the weights were learnt on inputs prepared another way (value range, "
                        "size or resize)",
}
# Settings of one process, not of the run: never compared.
PER_PROCESS = ("model_dir", "stages_dir", "stop_after_steps", "data_service")


class IncompatibleConfigError(ValueError):
    """A resumed run was given settings its checkpoint cannot continue with."""


def _plain(value):
    """JSON-comparable form (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(value, default=files.json_default))


def compare(saved, config, run_info=None):
    """`(incompatible, changed)`: lists of `(flag, saved value, new value[, why])`.

    `saved` and `config` are `ExperimentConfig`s, `run_info` the new data facts (`num_classes`,
    `channels`, `input_convention`) to check against the saved `run` facts.
    """
    old, new = _plain(saved.flag_values()), _plain(config.flag_values())
    incompatible, changed = [], []
    for key in new:
        if key in PER_PROCESS or old[key] == new[key]:
            continue
        if key in INCOMPATIBLE:
            incompatible.append((key, old[key], new[key], INCOMPATIBLE[key]))
        else:
            changed.append((key, old[key], new[key]))
    saved_run = dataclasses.asdict(saved.run) if saved.run else {}
    for key, why in INCOMPATIBLE_RUN.items():
        value = _plain((run_info or {}).get(key))
        if value is not None and saved_run.get(key) not in (None, value):
            incompatible.append((f"run.{key}", saved_run[key], value, why))
    return incompatible, changed


def check_resume(model_dir, config, run_info=None):
    """Before resuming from a checkpoint: raises `IncompatibleConfigError` for an incompatible
    change, logs the compatible ones and returns them (`[(key, saved, new)]`)."""
    saved = read_config(model_dir)
    if saved is None:
        logging.warning("%s has checkpoints but no %s: the settings of the resumed run cannot "
                        "be checked.", model_dir, CONFIG_FILE)
        return []
    incompatible, changed = compare(saved, config, run_info)
    if incompatible:
        lines = "\n".join(f"  --{key}: saved {old!r}, now {new!r} ({why})"
                          for key, old, new, why in incompatible)
        raise IncompatibleConfigError(
            f"Cannot resume {model_dir} with these settings; its checkpoints were trained "
            f"with others:\n{lines}\nRerun with the saved settings (see {CONFIG_FILE}), or train "
            "in another --model_dir (--init_from=THIS_DIR starts from this run's weights).")
    if changed:
        logging.info("Resuming with changed settings: %s.", ", ".join(
            f"{key} {old!r} -> {new!r}" for key, old, new in changed))
    return changed


def write_config(model_dir, config, step=0):
    """Writes config.json atomically; a saved one that differs in any setting (per-process
    flags aside) is first kept as `config_history/NNN-until-step-STEP.json`. Returns that
    history file, or None."""
    path = os.path.join(model_dir, CONFIG_FILE)
    kept = None
    try:
        saved = read_config(model_dir)
    except files.DamagedFileError as error:
        logging.warning("Replacing a damaged %s: %s", path, error)
        saved = None
    if saved is not None:
        incompatible, changed = compare(saved, config)
        if incompatible or changed:
            history = os.path.join(model_dir, HISTORY_DIR)
            files.makedirs(history)
            number = 1 + len([n for n in files.listdir(history) if n.endswith(".json")])
            kept = os.path.join(history, f"{number:03d}-until-step-{int(step)}.json")
            files.write_json(kept, saved.to_dict())
            logging.info("Kept the previous %s as %s.", CONFIG_FILE, kept)
    files.write_json(path, config.to_dict())
    return kept


def history(model_dir):
    """The kept configs of `model_dir`, oldest first, then the current one."""
    folder = os.path.join(model_dir, HISTORY_DIR)
    names = sorted(n for n in files.listdir(folder) if n.endswith(".json")) \
        if files.isdir(folder) else []
    configs = [ExperimentConfig.from_dict(files.read_json(os.path.join(folder, n)))
               for n in names]
    current = read_config(model_dir)
    return configs + ([current] if current is not None else [])
