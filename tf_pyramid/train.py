r"""Trains a tf_pyramid experiment: every stage of its chain, in order.

  python -m tf_pyramid.train --experiment=imagenet/m2_256_ct29 --data_dir=DIR [--flag=value ...]
  python -m tf_pyramid.train --flagfile=flags/m2_256.cfg --model_dir=runs/m2_256 --data_dir=DIR
  python -m tf_pyramid.train --flagfile=F --dry_run      # print the plan: each stage's config
  python -m tf_pyramid.train --list_experiments          # the paper's experiments, one a line

An experiment is a flagfile of the package's `flags/` tree, named by its path there; nested
flagfiles are read relative to the file that includes them, and a `flags/...` path that does not
exist in the working directory is looked up in the installed package. Flags on the command line
override the experiment's (a list flag such as --c_t=3.2,13.5 replaces the flagfile's list).

An experiment that starts from another one's weights (gradual learning: `--previous_stage` in its
flagfile) trains that one first, as stage 1 of n, and so on: finished stages are skipped, an
interrupted one resumes. The last stage runs in --model_dir (default runs/<experiment>), the
earlier ones under --stages_dir. `--init_from=RUN` on the command line runs the last stage only,
from RUN's weights. Each run directory gets config.json, checkpoints/ (a rerun resumes from the
last one), logs/{train,validation} (TensorBoard), and at the end metrics.json (per-level
evaluation), model.keras and export/<version> (TF Serving). See docs/training.md.

Exit status: 0 done (or stopped by --stop_after_steps), 2 bad flags or a run directory that
cannot be used (locked by another training, incompatible settings, no checkpoint restores, a
damaged file), 3 training diverged (a loss or weight not finite; nothing non-finite was saved, the
last finite checkpoint is kept), 128 + N when signal N interrupted training (143 for SIGTERM, 130 for Ctrl-C) after
saving a checkpoint: rerun the same command to resume.
"""
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402  (the run directory's modules import it anyway)
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from tf_pyramid import serving  # noqa: E402
from tf_pyramid.configs import experiments  # noqa: E402
from tf_pyramid.data.completeness import IncompleteSplitError  # noqa: E402
from tf_pyramid.runs import checkpoints, files, lock, run_config  # noqa: E402
from tf_pyramid.training import chain  # noqa: E402
from tf_pyramid.training import flags as training_flags  # noqa: E402

FLAGS = flags.FLAGS
training_flags.define_flags(FLAGS)
flags.DEFINE_boolean("dry_run", False, "Print the plan (every stage's run directory, what it "
                     "starts from, its status and resolved configuration) as JSON and exit "
                     "(reads no data, builds no model).")
flags.DEFINE_boolean("list_experiments", False, "List the paper's experiments (--experiment=NAME) "
                     "with one line each, and exit.")

EXIT_USAGE = 2
EXIT_DIVERGED = 3
UNUSABLE_RUN = (lock.LockedError, run_config.IncompatibleConfigError, checkpoints.CheckpointError,
                files.DamagedFileError, IncompleteSplitError)
_command_line = None  # the `experiments.CommandLine` that `run()` parsed


def export_run(model_dir):
    """The end-of-run export: DIR/model.keras -> DIR/export/<next version>/ for TF Serving."""
    model = serving.load_model(model_dir)
    try:
        path = serving.export_saved_model(model, os.path.join(model_dir, "export"),
                                          class_names=serving.run_class_names(model_dir))
    except tf.errors.OpError as error:  # e.g. a full disk: one line, not a traceback
        raise OSError(f"Cannot write the export to {model_dir}/export: {error.message}") \
            from error
    logging.info("Exported the SavedModel to %s.", path)
    return path


def list_experiments():
    for name in experiments.experiment_names():
        print(f"{name:34s} {experiments.summary(experiments.experiment_file(name))}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}; flags take the form --name=value.")
    if FLAGS.list_experiments:
        list_experiments()
        return 0
    command = _command_line or experiments.CommandLine(["train"])
    try:
        stages = chain.plan(command, training_flags.config_from_flags(FLAGS))
        if FLAGS.dry_run:
            print(chain.describe(stages))
            return 0
        result = chain.run(stages, export_run=export_run)
    except (training_flags.FlagError, experiments.ExperimentError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("Interrupted (Ctrl-C); the last checkpoint is kept: resume with the same command.",
              file=sys.stderr)
        return 128 + signal.SIGINT
    except UNUSABLE_RUN as error:  # the run directory cannot be used as it is
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except FloatingPointError as error:  # diverged: nothing non-finite was saved
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except OSError as error:  # a full disk, a permission: the last checkpoint is kept
        print(f"Error: {error}. The last checkpoint is kept: free space (or fix the permissions) "
              "and rerun the same command to resume.", file=sys.stderr)
        return EXIT_USAGE
    where = (f" (stage {result['stage']} of {result['stages']})"
             if result.get("stages", 1) > 1 else "")
    if result.get("signal"):
        print(f"Interrupted by {signal.Signals(result['signal']).name} at step "
              f"{result['final_step']} of {result['total_steps']}{where}; a checkpoint was saved. "
              "Not finished: resume with the same command.", file=sys.stderr)
        return 128 + result["signal"]
    if result.get("interrupted"):  # --stop_after_steps: the stop the user asked for
        return 0
    if result.get("skipped"):
        print(f"All {result['stages']} stages finished before; nothing to train. The last one: "
              f"{result['model_dir']}.")
        return 0
    for entry in result["metrics"]["levels"]:
        print(f"level {entry['level']}: accuracy {entry['accuracy']:.4f}, mean locations "
              f"{entry['mean_locations']:.2f}, mean MACs {entry['mean_macs']:,.0f}")
    logging.info("Done: %s", result["model_dir"])
    return 0


def run():
    """The console entry point: reads the experiment's flagfiles, then absl parses the flags."""
    global _command_line
    try:
        _command_line = experiments.CommandLine(sys.argv)
    except experiments.ExperimentError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    app.run(main, argv=_command_line.argv)


if __name__ == "__main__":
    run()
