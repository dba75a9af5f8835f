"""Accuracy vs. MACs per image (paper Fig. 4 and 6) from per-level metrics JSONs.

A results file has the schema a training run writes to `DIR/metrics.json`:
  {"levels": [{"level": 1, "accuracy": 0.93, "mean_locations": 0.0, "mean_macs": 960256}, ...]}
(optionally with a top-level "label" or "model"). A run directory may be given instead of the file.
Pyramid models are drawn as a line through their levels, each point labelled with the mean number
of attended cells; baselines (a single entry, or a model name containing "_bl") as one star.
Where the file also holds the `anytime_sweep` evaluator's result (per-image early exit at
several thresholds), that curve is drawn dashed beside it, each point labelled with its threshold.
"""
import json
import os

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tf_pyramid.configs import ExperimentConfig

DPI = 100
REQUIRED = ("accuracy", "mean_macs")


def _read_json(path):
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)


def load_results(path, label=None):
    """One curve: {"label", "baseline", "points": [(level, macs, accuracy, mean_locations)]}."""
    path = os.fspath(path)  # any tf.io.gfile path: local, gs://, ...
    directory = path if tf.io.gfile.isdir(path) else None
    file = os.path.join(path, "metrics.json") if directory else path
    if not tf.io.gfile.exists(file):
        raise FileNotFoundError(f"No results file at {file}.")
    data = _read_json(file)
    entries = data.get("levels") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{file}: expected {{\"levels\": [{{\"level\": 1, \"accuracy\": ..., "
                         "\"mean_locations\": ..., \"mean_macs\": ...}, ...]}.")
    points = []
    for index, entry in enumerate(entries):
        missing = [key for key in REQUIRED if key not in entry]
        if missing:
            raise ValueError(f"{file}: levels[{index}] lacks {missing}.")
        points.append((int(entry.get("level", index + 1)), float(entry["mean_macs"]),
                       float(entry["accuracy"]), entry.get("mean_locations")))
    points.sort()
    run_dir = directory or os.path.dirname(file if "://" in file else os.path.abspath(file))
    config_path = os.path.join(run_dir, "config.json")
    config = ExperimentConfig.from_dict(_read_json(config_path) if tf.io.gfile.exists(config_path)
                                        else {})
    model_name = str(data.get("model") or config.model.name or "")
    if label is None:
        label = data.get("label")
    if label is None and model_name:
        resolution = config.model.resolution
        label = model_name + (f" {resolution}px" if resolution else "")
    if label is None:
        stem = os.path.splitext(os.path.basename(file))[0]
        label = os.path.basename(run_dir) if stem == "metrics" else stem
    baseline = len(points) == 1 or "_bl" in model_name
    curve = {"label": str(label), "baseline": baseline, "points": points, "file": file}
    sweep = data.get("anytime_sweep") if isinstance(data, dict) else None
    if isinstance(sweep, dict) and sweep.get("points"):
        curve["anytime"] = _sweep_curve(sweep, f"{label} anytime", file)
    return curve


def _sweep_curve(sweep, label, file):
    """The curve of an `anytime_sweep` result: one point per threshold, by cost."""
    points = []
    for index, entry in enumerate(sweep["points"]):
        missing = [key for key in ("threshold", *REQUIRED) if key not in entry]
        if missing:
            raise ValueError(f"{file}: anytime_sweep.points[{index}] lacks {missing}.")
        points.append((float(entry["mean_macs"]), float(entry["accuracy"]),
                       float(entry["threshold"])))
    points.sort()
    return {"label": label, "baseline": False, "style": "anytime", "file": file,
            "points": [(i + 1, macs, accuracy, None) for i, (macs, accuracy, _) in
                       enumerate(points)],
            "annotations": [f"{threshold:g}" for _, _, threshold in points]}


def _format_macs(value, _=None):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:g}{unit}"
    return f"{value:g}"


def tradeoff_figure(results, width_px=900, height_px=600, log_x=True, title=None, anytime=True):
    """A `Figure` (exactly width_px x height_px) of accuracy vs. MACs per image; with `anytime`,
    each result's early-exit sweep (if it has one) dashed, in the result's colour."""
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawn = [(r, i) for i, r in enumerate(results)]
    if anytime:
        drawn += [(r["anytime"], i) for i, r in enumerate(results) if r.get("anytime")]
    percent = all(p[2] <= 1.0 for r, _ in drawn for p in r["points"])
    for result, index in drawn:
        color = f"C{index % 10}"
        levels, macs, accuracy, locations = zip(*result["points"])
        accuracy = np.asarray(accuracy) * (100.0 if percent else 1.0)
        if result["baseline"]:
            ax.plot(macs, accuracy, linestyle="none", marker="*", markersize=13, color=color,
                    label=result["label"])
            continue
        is_sweep = result.get("style") == "anytime"
        ax.plot(macs, accuracy, marker="s" if is_sweep else "o", color=color,
                linestyle="--" if is_sweep else "-", label=result["label"])
        texts = result.get("annotations") or [
            f"L{level}" if n is None else f"{float(n):.1f}" for level, n in zip(levels, locations)]
        for text, x, y in zip(texts, macs, accuracy):
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 5), fontsize=8,
                        color=color)
    if log_x:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_format_macs))
    ax.set_xlabel("MACs per image" + (" (log scale)" if log_x else ""))
    ax.set_ylabel("accuracy (%)" if percent else "accuracy")
    ax.set_title(title or "Accuracy vs. cost (point labels: mean attended cells; dashed: early "
                 "exit, labelled by threshold)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
