"""Building a run's model from its config, loading finished or checkpointed runs, and copying
module weights between models of different depth (gradual learning, paper eq. 5).

A run directory holds `config.json` (the resolved flags, plus a `run` section with what the data
told the trainer: classes, input convention, steps), `checkpoints/`, `model.keras` once finished,
and `export/<version>/`.
"""
import os

import keras
import numpy as np
import tensorflow as tf

from tf_pyramid.configs import ExperimentConfig, RunFacts
from tf_pyramid.data import build_dataset
from tf_pyramid.modeling import StepDecay, build_model, is_pyramid
from tf_pyramid.runs import checkpoints, files

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
CHECKPOINT_DIR = "checkpoints"
CLASS_INDEX_FILE = "class_index.txt"  # folder datasets: line i names class i


def build_from_config(config, num_classes=None, input_convention=None):
    """The run's model (pyramid or baseline) from an `ExperimentConfig`, untrained, uncompiled.

    `num_classes` and `input_convention` (a dict) default to the config's `run` facts, which the
    trainer writes once it has seen the data.
    """
    run = config.run or RunFacts()
    num_classes = num_classes if num_classes is not None else run.num_classes
    convention = input_convention if input_convention is not None else run.input_convention
    if num_classes is None or convention is None:
        raise ValueError("The run config has no `run` section (num_classes, input_convention): "
                         "it was not written by the trainer.")
    kwargs = dict(levels=config.model.levels, num_classes=num_classes,
                  channels=convention["channels"], input_convention=convention,
                  dtype=config.model.dtype_policy or "float32")
    if is_pyramid(config.model.name):
        kwargs.update(policy=config.model.policy or "threshold", seed=config.trainer.seed)
    return build_model(config.model.name, **kwargs)


def build_run_dataset(config, split, *, training, resolution, class_names=None,
                      input_context=None, for_service=False):
    """`build_dataset` with a run's data settings (the typed config): the one place a config's
    fields become the pipeline's arguments, for the trainer and for evaluations of a run."""
    data = config.data
    return build_dataset(
        data.dataset, split, resolution=resolution,
        batch_size=config.schedule.batch_size if training else config.evaluation.batch_size,
        training=training, variant=data.variant, source=data.source, data_dir=data.data_dir,
        texture=data.texture, seed=config.trainer.seed, input_context=input_context,
        drop_remainder=training, class_names=class_names,
        validation_fraction=data.validation_fraction, for_service=for_service,
        mnist_input=data.mnist_input)


def learning_rate_schedule(config, total_steps):
    """The run's learning rate: constant, x factor at the `lr_decay_at` fractions of the steps."""
    return StepDecay(config.schedule.learning_rate, total_steps, config.schedule.lr_decay_at,
                     config.schedule.lr_decay_factor)


def make_optimizer(schedule, dtype_policy="float32"):
    """The training runs' optimizer (paper A.5.2, A.6.2): Adam(0.9, 0.999, 1e-8) on `schedule`;
    under "mixed_float16" inside a `keras.optimizers.LossScaleOptimizer` (dynamic loss scaling:
    float16 gradients of small losses would underflow to zero). A checkpoint's optimizer slots
    match only an optimizer built the same way (by position)."""
    optimizer = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    if (dtype_policy or "float32") == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def checkpoint_for(model, **others):
    """The `tf.train.Checkpoint` layout of training runs: the model, its extra training state
    (attention seed) and `others` (optimizer, step, epoch)."""
    return tf.train.Checkpoint(model=model, **model.checkpoint_state(), **others)


def read_config(model_dir):
    """The run's config.json as an `ExperimentConfig`, or None when there is none;
    `files.DamagedFileError` when it is damaged."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not files.exists(path):
        return None
    return ExperimentConfig.from_dict(files.read_json(path))


def read_class_names(model_dir):
    """The class index the run was trained with (labels must not move on resume), else None."""
    path = os.path.join(model_dir, CLASS_INDEX_FILE)
    if not files.isfile(path):
        return None
    return [line.strip() for line in files.read_text(path).splitlines() if line.strip()]


def write_class_names(model_dir, class_names):
    files.write_text(os.path.join(model_dir, CLASS_INDEX_FILE),
                     "".join(f"{name}\n" for name in class_names))


def load_run_model(path, checkpoint=None, prefer_checkpoint=False, compile=False):
    """A model from a .keras file, a run directory's model.keras, or its (latest) checkpoint.

    Returns `(model, source description)`. With `prefer_checkpoint` (or `checkpoint` given) a
    run directory's checkpoint is used even when model.keras exists. Without `checkpoint`, the
    newest checkpoint that restores is used (damaged newer ones are skipped with a warning, and
    left where they are). `compile`: compiled with the saved learning rule (reward baselines
    included) rather than bare. A damaged file raises a `ValueError` saying so
    (`files.DamagedFileError`, `checkpoints.CheckpointError`).
    """
    path = os.fspath(path)
    if files.isfile(path):
        return files.load_keras(path, compile=compile), path
    keras_file = os.path.join(path, MODEL_FILE)
    if files.exists(keras_file) and not (prefer_checkpoint or checkpoint):
        return files.load_keras(keras_file, compile=compile), keras_file
    config = read_config(path)
    checkpoint_dir = os.path.join(path, CHECKPOINT_DIR)
    if config is None or not (checkpoint or checkpoints.has_checkpoints(checkpoint_dir)):
        raise FileNotFoundError(f"{path}: no {MODEL_FILE}, or no {CONFIG_FILE} and checkpoint.")
    model = build_from_config(config)
    if compile:  # an optimizer like the run's: its slots are in the checkpoint, by position
        total_steps = (config.run.total_steps if config.run else None) or 1
        model.compile(optimizer=make_optimizer(learning_rate_schedule(config, total_steps),
                                               config.model.dtype_policy),
                      learning_rule=config.learning_rule.to_learning_rule(
                          is_pyramid(config.model.name)))
    if checkpoint:
        return model, checkpoints.restore_file(checkpoint_for(model), checkpoint, partial=True)
    return model, checkpoints.restore_newest(checkpoint_for(model), checkpoint_dir,
                                             partial=True).path


def check_same_inputs(model, convention, where):
    """Raises ValueError when `model` was trained on inputs prepared otherwise than `convention`
    (a dict: the data's `InputConvention.get_config()`) says; `where` names the model's file.
    The input size may differ (module weights are depth independent)."""
    saved = getattr(model, "input_convention", None)
    if not saved:
        return
    keys = ("channels", "value_range", "resize_method")
    theirs = {k: list(saved[k]) if k == "value_range" else saved[k] for k in keys}
    ours = {k: list(convention[k]) if k == "value_range" else convention[k] for k in keys}
    if theirs != ours:
        raise ValueError(
            f"{where} was trained on inputs {theirs}, but this data gives {ours}: its weights "
            "would see inputs they never saw. For MNIST, pass the --mnist_input the model was "
            "trained with (unit: [0, 1]; symmetric: [-1, 1], the default before 0.3; "
            "standardized; centered); otherwise retrain.")


def copy_module_weights(source, target):
    """Copies every module weight of `source` into `target` (same architecture, any levels).

    The reward baselines of the depths both models have are copied too (when both are
    compiled); deeper ones start from the source's deepest value. Returns the number of weight
    arrays copied.
    """
    if type(source) is not type(target):
        raise ValueError(f"Cannot initialise a {type(target).__name__} from a "
                         f"{type(source).__name__}: --init_from needs the same kind of model.")
    copied = 0
    for src, dst in zip(source.module_layers(), target.module_layers()):
        src_weights, dst_weights = src.get_weights(), dst.get_weights()
        shapes = [w.shape for w in src_weights], [w.shape for w in dst_weights]
        if shapes[0] != shapes[1]:
            raise ValueError(f"--init_from: module {dst.name} has weight shapes {shapes[1]} here "
                             f"but {shapes[0]} in the source model; use the same --model (and "
                             "dataset channels / classes).")
        dst.set_weights(src_weights)
        copied += len(src_weights)
    if hasattr(source, "reward_baseline") and hasattr(target, "reward_baseline"):
        values = np.asarray(source.reward_baseline.numpy())
        target_values = np.full(target.exit_levels, values[-1], np.float32)
        n = min(len(values), target.exit_levels)
        target_values[:n] = values[:n]
        target.reward_baseline.assign(target_values)
    return copied
