"""A whole experiment with one command: its chain of stages, planned, then trained in order.

Gradual learning (paper eq. 5) and multi-level learning (eq. 6) train an experiment in stages of
growing resolution, each starting from the previous stage's weights (ImageNet 64 -> 128 -> 256 px,
MNIST 28 -> 56 px). An experiment names the one before it with `--previous_stage=NAME`; `plan()`
follows those names back to a stage that starts from scratch and returns every stage's typed
config. Each stage is a run directory of its own: the last one `--model_dir`, the earlier ones
`<stages_dir>/<experiment name>` (`--stages_dir`, default `<model_dir>/stages` when
`--model_dir` is given, else `runs`, so the paper's runs that share a 64 px stage share its
directory). `run()` skips finished stages, resumes an interrupted one from its checkpoint and says
"stage k of n" as it goes. `--init_from` on the command line replaces the earlier stages: only the
last one runs, from the given weights.
"""
import json
import os

from absl import flags as absl_flags
from absl import logging

from tf_pyramid.configs import experiments
from tf_pyramid.configs.experiment_config import FLAG_FIELDS
from tf_pyramid.runs import files, run_config
from tf_pyramid.runs.run_directory import CHECKPOINT_DIR, MODEL_FILE, read_config
from tf_pyramid.training import flags as training_flags
from tf_pyramid.training.flags import FlagError

# Settings that define one stage of a chain (its model, input size and attention target): given
# on the command line of a multi-stage chain they would apply to every stage, so they are refused.
STAGE_FLAGS = ("model", "levels", "resolution", "c_t", "level_weights")
METRICS_FILE = "metrics.json"


def parse_argv(argv):
    """The typed config of a command line (expanded, see `experiments.CommandLine.argv`); flags
    of the process rather than the run (`--dry_run`, absl's logging flags) are left out."""
    values = absl_flags.FlagValues()
    training_flags.define_flags(values)
    values([argv[0], *(arg for arg in argv[1:]
                       if experiments.flag_name(arg, FLAG_FIELDS) in FLAG_FIELDS)])
    return training_flags.config_from_flags(values)


def plan(command, config):
    """Every stage of the experiment `config` (the parsed `command`, an
    `experiments.CommandLine`), earliest first: resolved `ExperimentConfig`s with their run
    directories and `init_from` set. The last one is `config` with `stages` listing the others.
    Raises `FlagError` naming what to change."""
    final = config.replace()
    explicit_dir = bool(final.trainer.model_dir)
    if not explicit_dir and final.experiment:
        final.trainer.model_dir = os.path.join(experiments.DEFAULT_RUNS_DIR,
                                               *final.experiment.split("/"))
    stages = []
    if final.previous_stage and command.sets("init_from"):
        logging.info("--init_from=%s: only this stage runs (not its earlier stages from %s).",
                     final.trainer.init_from, final.previous_stage)
    elif final.previous_stage:
        if not final.trainer.model_dir:
            raise FlagError("--model_dir is required: the directory for checkpoints, logs and "
                            "results.")
        stages_dir = final.trainer.stages_dir or (
            os.path.join(final.trainer.model_dir, "stages") if explicit_dir
            else experiments.DEFAULT_RUNS_DIR)
        stages = _earlier_stages(command, final.previous_stage, stages_dir)
        given = [flag for flag in STAGE_FLAGS if command.sets(flag)]
        if given:
            raise FlagError(
                f"--{given[0]} sets one stage, but {final.experiment or 'this experiment'} is a "
                f"chain of {len(stages) + 1} stages with their own values. Run one stage with "
                "--init_from=<the previous stage's run> (or write your own experiment flagfile).")
        final.trainer.stages_dir = stages_dir
        final.trainer.init_from = stages[-1].trainer.model_dir
    resolved = []
    for index, stage in enumerate([*stages, final]):
        where = f"stage {index + 1} of {len(stages) + 1} ({stage.experiment})" if stages else ""
        try:
            resolved.append(training_flags.resolve_config(stage, planned_init_from=index > 0))
        except FlagError as error:
            raise FlagError(f"{where}: {error}" if where else str(error)) from None
    resolved[-1].stages = resolved[:-1]
    return resolved


def _earlier_stages(command, name, stages_dir):
    """The stages before the one that names `name` as its previous stage, earliest first."""
    stages, seen = [], []
    while name:
        if name in seen:
            raise FlagError(f"--previous_stage names form a cycle: {' -> '.join(seen + [name])}.")
        seen.append(name)
        try:
            argv = experiments.stage_argv(command.program, name, command.override_args)
        except experiments.ExperimentError as error:
            raise FlagError(f"--previous_stage={name}: {error}") from None
        stage = parse_argv(argv)
        stage.trainer.model_dir = os.path.join(stages_dir, *name.split("/"))
        stage.trainer.stages_dir = stages_dir
        stages.insert(0, stage)
        name = stage.previous_stage
    for previous, stage in zip(stages, stages[1:]):
        stage.trainer.init_from = previous.trainer.model_dir
    return stages


def is_finished(model_dir):
    """A stage is finished once its final evaluation and model are written."""
    return all(files.exists(os.path.join(model_dir, name)) for name in (METRICS_FILE, MODEL_FILE))


def status(model_dir):
    if is_finished(model_dir):
        return "finished"
    if files.isdir(os.path.join(model_dir, CHECKPOINT_DIR)):
        return "resumes from its checkpoint"
    return "to train"


def describe(stages):
    """The dry-run plan: each stage's status, run directory, what it starts from, and its
    resolved config."""
    return json.dumps({"stages": [
        {"stage": index + 1, "of": len(stages), "experiment": stage.experiment,
         "model_dir": stage.trainer.model_dir, "init_from": stage.trainer.init_from,
         "status": status(stage.trainer.model_dir),
         "config": dict(stage.to_dict(), stages=[s.experiment for s in stage.stages])}
        for index, stage in enumerate(stages)]}, indent=2)


def _warn_if_trained_otherwise(stage):
    """A finished stage is reused as it is; say so when it was trained with other settings."""
    saved = read_config(stage.trainer.model_dir)
    if saved is None:
        return
    incompatible, changed = run_config.compare(saved, stage)
    differences = [(key, old, new) for key, old, new, *_ in incompatible + changed
                   if key not in ("init_from", "experiment", "previous_stage")]
    if differences:
        logging.warning("%s was trained with other settings than this plan's (%s); it is used as "
                        "it is. Move it away to train it again.", stage.trainer.model_dir,
                        ", ".join(f"{k} {o!r} -> {n!r}" for k, o, n in differences))


def run(stages, export_run=None, strategy=None):
    """Trains every unfinished stage in order; returns the last trained stage's summary (see
    `Trainer.run`) with `stage` and `stages` added. Stops after a stage that was interrupted.
    `export_run(model_dir)`: called after each stage that finishes (the TF Serving export)."""
    from tf_pyramid.training.trainer import Trainer  # noqa: PLC0415  (imports TensorFlow)

    result = {}
    # Stages before a finished one are not needed again (its weights are what follows uses).
    needed_from = max([i + 1 for i, s in enumerate(stages[:-1]) if is_finished(s.trainer.model_dir)]
                      or [0])
    for index, stage in enumerate(stages):
        label = f"Stage {index + 1} of {len(stages)}" + (
            f" ({stage.experiment})" if stage.experiment else "")
        model_dir = stage.trainer.model_dir
        if len(stages) > 1 and (index < needed_from or is_finished(model_dir)):
            logging.info("%s: finished before, skipped (%s).", label, model_dir)
            _warn_if_trained_otherwise(stage)
            continue
        logging.info("%s: %s in %s%s.", label, status(model_dir).replace("to train", "training"),
                     model_dir, f", starting from {stage.trainer.init_from}"
                     if stage.trainer.init_from else "")
        trainer = Trainer(stage, strategy=strategy, planned_init_from=index > 0)
        result = trainer.run()
        strategy = trainer.strategy  # one strategy for the whole chain (collectives set up once)
        result.update(stage=index + 1, stages=len(stages), experiment=stage.experiment)
        if result.get("signal") or result.get("interrupted"):
            return result
        if export_run is not None and result.get("is_chief") and stage.trainer.export:
            result["export"] = export_run(result["model_dir"])
    if not result:
        result = {"stage": len(stages), "stages": len(stages), "skipped": True,
                  "model_dir": files.absolute(stages[-1].trainer.model_dir)}
    return result
