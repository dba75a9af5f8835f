"""A seeded MNIST study's figures (tools/reproduce_mnist.py): per-epoch validation curves from
a run's train.log, steps to a target accuracy, the summary over seeds and its table. No
TensorFlow: plain files and numbers."""
import math
import os
import re

VALIDATION_LINE = re.compile(r"Epoch (\d+) validation \([^)]*\): (.*)$")


def validation_curve(directory):
    """Per-epoch validation accuracy of the last level, from the run's train.log (the trainer's
    "Epoch E validation (split): level_L_accuracy A, ..." lines; a resumed run's later line for
    an epoch wins): [accuracy of epoch 1, 2, ...], None where an epoch has no line."""
    path = os.path.join(directory, "train.log")
    if not os.path.exists(path):
        return []
    by_epoch = {}
    with open(path, errors="replace") as f:
        for line in f:
            match = VALIDATION_LINE.search(line.rstrip())
            if not match:
                continue
            scalars = dict(item.rsplit(" ", 1) for item in match.group(2).split(", ")
                           if " " in item)
            levels = [int(k.split("_")[1]) for k in scalars
                      if k.startswith("level_") and k.endswith("_accuracy")]
            if levels:
                by_epoch[int(match.group(1))] = float(scalars[f"level_{max(levels)}_accuracy"])
    return [by_epoch.get(epoch) for epoch in range(1, max(by_epoch, default=0) + 1)]


def steps_to(curve, steps_per_epoch, target):
    """Training steps until the first epoch whose validation accuracy reaches `target`, or
    None when none does."""
    for epoch, accuracy in enumerate(curve, start=1):
        if accuracy is not None and accuracy >= target:
            return epoch * steps_per_epoch
    return None


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(rows):
    """One entry per configuration (variant, model, resolution, c_t, scratch / gradual): mean and
    sample standard deviation over its seeds of the accuracy, n_c and steps to the target
    (runs that never reached it counted in `never_reached`), in plan order."""
    groups = {}
    for row in rows:
        key = (row["variant"], row["name"])
        groups.setdefault(key, []).append(row)
    summary = []
    for (variant, name), members in groups.items():
        first = members[0]
        accuracy, accuracy_std = _mean_std([m["accuracy"] for m in members])
        n_c, n_c_std = _mean_std([m["n_c"] for m in members])
        n_c_threshold, _ = _mean_std([m.get("n_c_threshold") for m in members])
        steps, steps_std = _mean_std([m.get("steps_to_target") for m in members])
        summary.append({
            key: first[key] for key in ("name", "experiment", "model", "pair", "resolution",
                                        "c_t", "gradual", "levels", "split", "passes")} | {
            "variant": variant, "seeds": len(members),
            "seed_list": [m.get("seed") for m in members],
            "accuracies": [m["accuracy"] for m in members],
            "accuracy": accuracy, "accuracy_std": accuracy_std,
            "pass_std": _mean_std([m.get("accuracy_std") for m in members])[0],
            "n_c": n_c, "n_c_std": n_c_std, "n_c_threshold": n_c_threshold,
            "macs": _mean_std([m["macs"] for m in members])[0],
            "steps_to_target": steps, "steps_to_target_std": steps_std,
            "never_reached": sum(m.get("steps_to_target") is None for m in members),
            "loss_spikes": sum(len(m.get("loss_spikes") or []) for m in members),
            "attention": first.get("attention")})
    return summary


def _plus_minus(mean, std, digits=4):
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def markdown(rows, header, target_accuracy=0.9):
    """The summary table: accuracy as mean ± std over the seeds (± over the evaluation passes
    when one seed ran)."""
    lines = [header, "",
             "| model | px | c_t | init | seeds | accuracy | n_c (threshold) | MACs / image | "
             f"steps to {target_accuracy:g} | loss spikes | ink in attended cells vs random "
             "cells, per level |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["seeds"] > 1:
            accuracy = _plus_minus(row["accuracy"], row["accuracy_std"]) + " (seeds)"
        else:
            accuracy = _plus_minus(row["accuracy"], row.get("pass_std")) + (
                " (passes)" if row.get("pass_std") is not None else "")
        n_c = f"{row['n_c']:.2f}" + (f" ({row['n_c_threshold']:.2f})"
                                     if row.get("n_c_threshold") is not None else "")
        steps = _plus_minus(row["steps_to_target"], row["steps_to_target_std"], 0)
        if row["never_reached"]:
            steps += f" ({row['never_reached']} never)"
        attention = "; ".join(f"L{a['level']}: {a['attended_share']:.2f} vs "
                              f"{a['random_share']:.2f}" for a in row["attention"] or [])
        lines.append(f"| {row['model']} | {row['resolution']} | "
                     f"{'' if row['c_t'] is None else format(row['c_t'], 'g')} | "
                     f"{'gradual' if row['gradual'] else 'scratch'} | {row['seeds']} | "
                     f"{accuracy} | {n_c} | {row['macs'] / 1e6:.2f} M | {steps} | "
                     f"{row['loss_spikes']} | {attention or '-'} |")
    return "\n".join(lines) + "\n"
