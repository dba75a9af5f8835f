r"""Evaluators on a trained (or checkpointed) model: per-level figures by default.

  python -m tf_pyramid.evaluate --model_dir=DIR [--policy=threshold|sample|topk:K] [--levels=N]
      [--eval_split=validation] [--checkpoint=PATH] [--eval_passes=K] [--json_out=FILE]
      [--evaluators=per_level,anytime_sweep,attention_quality] [--anytime_thresholds=0,0.9,1.01]

Loads DIR/model.keras (or, if absent or with --checkpoint / --use_checkpoint, the latest
checkpoint of DIR/checkpoints), reads the data settings from DIR/config.json (each overridable)
and prints `{"levels": [{"level": 1, "accuracy": ..., "mean_locations": ..., "mean_macs": ...}]}`.
With --evaluators, each evaluator's result is added under its name (the per-level figures stay
at the top level when per_level is listed), as in metrics.json. `--levels=N` runs the model's
modules with N levels (input side b * 2**(N-1)): module weights are depth independent.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training run directory (or a .keras file).")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix in DIR/checkpoints to evaluate.")
flags.DEFINE_boolean("use_checkpoint", False, "Evaluate the latest checkpoint even when "
                     "model.keras exists.")
flags.DEFINE_string("policy", None, "Attention policy: threshold, sample or topk:K (default: the "
                    "run's --policy).")
flags.DEFINE_integer("levels", None, "Evaluate with this many levels (default: as trained).")
flags.DEFINE_string("eval_split", None, "Split (default: the run's --eval_split, else "
                    "validation).")
flags.DEFINE_string("dataset", None, "Override the run's dataset.")
flags.DEFINE_string("variant", None, "Override the run's MNIST variant.")
flags.DEFINE_string("source", None, "Override the run's MNIST source.")
flags.DEFINE_enum("mnist_input", None, ["standardized", "centered", "unit", "symmetric"],
                  "Override the run's MNIST input range (a bare .keras file: the one it was "
                  "trained with).")
flags.DEFINE_string("data_dir", None, "Override the run's data_dir.")
flags.DEFINE_integer("batch_size", None, "Evaluation batch size.")
flags.DEFINE_integer("eval_passes", None, "Passes averaged (MNIST re-draws positions, noise and "
                     "texture each pass; the paper averages 20); default: the run's "
                     "--eval_passes, else 1.", lower_bound=1)
flags.DEFINE_integer("seed", None, "Seed of the evaluation input pipeline (default: the run's "
                     "--seed).")
flags.DEFINE_boolean("allow_incomplete", None, "Accept a pass that read fewer examples than the "
                     "split holds (damaged records or files); default: the run's setting, which "
                     "refuses it.")
flags.DEFINE_list("evaluators", None, "Evaluators to run (comma separated): per_level, "
                  "anytime_sweep, attention_quality; default: the per-level figures only.")
flags.DEFINE_list("anytime_thresholds", None, "Thresholds of the anytime_sweep evaluator "
                  "(default: the run's --anytime_thresholds).")
flags.DEFINE_string("json_out", None, "Also write the JSON here.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
    if not FLAGS.model_dir:
        print("Error: --model_dir is required (a training run directory or a .keras file).",
              file=sys.stderr)
        return 2
    from tf_pyramid.runs import files  # noqa: PLC0415  (gfile: gs://, hdfs://, ... too)
    model_dir = files.absolute(os.path.expanduser(FLAGS.model_dir))
    if not files.exists(model_dir):
        print(f"Error: --model_dir={FLAGS.model_dir} does not exist.", file=sys.stderr)
        return 2
    from tf_pyramid import evaluators  # noqa: PLC0415
    try:  # usage errors before any model or data is loaded
        names = None if FLAGS.evaluators is None else evaluators.check_names(FLAGS.evaluators)
    except evaluators.UnknownEvaluatorError as error:
        print(f"Error: --evaluators: {error}", file=sys.stderr)
        return 2
    try:
        thresholds = [float(t) for t in FLAGS.anytime_thresholds or ()]
    except ValueError:
        print("Error: --anytime_thresholds takes numbers separated by commas, e.g. "
              f"--anytime_thresholds=0,0.9,1.01; got {','.join(FLAGS.anytime_thresholds)}.",
              file=sys.stderr)
        return 2
    from tf_pyramid.evaluators import finished_run  # noqa: PLC0415
    try:
        result = finished_run.evaluate_run(
            model_dir, policy=FLAGS.policy, levels=FLAGS.levels, split=FLAGS.eval_split,
            checkpoint=FLAGS.checkpoint, use_checkpoint=FLAGS.use_checkpoint,
            num_passes=FLAGS.eval_passes, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
            dataset=FLAGS.dataset, variant=FLAGS.variant, source=FLAGS.source,
            mnist_input=FLAGS.mnist_input,
            data_dir=FLAGS.data_dir and os.path.expanduser(FLAGS.data_dir),
            allow_incomplete=FLAGS.allow_incomplete, evaluators=names,
            anytime_thresholds=thresholds or None)
    except (ValueError, FileNotFoundError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if FLAGS.json_out:
        files.write_text(FLAGS.json_out, text + "\n")
        logging.info("Wrote %s", FLAGS.json_out)
    return 0


def run():
    """Entry point of the console script (setup.cfg)."""
    app.run(main)


if __name__ == "__main__":
    run()
