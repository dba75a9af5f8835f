r"""Trains a tf_pyramid model.

  python -m tf_pyramid.train --flagfile=flags/quickstart.cfg [--model_dir=DIR] [--flag=value ...]

Flags after the flagfile override it (a list flag such as --c_t=3.2,13.5 given on the command line
replaces the flagfile's list). The run directory gets config.json, checkpoints/ (a rerun
resumes from the last one), logs/{train,validation} (TensorBoard), and at the end metrics.json
(per-level evaluation), model.keras and export/<version> (TF Serving). See docs/training.md.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from tf_pyramid.training import flags as training_flags  # noqa: E402
from tf_pyramid.training.flagfiles import flagfiles_in_argv  # noqa: E402

FLAGS = flags.FLAGS
training_flags.define_flags(FLAGS)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}; flags take the form --name=value.")
    try:
        config = training_flags.resolve_config(training_flags.config_from_flags(FLAGS),
                                               flagfiles=flagfiles_in_argv(sys.argv))
    except training_flags.FlagError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    from tf_pyramid.training import trainer  # noqa: PLC0415
    try:
        result = trainer.Trainer(config).run()
    except training_flags.FlagError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    if result.get("metrics"):
        for entry in result["metrics"]["levels"]:
            print(f"level {entry['level']}: accuracy {entry['accuracy']:.4f}, mean locations "
                  f"{entry['mean_locations']:.2f}, mean MACs {entry['mean_macs']:,.0f}")
    logging.info("Done: %s", config["model_dir"])
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
