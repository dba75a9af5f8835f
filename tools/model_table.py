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


def _count(variables):
    return int(sum(int(v.numpy().size) for v in variables))


def model_table(name, levels=None):
    """A dict: model facts, and per module `{"params": ..., "macs": ...}`, and totals."""
    import tf_pyramid  # noqa: imported late so that --help is instant

    model = tf_pyramid.build_model(name, levels=levels)
    costs = model.module_costs()
    if isinstance(model, tf_pyramid.PyramidClassifier):
        modules = {
            "feature_extraction": model.feature_extraction,
            "location": model.location_module,
            "aggregation": model.aggregation_module,
            "merging": model.merging_module,
            "classification": model.classification_module,
        }
        rows = {key: {"params": _count(layer.trainable_variables), "macs": costs[key]}
                for key, layer in modules.items()}
        kind, macs_unit = "pyramid", "per application"
    else:
        rows = {
            "feature_extraction": {"params": _count(model.feature_extraction.trainable_variables),
                                   "macs": costs["feature_extraction"]},
            "fully_connected": {"params": _count([v for layer in model.hidden
                                                  for v in layer.trainable_variables]),
                                "macs": costs["fully_connected"]},
            "classification": {"params": _count(model.classification_module.trainable_variables),
                               "macs": costs["classification"]},
        }
        kind, macs_unit = "baseline", "per image"
    total = {"params": sum(r["params"] for r in rows.values()),
             "macs": sum(r["macs"] for r in rows.values())}
    assert total["params"] == _count(model.trainable_variables)
    return {"model": name, "kind": kind,
            "levels": tf_pyramid.modeling.levels_for_resolution(name, model.input_size),
            "input_size": model.input_size, "macs_unit": macs_unit, "modules": rows,
            "total": total}


def format_table(table):
    lines = [f"{table['model']} ({table['kind']}, input {table['input_size']} px"
             + (f", {table['levels']} levels" if table["kind"] == "pyramid" else "")
             + f"; MACs {table['macs_unit']})",
             f"{'module':<20}{'params':>14}{'MACs':>18}"]
    for key, row in list(table["modules"].items()) + [("total", table["total"])]:
        lines.append(f"{key:<20}{row['params']:>14,}{row['macs']:>18,}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a tf_pyramid.build_model name")
    parser.add_argument("--levels", type=int, default=None, help="processing levels L")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        table = model_table(args.model, args.levels)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(table, indent=2) if args.json else format_table(table))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
