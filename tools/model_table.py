"""Parameters and MACs of every module of a model (compare with paper Tables 1-5).

    python tools/model_table.py --model imagenet_m2 [--levels 4] [--json]

For pyramid models MACs are per application (per patch for FE, per grid for location /
aggregation / merging, per prediction for classification). For baselines they are per image at the
input side `b * 2**(levels-1)`.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a tf_pyramid.build_model name")
    parser.add_argument("--levels", type=int, default=None, help="processing levels L")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    from tf_pyramid.modeling import module_table  # imported late so that --help is instant
    try:
        table = module_table.module_table(args.model, args.levels)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(table, indent=2) if args.json else module_table.format_module_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
