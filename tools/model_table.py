"""Parameters and MACs of every module of a model (compare with paper Tables 1-5).

    python tools/model_table.py --model imagenet_m2 [--levels 4] [--json]

For pyramid models MACs are per application (per patch for FE, per grid for location /
aggregation / merging, per prediction for classification). For baselines they are per image at the
input side `b * 2**(levels-1)`.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from tf_pyramid import cli  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_string("model", None, "A tf_pyramid.build_model name.", flag_values=FLAGS)
flags.DEFINE_integer("levels", None, "Processing levels L.", flag_values=FLAGS)
flags.DEFINE_boolean("json", False, "Print JSON instead of a table.", flag_values=FLAGS)


def main(argv=None):
    cli.parse_flags(FLAGS, argv)
    if not FLAGS.model:
        print("Error: --model is required (a tf_pyramid.build_model name).", file=sys.stderr)
        raise SystemExit(2)
    from tf_pyramid.modeling import module_table  # imported late so that --help is instant
    try:
        table = module_table.module_table(FLAGS.model, FLAGS.levels)
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(table, indent=2) if FLAGS.json else module_table.format_module_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
