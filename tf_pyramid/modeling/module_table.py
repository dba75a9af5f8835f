"""Parameters and MACs of every module of a model (compare with paper Tables 1-5)."""
from tf_pyramid.modeling.architectures import build_model, is_pyramid, levels_for_resolution


def _count(variables):
    return int(sum(int(v.numpy().size) for v in variables))


def module_table(name, levels=None):
    """A dict: model facts, per module `{"params": ..., "macs": ...}`, and totals.

    MACs are per application for pyramid models (per patch for FE, per grid for location /
    aggregation / merging, per prediction for classification) and per image at the input side
    `b * 2**(levels-1)` for baselines.
    """
    model = build_model(name, levels=levels)
    costs = model.module_costs()
    rows = {key: {"params": _count([v for layer in layers for v in layer.trainable_variables]),
                  "macs": costs[key]}
            for key, layers in model.modules().items()}
    total = {"params": sum(r["params"] for r in rows.values()),
             "macs": sum(r["macs"] for r in rows.values())}
    if total["params"] != _count(model.trainable_variables):
        raise AssertionError(f"{name}: modules() misses trainable variables.")
    pyramid = is_pyramid(name)
    return {"model": name, "kind": "pyramid" if pyramid else "baseline",
            "levels": levels_for_resolution(name, model.input_size),
            "input_size": model.input_size,
            "macs_unit": "per application" if pyramid else "per image", "modules": rows,
            "total": total}


def format_module_table(table):
    """The table as aligned text."""
    lines = [f"{table['model']} ({table['kind']}, input {table['input_size']} px"
             + (f", {table['levels']} levels" if table["kind"] == "pyramid" else "")
             + f"; MACs {table['macs_unit']})",
             f"{'module':<20}{'params':>14}{'MACs':>18}"]
    for key, row in list(table["modules"].items()) + [("total", table["total"])]:
        lines.append(f"{key:<20}{row['params']:>14,}{row['macs']:>18,}")
    return "\n".join(lines)
