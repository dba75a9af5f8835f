"""Attention quality on MNIST: how much of the digit's ink the attended cells hold.

Where the digit is known (the MNIST variants paste it at a drawn position), a location module
that has learned something puts its cells on the digit. Per pyramid level l >= 2 this measures,
per image, the share of the digit's ink (its canvas alone, downscaled like the model input) that
lies inside the union of the attended cells of level l, in input pixels; and beside it the share
that random attention would get with the same cells per parent: for each attended patch of level
l-1 with k attended children, k of its 9 cells drawn uniformly without replacement. The random
share is its exact expectation (no sampling): a pixel that m of a parent's 9 cells cover is
missed by k random cells with probability C(9-m, k) / C(9, k), independently across parents.
"""
import math
import os

import numpy as np

from tf_pyramid.data import mnist
from tf_pyramid.runs import checkpoints
from tf_pyramid.runs import load_run_model, read_config
from tf_pyramid.runs.run_directory import CHECKPOINT_DIR

NUM_CELLS = 9
GRID_SIZE = 3


def _coverage(side, boxes, size):
    """float [side, side]: 1 inside the union of the `size` x `size` boxes at top-lefts `boxes`."""
    covered = np.zeros([side, side], np.float32)
    for y, x in boxes:
        covered[y:y + size, x:x + size] = 1.0
    return covered


def _shares(ink, covered):
    """Per image: ink inside `covered` over all ink (0 for an image without ink)."""
    total = ink.reshape(len(ink), -1).sum(axis=1)
    inside = (ink * covered).reshape(len(ink), -1).sum(axis=1)
    return np.where(total > 0, inside / np.maximum(total, 1e-12), 0.0)


def attended_share(ink, image_index, offset, patch_size):
    """Share of each image's ink inside the union of its attended patches at one level.

    Args:
        ink: float [B, S, S] ink maps (S: input side).
        image_index: int [P] image of each attended patch.
        offset: int [P, 2] top-left of each patch, in input pixels.
        patch_size: side of a patch, in input pixels.
    Returns float [B].
    """
    ink = np.asarray(ink, np.float64)
    batch, side = ink.shape[0], ink.shape[1]
    image_index, offset = np.asarray(image_index), np.asarray(offset).reshape(-1, 2)
    covered = np.stack([_coverage(side, offset[image_index == b], patch_size)
                        for b in range(batch)]) if batch else np.zeros_like(ink)
    return _shares(ink, covered)


def random_share(ink, parent_image, parent_offset, child_counts, cell_size):
    """Expected share of each image's ink under random attention, exactly.

    Args:
        ink: float [B, S, S] ink maps.
        parent_image: int [Q] image of each parent patch (the attended patches of level l-1).
        parent_offset: int [Q, 2] top-left of each parent, in input pixels.
        child_counts: int [Q] attended children of each parent (0..9), kept by the random draw.
        cell_size: side of a cell in input pixels (half the parent's side; the 3 x 3 grid of
            cells overlaps by half: cells start at 0, cell_size / 2 and cell_size).
    Returns float [B].
    """
    ink = np.asarray(ink, np.float64)
    batch, side = ink.shape[0], ink.shape[1]
    parent_image = np.asarray(parent_image)
    parent_offset = np.asarray(parent_offset).reshape(-1, 2)
    child_counts = np.asarray(child_counts)
    if np.any((child_counts < 0) | (child_counts > NUM_CELLS)):
        raise ValueError(f"child_counts must lie in [0, {NUM_CELLS}]; got {child_counts}.")
    if cell_size % 2:
        raise ValueError(f"cell_size must be even (cells overlap by half); got {cell_size}.")
    step = cell_size // 2
    missed = np.ones([batch, side, side])
    for image, (y, x), k in zip(parent_image, parent_offset, child_counts):
        if k == 0:
            continue
        times_covered = np.zeros([side, side], np.int64)
        for row in range(GRID_SIZE):
            for col in range(GRID_SIZE):
                top, left = y + row * step, x + col * step
                times_covered[top:top + cell_size, left:left + cell_size] += 1
        # P(no drawn cell covers the pixel) = C(9 - m, k) / C(9, k), m = cells covering it.
        miss = np.array([math.comb(NUM_CELLS - m, k) for m in range(NUM_CELLS + 1)],
                        np.float64) / math.comb(NUM_CELLS, k)
        missed[image] *= miss[times_covered]
    return _shares(ink, 1.0 - missed)


def level_shares(model, images, ink, policy=None):
    """One traversal of `images`; per level 2..L: attended share [B], random share [B] and
    attended cells per image [B], as a list of dicts (index 0 = level 2)."""
    ink = np.asarray(ink, np.float64)
    ink = ink[..., 0] if ink.ndim == 4 else ink
    if ink.shape[1] != model.input_size:
        raise ValueError(f"Ink maps must be {model.input_size} px like the model input; got "
                         f"{ink.shape[1]} px.")
    trace = model.traverse(images, training=False, policy=policy)
    results = []
    for level in range(1, len(trace["image_index"])):
        scale = model.input_size // (model.base_resolution * 2 ** level)  # input px per level px
        size = model.base_resolution * scale
        image_index = trace["image_index"][level].numpy()
        offset = trace["offset"][level].numpy() * scale
        parent_index = trace["image_index"][level - 1].numpy()
        parent_offset = trace["offset"][level - 1].numpy() * 2 * scale
        counts = np.bincount(trace["parent"][level].numpy(), minlength=len(parent_index))
        results.append({
            "attended": attended_share(ink, image_index, offset, size),
            "random": random_share(ink, parent_index, parent_offset, counts, size),
            "cells": np.bincount(image_index, minlength=len(ink)).astype(np.float64)})
    return results


def measure_shares(model, batches, policy=None):
    """Means over every image of `batches` ((images, labels, ink) tuples; e.g. several passes
    of `mnist.evaluation_examples_with_ink`): {"levels": [{"level", "attended_share",
    "random_share", "margin", "mean_cells"}, ...], "images": N}."""
    sums, count = None, 0
    for batch in batches:
        images, ink = batch[0], batch[-1]
        per_level = level_shares(model, images, ink, policy)
        if sums is None:
            sums = [{key: 0.0 for key in entry} for entry in per_level]
        for total, entry in zip(sums, per_level):
            for key, values in entry.items():
                total[key] += float(np.sum(values))
        count += len(ink)
    if not count:
        raise ValueError("No images to measure attention on.")
    levels = []
    for level, total in enumerate(sums or [], start=2):
        attended, random = total["attended"] / count, total["random"] / count
        levels.append({"level": level, "attended_share": attended, "random_share": random,
                       "margin": attended - random, "mean_cells": total["cells"] / count})
    return {"levels": levels, "images": count}


def why_not_measurable(config, model):
    """Why attention quality cannot be measured for this run ('' when it can): it needs the
    digit's position (an MNIST run) and attention (a pyramid model)."""
    if config.data.dataset != "mnist":
        return (f"attention quality needs the digit's position: an MNIST run; this run trained "
                f"on {config.data.dataset!r}.")
    if not getattr(model, "has_attention", False):
        return f"model {model.name!r} has no attention (a baseline)."
    return ""


def measure_model(model, config, passes=1, split=None, policy=None, batch_size=None, seed=0):
    """`measure_shares` of `model` on the evaluation split of an MNIST run's `config`
    (`ExperimentConfig`), with positions (and noise, texture) re-drawn on each of `passes`
    passes. Raises ValueError saying why for a run it does not apply to."""
    reason = why_not_measurable(config, model)
    if reason:
        raise ValueError(reason[0].upper() + reason[1:])
    if passes < 1:
        raise ValueError(f"passes must be >= 1; got {passes}.")
    # The evaluation pipeline (with the digits' ink maps) in the model's own value range; the
    # pipeline's images equal what the model's layer makes of the same canvases.
    preprocessor = getattr(model, "preprocessor", None)
    value_range = preprocessor.value_range if preprocessor is not None else mnist.VALUE_RANGE
    split = split or config.evaluation.split
    examples = mnist.evaluation_examples_with_ink(
        split, resolution=model.input_size,
        batch_size=batch_size or config.evaluation.batch_size or config.schedule.batch_size,
        variant=config.data.variant, source=config.data.source, data_dir=config.data.data_dir,
        texture=config.data.texture, seed=seed, value_range=value_range)
    policy = policy or config.model.policy
    batches = (batch for _ in range(passes) for batch in examples)
    result = measure_shares(model, batches, policy)
    result.update({"split": split, "passes": passes, "policy": policy or model.policy})
    return result


def measure_run(model_dir, passes=1, split=None, policy=None, batch_size=None, seed=0,
                checkpoint=None):
    """`measure_model` of an MNIST run directory's model (config.json says the data).
    `checkpoint`: a checkpoint prefix of the run (e.g. `checkpoints/ckpt-310`) to measure
    instead of the final model, which shows when during training the margin appears
    (`run_checkpoints` lists them)."""
    config = read_config(model_dir)
    if config is None:
        raise FileNotFoundError(f"{model_dir}: no config.json (not a training run directory).")
    if config.data.dataset != "mnist":
        raise ValueError(f"Attention quality needs the digit's position: an MNIST run; "
                         f"{model_dir} trained on {config.data.dataset!r}.")
    if passes < 1:
        raise ValueError(f"passes must be >= 1; got {passes}.")
    model, _ = load_run_model(model_dir, checkpoint=checkpoint)
    if not getattr(model, "has_attention", False):
        raise ValueError(f"{model_dir}: model {model.name!r} has no attention (a baseline).")
    result = measure_model(model, config, passes=passes, split=split, policy=policy,
                           batch_size=batch_size, seed=seed)
    result.update({"model_dir": str(model_dir), "checkpoint": checkpoint,
                   "step": checkpoints.checkpoint_number(checkpoint) if checkpoint else None})
    return result


def run_checkpoints(model_dir):
    """The checkpoint prefixes of a run directory, oldest (fewest steps) first."""
    found, _ = checkpoints.find_checkpoints(os.path.join(model_dir, CHECKPOINT_DIR))
    return sorted(found, key=checkpoints.checkpoint_number)


def format_table(result):
    """A markdown table of a `measure_shares` / `measure_run` result."""
    lines = ["| level | attended share | random share | margin | cells |",
             "|---|---|---|---|---|"]
    for entry in result["levels"]:
        lines.append(f"| {entry['level']} | {entry['attended_share']:.3f} | "
                     f"{entry['random_share']:.3f} | {entry['margin']:+.3f} | "
                     f"{entry['mean_cells']:.2f} |")
    return "\n".join(lines)


def format_checkpoint_table(results):
    """A markdown table of several `measure_run` results (one per checkpoint), by step."""
    lines = ["| step | level | attended share | random share | margin | cells |",
             "|---|---|---|---|---|---|"]
    for result in results:
        for entry in result["levels"]:
            lines.append(f"| {result.get('step')} | {entry['level']} | "
                         f"{entry['attended_share']:.3f} | {entry['random_share']:.3f} | "
                         f"{entry['margin']:+.3f} | {entry['mean_cells']:.2f} |")
    return "\n".join(lines)
