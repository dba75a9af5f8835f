r"""Trains a tf_pyramid model.

  python -m tf_pyramid.train --flagfile=flags/quickstart.cfg [--model_dir=DIR] [--flag=value ...]
  python -m tf_pyramid.train --flagfile=F --dry_run     # print the resolved configuration

Flags after the flagfile override it (a list flag such as --c_t=3.2,13.5 given on the command line
replaces the flagfile's list). The run directory gets config.json, checkpoints/ (a rerun
resumes from the last one), logs/{train,validation} (TensorBoard), and at the end metrics.json
(per-level evaluation), model.keras and export/<version> (TF Serving). See docs/training.md.
"""
import json
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
flags.DEFINE_boolean("dry_run", False, "Print the resolved run configuration as JSON and exit "
                     "(reads no data, builds no model).")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, the shells' code for a process ended by SIGTERM


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
    if result["interrupted"]:
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
