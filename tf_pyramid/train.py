r"""Trains a tf_pyramid model.

  python -m tf_pyramid.train --flagfile=flags/quickstart.cfg [--model_dir=DIR] [--flag=value ...]

Flags after the flagfile override it (a list flag such as --c_t given on the command line replaces
the flagfile's list). The run directory gets config.json, checkpoints/ (a rerun
resumes from the last one), logs/{train,validation} (TensorBoard), and at the end metrics.json
(per-level evaluation), model.keras and export/<version> (TF Serving). See docs/training.md.

Exit status: 0 done (or stopped by --stop_after_steps), 2 bad flags or a run directory that
cannot be used (locked by another training, incompatible settings, no checkpoint restores),
128 + N when signal N interrupted training (143 for SIGTERM, 130 for Ctrl-C) after saving a
checkpoint: rerun the same command to resume.
"""
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from tf_pyramid.training import flags as training_flags  # noqa: E402

FLAGS = flags.FLAGS
training_flags.define_flags(FLAGS)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}; flags take the form --name=value.")
    try:
        config = training_flags.resolve_config(training_flags.config_from_flags(FLAGS))
    except training_flags.FlagError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    from tf_pyramid.runs import checkpoints, files, lock, run_config  # noqa: PLC0415
    from tf_pyramid.training import trainer  # noqa: PLC0415
    try:
        result = trainer.Trainer(config).run()
    except (training_flags.FlagError, lock.LockedError, run_config.IncompatibleConfigError,
            checkpoints.CheckpointError, files.DamagedFileError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted (Ctrl-C); the last checkpoint is kept: resume with the same "
              "command.", file=sys.stderr)
        return 128 + signal.SIGINT
    if result.get("signal"):
        print(f"Interrupted by {signal.Signals(result['signal']).name} at step "
              f"{result['final_step']} of {result['total_steps']}; a checkpoint was saved. Not "
              "finished: resume with the same command.", file=sys.stderr)
        return 128 + result["signal"]
    if result.get("metrics"):
        for entry in result["metrics"]["levels"]:
            print(f"level {entry['level']}: accuracy {entry['accuracy']:.4f}, mean locations "
                  f"{entry['mean_locations']:.2f}, mean MACs {entry['mean_macs']:,.0f}")
    logging.info("Done: %s", config["model_dir"])
    return 0


def parse_flags(argv):
    """absl parsing, except that list flags given on the command line (`--c_t`,
    `--level_weights`) replace the flagfile's list instead of extending it."""
    rest = FLAGS(argv)
    for name, values in training_flags.command_line_lists(argv).items():
        FLAGS[name].value = values
    return rest


def run():
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
