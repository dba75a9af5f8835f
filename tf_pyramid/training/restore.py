"""Building a run's model from its config, loading finished or checkpointed runs, and copying
module weights between models of different depth (gradual learning, paper eq. 5)."""
import os

import numpy as np
import tensorflow as tf

from tf_pyramid.modeling import BaselineClassifier, PyramidClassifier, build_model
from tf_pyramid.runs import checkpoints, files

PYRAMID_MODULES = ("feature_extraction", "location_module", "aggregation_module",
                   "merging_module", "classification_module")
BASELINE_MODULES = ("feature_extraction", "hidden", "classification_module")


def learning_rule_from_config(config):
    """`build_model(learning_rule=...)` from resolved trainer flags."""
    return {"lambda_f": config["lambda_f"], "lambda_t": config["lambda_t"],
            "lambda_r": config["lambda_r"],
            "target_locations": list(config["c_t"]) or None,
            "target_cell_probability": config["c_r"],
            "mc_samples": config["mc_samples"],
            "level_weights": list(config["level_weights"]) or None,
            "baseline_decay": config["baseline_decay"]}


def build_from_config(config, num_classes, channels):
    """The run's model (pyramid or baseline), untrained."""
    from tf_pyramid.training.flags import is_pyramid  # noqa: PLC0415
    name, levels = config["model"], config["levels"]
    if is_pyramid(name):
        return build_model(name, levels=levels, num_classes=num_classes, channels=channels,
                           policy=config.get("policy") or "threshold", seed=config.get("seed"),
                           learning_rule=learning_rule_from_config(config))
    return build_model(name, levels=levels, num_classes=num_classes, channels=channels)


def checkpoint_for(model, **others):
    """The `tf.train.Checkpoint` layout of training runs: the model plus `others` (optimizer...)."""
    return tf.train.Checkpoint(model=model, **others)


def read_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    if not os.path.exists(path):
        return None
    return files.read_json(path)


def load_run_model(path, checkpoint=None, prefer_checkpoint=False):
    """A model from a .keras file, a run directory's model.keras, or its (latest) checkpoint.

    Returns `(model, source description)`. With `prefer_checkpoint` (or `checkpoint` given) a
    run directory's checkpoint is used even when model.keras exists. Without `checkpoint`, the
    newest checkpoint that restores is used (damaged newer ones are skipped with a warning). A
    damaged file raises `ValueError` (`DamagedFileError`, `CheckpointError`) saying so.
    """
    import tf_pyramid  # noqa: F401,PLC0415  (registers the classes)
    if os.path.isfile(path):
        return files.load_keras(path, compile=False), path
    keras_file = os.path.join(path, "model.keras")
    if os.path.exists(keras_file) and not (prefer_checkpoint or checkpoint):
        return files.load_keras(keras_file, compile=False), keras_file
    config = read_config(path)
    checkpoint_dir = os.path.join(path, "checkpoints")
    if config is None or not (checkpoint or checkpoints.has_checkpoints(checkpoint_dir)):
        raise FileNotFoundError(f"{path}: no model.keras, or no config.json and checkpoint.")
    run = config.get("run") or {}
    model = build_from_config(config, run.get("num_classes"), run.get("channels"))
    if checkpoint:
        return model, checkpoints.restore_file(checkpoint_for(model), checkpoint, partial=True)
    return model, checkpoints.restore_newest(checkpoint_for(model), checkpoint_dir,
                                             partial=True).path


def _module_layers(model):
    names = PYRAMID_MODULES if isinstance(model, PyramidClassifier) else BASELINE_MODULES
    layers = []
    for name in names:
        value = getattr(model, name)
        layers.extend(value if isinstance(value, list) else [value])
    return layers


def copy_module_weights(source, target):
    """Copies every module weight of `source` into `target` (same architecture, any levels).

    The reward baselines of the depths both models have are copied too; deeper ones start from
    the source's deepest value. Returns the number of weight arrays copied.
    """
    if type(source) is not type(target) or not isinstance(
            source, (PyramidClassifier, BaselineClassifier)):
        raise ValueError(f"Cannot initialise a {type(target).__name__} from a "
                         f"{type(source).__name__}: --init_from needs the same kind of model.")
    copied = 0
    for src, dst in zip(_module_layers(source), _module_layers(target)):
        src_weights, dst_weights = src.get_weights(), dst.get_weights()
        shapes = [w.shape for w in src_weights], [w.shape for w in dst_weights]
        if shapes[0] != shapes[1]:
            raise ValueError(f"--init_from: module {dst.name} has weight shapes {shapes[1]} here "
                             f"but {shapes[0]} in the source model; use the same --model (and "
                             "dataset channels / classes).")
        dst.set_weights(src_weights)
        copied += len(src_weights)
    if isinstance(source, PyramidClassifier):
        values = np.asarray(source.reward_baseline.numpy())
        target_values = np.full(target.levels, values[-1], np.float32)
        n = min(len(values), target.levels)
        target_values[:n] = values[:n]
        target.reward_baseline.assign(target_values)
    return copied
