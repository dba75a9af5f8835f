"""The trainer's absl flags and their validation.

Every setting is a field of `tf_pyramid.configs.ExperimentConfig` (its default, flag name and help
live there); `define_flags()` declares one absl flag per field, `config_from_flags()` reads them
into the typed config, and `resolve_config(config)` checks it before any work and returns it
resolved (what `DIR/config.json` holds). A bad flag raises `FlagError` with what to change.
"""
import math
import os
import zipfile

from absl import flags

from tf_pyramid import evaluators
from tf_pyramid.configs import ExperimentConfig, field_metadata
from tf_pyramid.configs.experiment_config import FLAG_FIELDS
from tf_pyramid.data import DATASETS, SPLITS
from tf_pyramid.data.builder import DatasetArgumentError
from tf_pyramid.data.builder import check_arguments as check_dataset_arguments
from tf_pyramid.data.mnist import MNIST_INPUTS, VARIANTS
from tf_pyramid.modeling import MODEL_NAMES, input_checks, is_pyramid, learning_rule, precision
from tf_pyramid.modeling import StepDecay, levels_for_resolution
from tf_pyramid.modeling.architectures import architecture
from tf_pyramid.training.strategy import STRATEGIES, check_tf_config

# The paper's learning rates: 0.01 for MNIST (A.5.2), 0.001 for ImageNet (A.6.2).
DEFAULT_LEARNING_RATE = {"mnist": 0.01}
IMAGENET_LEARNING_RATE = 0.001
LIST_FLAGS_OF_NUMBERS = {"c_t": "3.2,13.5", "level_weights": "1,1", "lr_decay_at": "0.8,0.9",
                         "anytime_thresholds": "0.5,0.9,1.01"}
CHOICES = {"model": MODEL_NAMES, "dataset": DATASETS, "variant": VARIANTS,
           "mnist_input": MNIST_INPUTS, "strategy": STRATEGIES}
DEFINE = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer,
          "float": flags.DEFINE_float, "boolean": flags.DEFINE_boolean,
          "list": flags.DEFINE_list}


class FlagError(ValueError):
    """A flag value that cannot work; the message says what to change."""


def define_flags(flag_values=flags.FLAGS):
    """Declares one flag per setting of `ExperimentConfig` on `flag_values` (once)."""
    if "model" in flag_values and "c_t" in flag_values:
        return
    for name, (default, metadata) in field_metadata().items():
        help_text = metadata["help"]
        if name in CHOICES:
            help_text += f" One of {', '.join(CHOICES[name])}."
        kwargs = {}
        if metadata["lower_bound"] is not None:
            kwargs["lower_bound"] = metadata["lower_bound"]
        if metadata["kind"] == "list":
            default = [str(v) for v in default]
        DEFINE[metadata["kind"]](name, default, help_text, flag_values=flag_values, **kwargs)


def config_from_flags(flag_values=flags.FLAGS):
    """The typed config of parsed flags (lists of numbers as floats)."""
    values = {name: flag_values[name].value for name in FLAG_FIELDS}
    for name, example in LIST_FLAGS_OF_NUMBERS.items():
        values[name] = _float_list(name, values[name], example)
    return ExperimentConfig.from_flag_values(values)


def default_config(**overrides):
    """An `ExperimentConfig` with every default, updated with `overrides` given by flag name
    (for the Python API: `default_config(model="mnist_m2", resolution=28, ...)`)."""
    values = flags.FlagValues()
    define_flags(values)
    values.mark_as_parsed()
    config = config_from_flags(values)
    try:
        config.set_flags(overrides)
    except KeyError as error:
        raise FlagError(error.args[0]) from None
    return config


def _check_choice(name, value, choices):
    if value is None:
        raise FlagError(f"--{name} is required: set --{name} to one of {', '.join(choices)}.")
    if value not in choices:
        raise FlagError(f"Unknown --{name}={value}; use one of {', '.join(choices)}.")


def check_init_from(path):
    """An error message when `--init_from` cannot be read, else None."""
    from tf_pyramid.runs import files  # noqa: PLC0415  (gfile: gs://... paths)
    if files.is_url(path):
        if not files.exists(path):
            return f"--init_from={path} does not exist."
        return None  # read (and checked) when the run starts
    if not os.path.exists(path):
        return (f"--init_from={path} does not exist; give a previous stage's model_dir (with "
                "model.keras or checkpoints/) or a .keras file.")
    if os.path.isdir(path):
        keras_file = os.path.join(path, "model.keras")
        if os.path.exists(keras_file):
            return check_init_from(keras_file)
        from tf_pyramid.runs import checkpoints  # noqa: PLC0415
        if not checkpoints.has_checkpoints(os.path.join(path, "checkpoints")):
            return (f"--init_from={path} holds neither model.keras nor a checkpoint in "
                    "checkpoints/; point it at a finished (or checkpointed) run directory.")
        if not os.path.exists(os.path.join(path, "config.json")):
            return (f"--init_from={path} has checkpoints but no config.json to rebuild the model "
                    "from; point it at a .keras file instead.")
        return None
    if not os.access(path, os.R_OK):
        return f"--init_from={path} is not readable (permissions)."
    if not zipfile.is_zipfile(path):
        return (f"--init_from={path} is not a .keras model file (not a zip archive); give a "
                "model_dir or a .keras file.")
    return None


def _float_list(name, values, example):
    """A list flag's values as floats (strings from the command line, numbers from Python)."""
    try:
        return [float(v) for v in (values or [])]
    except (TypeError, ValueError):
        raise FlagError(f"--{name} takes numbers separated by commas, e.g. --{name}={example}; got "
                        f"{values!r}.") from None


def _check_finite(config):
    """Every number a flag set is finite: a NaN learning rate would train, checkpoint NaN
    weights, and poison every resume."""
    for name, value in config.flag_values().items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise FlagError(f"--{name}={value if isinstance(value, list) else item} is not a "
                                "finite number; give a finite value.")


def _check_run_directory(name, path):
    """`path` (a run directory to create or reuse) is usable: not a file, writable."""
    if "://" in path and not path.startswith("file://"):
        return  # another filesystem (gs://...): no local checks; writing it says what is wrong
    existing = path
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FlagError(f"--{name}={path} is a file, not a directory; choose another path.")
    if existing and not os.access(existing, os.W_OK | os.X_OK):
        raise FlagError(f"--{name}={path}: {existing} is not writable; choose a directory you "
                        "can write to.")


def resolve_config(config, planned_init_from=False):
    """Checks an `ExperimentConfig` before any work; returns a resolved copy. Raises `FlagError`.

    Resolves levels from resolution (or the reverse), the learning-rate and evaluation-batch
    defaults and `~` in paths. `planned_init_from`: `--init_from` is an earlier stage of the same
    chain that has not run yet (its existence is not checked).
    """
    config = ExperimentConfig.from_dict(config.to_dict())
    values = config.flag_values()
    config.set_flags({name: _float_list(name, values[name], example)
                      for name, example in LIST_FLAGS_OF_NUMBERS.items()})
    model, data, rule = config.model, config.data, config.learning_rule
    schedule, evaluation, trainer = config.schedule, config.evaluation, config.trainer
    if model.name is None:
        raise FlagError(f"--model is required: one of {', '.join(MODEL_NAMES)}.")
    if model.name not in MODEL_NAMES:
        raise FlagError(f"Unknown --model={model.name}; use one of {', '.join(MODEL_NAMES)}.")
    pyramid = is_pyramid(model.name)
    _check_choice("dataset", data.dataset, DATASETS)
    _check_choice("dtype_policy", model.dtype_policy, precision.DTYPE_POLICIES)
    _check_finite(config)
    if not trainer.model_dir:
        raise FlagError("--model_dir is required: the directory for checkpoints, logs and "
                        "results.")
    for key in ("model_dir", "stages_dir", "init_from", "data_dir", "texture"):
        section = trainer if hasattr(trainer, key) else data
        if getattr(section, key):
            setattr(section, key, os.path.expanduser(getattr(section, key)))
    _check_run_directory("model_dir", trainer.model_dir)

    # Levels and resolution.
    base = architecture(model.name)["base_resolution"]
    levels, resolution = model.levels, model.resolution
    if levels is None and resolution is None:
        raise FlagError(f"Set --resolution (or --levels): {model.name} takes sides "
                        f"{', '.join(str(base * 2 ** i) for i in range(4))}, ...")
    if levels is not None and levels < 1:
        raise FlagError(f"--levels must be >= 1; got {levels}.")
    if levels is not None:
        try:
            input_checks.check_levels(levels)
        except ValueError as error:
            raise FlagError(f"--levels={levels}: {error}") from None
    if resolution is not None:
        try:
            implied = levels_for_resolution(model.name, resolution)
        except ValueError as error:
            raise FlagError(f"--resolution={resolution} does not fit --model={model.name}: "
                            f"{error} Change --resolution.") from None
        if levels is not None and levels != implied:
            raise FlagError(
                f"--levels={levels} does not match --resolution={resolution} for {model.name}: "
                f"{resolution} px means {implied} levels ({levels} levels means "
                f"{base * 2 ** (levels - 1)} px). Drop one of the two flags or fix it.")
        levels = implied
    model.levels, model.resolution = levels, base * 2 ** (levels - 1)

    try:  # the data package's own checks; the error names the flag
        check_dataset_arguments(data.dataset, resolution=model.resolution, variant=data.variant,
                                source=data.source, mnist_input=data.mnist_input)
    except DatasetArgumentError as error:
        if error.choices is not None:
            _check_choice(error.key, error.value, error.choices)
        raise FlagError(f"--{error.key} {error.problem}; got {error.value}.") from None
    if data.dataset in ("tfrecord", "folder") and not data.data_dir:
        raise FlagError(f"--dataset={data.dataset} reads files: set --data_dir to their root.")
    if data.data_dir and not os.path.isdir(data.data_dir):
        raise FlagError(f"--data_dir={data.data_dir} is not a directory; fix the path.")
    if data.texture and not os.path.exists(data.texture):
        raise FlagError(f"--texture={data.texture} does not exist.")

    # Learning rule: checked by its owner; the error names the flag that set the value. A
    # baseline trains on cross-entropy alone: its rule's pyramid-only settings are ignored.
    if pyramid:
        try:
            learning_rule.resolve_learning_rule(rule.to_learning_rule(), levels)
        except learning_rule.LearningRuleError as error:
            raise FlagError(f"--{_rule_flag(error.key)} {error.problem}.") from None
    elif rule.mc_samples is not None and rule.mc_samples < 1:
        raise FlagError(f"--mc_samples must be >= 1; got {rule.mc_samples}.")
    if schedule.learning_rate is None:
        schedule.learning_rate = DEFAULT_LEARNING_RATE.get(data.dataset, IMAGENET_LEARNING_RATE)
    if schedule.learning_rate <= 0:
        raise FlagError(f"--learning_rate must be > 0; got {schedule.learning_rate}.")
    schedule.lr_decay_at = sorted(schedule.lr_decay_at)
    try:
        StepDecay.check_boundaries(schedule.lr_decay_at)
    except ValueError as error:
        raise FlagError(f"--lr_decay_at fractions: {error}") from None
    if schedule.batch_size < 1:
        raise FlagError("--batch_size must be >= 1.")
    if evaluation.batch_size is None:
        evaluation.batch_size = schedule.batch_size
    try:
        evaluation.evaluators = evaluators.check_names(evaluation.evaluators)
    except evaluators.UnknownEvaluatorError as error:
        raise FlagError(f"--evaluators: {error}") from None
    for flag, value, allowed in (("validation_split", evaluation.validation_split,
                                  SPLITS + ("none",)), ("eval_split", evaluation.split, SPLITS)):
        if value not in allowed:
            raise FlagError(f"--{flag}={value}; use one of {', '.join(allowed)}.")
    if pyramid:
        from tf_pyramid.modeling import attention_policy  # noqa: PLC0415
        try:
            attention_policy.parse_policy(model.policy or "threshold", 9)
        except ValueError as error:
            raise FlagError(f"--policy: {error}") from None
    elif (model.policy or "threshold") != "threshold":
        raise FlagError(f"--policy={model.policy}: {model.name} is a baseline and has no "
                        "attention policy; drop --policy.")

    # Distribution and initialisation.
    if trainer.strategy not in STRATEGIES:
        raise FlagError(f"Unknown --strategy={trainer.strategy}; use one of "
                        f"{', '.join(STRATEGIES)}.")
    if trainer.strategy == "multi_worker":
        message = check_tf_config()
        if message:
            raise FlagError(message)
    if trainer.init_from:
        if os.path.abspath(trainer.init_from) == os.path.abspath(trainer.model_dir):
            raise FlagError("--init_from is this run's --model_dir; a run resumes from its own "
                            "checkpoints automatically: drop --init_from.")
        message = None if planned_init_from else check_init_from(trainer.init_from)
        if message:
            raise FlagError(message)
    return config


def _rule_flag(key):
    """The flag behind a learning-rule key (`learning_rule.LearningRuleError.key`)."""
    return {name: flag for flag, (section, name) in FLAG_FIELDS.items()
            if section == "learning_rule"}.get(key, key)


PYRAMID_ONLY = ("lambda_f", "lambda_t", "lambda_r", "c_t", "c_r", "level_weights")


def ignored_pyramid_flags(config):
    """Learning-rule flags set for a baseline model (ignored; the trainer logs them)."""
    if is_pyramid(config.model.name):
        return []
    values = config.flag_values()
    return [key for key in PYRAMID_ONLY if values[key] not in (None, 0.0, [], ())]
