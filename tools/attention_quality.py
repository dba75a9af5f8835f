r"""Attention quality of a trained MNIST pyramid model: per level, the share of the digit's ink
inside the attended cells, beside the expected share for random cells (same number per parent).

  python tools/attention_quality.py --model_dir=runs/mnist/m1_56_ct6 [--passes=5] [--json=OUT]
      [--split=validation] [--policy=sample] [--checkpoints=all|PREFIX,...]

Reads the run's config.json (variant, source, evaluation split, policy) and its model.keras (or
latest checkpoint); the digit positions (and noise, texture) are re-drawn on every pass. Prints a
markdown table, and the JSON with --json (use --json=- for stdout). `--checkpoints=all` measures
every checkpoint the run kept instead, oldest first (one row per checkpoint and level: when does
the margin appear? Train with --keep_checkpoints large enough to keep one per epoch).
"""
import functools
import json

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Run directory of an MNIST pyramid model.")
flags.DEFINE_integer("passes", 1, "Evaluation passes (positions re-drawn each pass).",
                     lower_bound=1)
flags.DEFINE_string("split", None, "Split (default: the run's --eval_split).")
flags.DEFINE_string("policy", None, "Attention policy (default: the run's --policy).")
flags.DEFINE_integer("batch_size", None, "Batch size (default: the run's evaluation batch).",
                     lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the positions drawn.")
flags.DEFINE_string("json", None, "Also write the result as JSON to this file ('-': stdout).")
flags.DEFINE_list("checkpoints", [], "Measure these checkpoints of the run (prefixes, e.g. "
                  "DIR/checkpoints/ckpt-310, or 'all': every one kept) instead of the final model.")
flags.mark_flag_as_required("model_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tf_pyramid.analysis import attention_quality

    measure = functools.partial(
        attention_quality.measure_run, FLAGS.model_dir, passes=FLAGS.passes, split=FLAGS.split,
        policy=FLAGS.policy, batch_size=FLAGS.batch_size, seed=FLAGS.seed)
    try:
        if FLAGS.checkpoints:
            prefixes = (attention_quality.run_checkpoints(FLAGS.model_dir)
                        if FLAGS.checkpoints == ["all"] else FLAGS.checkpoints)
            if not prefixes:
                raise FileNotFoundError(f"{FLAGS.model_dir}: no checkpoints to measure.")
            result = [measure(checkpoint=p) for p in prefixes]
            heading, table = None, attention_quality.format_checkpoint_table(result)
        else:
            result = measure()
            heading = (f"{result['model_dir']}: {result['images']} images ({result['split']}, "
                       f"{result['passes']} pass(es), policy {result['policy']})")
            table = attention_quality.format_table(result)
    except (FileNotFoundError, ValueError) as error:
        raise app.UsageError(str(error))
    text = json.dumps(result, indent=2)
    if FLAGS.json == "-":
        print(text)
        return
    if heading:
        print(heading)
    print(table)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
