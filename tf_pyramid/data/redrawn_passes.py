"""Accuracy over K re-drawn evaluation passes (paper 5.1, Figure 4: mean of K = 20 evaluations).

The MNIST pipelines re-draw digit positions, noise and texture on every pass over the dataset, so
one number from one pass mixes model quality with luck of the draw; the paper reports the mean.
"""
import numpy as np

PAPER_NUM_PASSES = 20


def evaluate_redrawn(evaluate_fn, dataset, num_passes=PAPER_NUM_PASSES):
    """Mean, spread and per-pass values of `evaluate_fn(dataset)` over `num_passes` passes.

    `evaluate_fn` iterates `dataset` once and returns a float or a dict of floats (e.g. accuracy
    per exit level). Returns `{"mean": ..., "std": ..., "min": ..., "max": ..., "values": [...],
    "num_passes": K}` where each entry is a float, or a dict of floats for a dict result; `std` is
    the sample standard deviation (ddof=1; 0 for one pass).
    """
    if int(num_passes) < 1:
        raise ValueError(f"num_passes must be a positive integer; got {num_passes!r}.")
    results = [evaluate_fn(dataset) for _ in range(int(num_passes))]
    if isinstance(results[0], dict):
        keys = list(results[0])
        per_key = {k: _summary([float(r[k]) for r in results]) for k in keys}
        summary = {stat: {k: per_key[k][stat] for k in keys}
                   for stat in ("mean", "std", "min", "max", "values")}
    else:
        summary = _summary([float(r) for r in results])
    summary["num_passes"] = len(results)
    return summary


def _summary(values):
    values = np.asarray(values, np.float64)
    return {"mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "min": float(values.min()), "max": float(values.max()), "values": values.tolist()}
