r"""Trains a tf_pyramid model.

  python -m tf_pyramid.train --flagfile=flags/quickstart.cfg [--model_dir=DIR] [--flag=value ...]
  python -m tf_pyramid.train --flagfile=F --dry_run     # print the resolved configuration

Flags after the flagfile override it (a list flag such as --c_t=3.2,13.5 given on the command line
replaces the flagfile's list). The run directory gets config.json, checkpoints/ (a rerun
resumes from the last one), logs/{train,validation} (TensorBoard), and at the end metrics.json
(per-level evaluation), model.keras and export/<version> (TF Serving). See docs/training.md.

Exit status: 0 done (or stopped by --stop_after_steps), 2 bad flags or a run directory that
cannot be used (locked by another training, incompatible settings, no checkpoint restores, a
damaged file), 128 + N when signal N interrupted training (143 for SIGTERM, 130 for Ctrl-C) after
saving a checkpoint: rerun the same command to resume.
"""
import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from tf_pyramid.runs import checkpoints, files, lock, run_config  # noqa: E402
from tf_pyramid.training import flags as training_flags  # noqa: E402
from tf_pyramid.training.flagfiles import flagfiles_in_argv  # noqa: E402

FLAGS = flags.FLAGS
training_flags.define_flags(FLAGS)
flags.DEFINE_boolean("dry_run", False, "Print the resolved run configuration as JSON and exit "
                     "(reads no data, builds no model).")

EXIT_USAGE = 2
UNUSABLE_RUN = (lock.LockedError, run_config.IncompatibleConfigError, checkpoints.CheckpointError,
                files.DamagedFileError)


def export_run(model_dir):
    """The end-of-run export: DIR/model.keras -> DIR/export/<next version>/ for TF Serving."""
    from tf_pyramid import serving  # noqa: PLC0415
    model, _ = serving.load_model(model_dir)
    path = serving.export_saved_model(model, os.path.join(model_dir, "export"))
    logging.info("Exported the SavedModel to %s.", path)
    return path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}; flags take the form --name=value.")
    config = training_flags.config_from_flags(FLAGS)
    flagfiles = flagfiles_in_argv(sys.argv)
    try:
        if FLAGS.dry_run:
            print(json.dumps(training_flags.resolve_config(config, flagfiles), indent=2))
            return 0
        from tf_pyramid.training import trainer  # noqa: PLC0415  (imports TensorFlow)
        result = trainer.Trainer(config, flagfiles=flagfiles).run()
    except training_flags.FlagError as error:
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("Interrupted (Ctrl-C); the last checkpoint is kept: resume with the same command.",
              file=sys.stderr)
        return 128 + signal.SIGINT
    except UNUSABLE_RUN as error:  # the run directory cannot be used as it is
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if result.get("signal"):
        print(f"Interrupted by {signal.Signals(result['signal']).name} at step "
              f"{result['final_step']} of {result['total_steps']}; a checkpoint was saved. Not "
              "finished: resume with the same command.", file=sys.stderr)
        return 128 + result["signal"]
    if result["interrupted"]:  # --stop_after_steps: the stop the user asked for
        return 0
    if result.get("is_chief") and config["export"]:
        result["export"] = export_run(result["model_dir"])
    for entry in result["metrics"]["levels"]:
        print(f"level {entry['level']}: accuracy {entry['accuracy']:.4f}, mean locations "
              f"{entry['mean_locations']:.2f}, mean MACs {entry['mean_macs']:,.0f}")
    logging.info("Done: %s", result["model_dir"])
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
