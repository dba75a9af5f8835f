"""Evaluators: measurements of a trained model, each a plug-in chosen by name.

The experiment config lists them (`--evaluators=per_level,anytime_sweep`); the trainer runs them
at its schedule (`--eval_every_epochs`) and at the end, `python -m tf_pyramid.evaluate` on a
finished run, and `metrics.json` holds each result under its name. One module per evaluator:

* `per_level`: accuracy, attended cells, MACs and cross-entropy after every exit level, under
  the attention policy, averaged over re-drawn passes (also the top level of metrics.json);
* `anytime_sweep`: per-image early exit (`model.anytime`) at a list of confidence thresholds:
  accuracy, mean MACs and levels used, the accuracy-vs-cost curve of tools/plot_tradeoff.py;
* `attention_quality`: MNIST runs only: the share of the digit's ink inside the attended cells
  against random cells (`tf_pyramid.analysis.attention_quality`).

This module only names them (a plug-in's module is imported when one is created), so flag checks
can use it cheaply. Sits above runs, modeling, data, configs and analysis; training imports it.
"""
import importlib

# name -> "module:class" of its plug-in, imported on first use.
REGISTRY = {
    "per_level": "tf_pyramid.evaluators.per_level:PerLevel",
    "anytime_sweep": "tf_pyramid.evaluators.anytime_sweep:AnytimeSweep",
    "attention_quality": "tf_pyramid.evaluators.attention_quality:AttentionQuality",
}
NAMES = tuple(sorted(REGISTRY))


class UnknownEvaluatorError(ValueError):
    """An evaluator name that is not registered; the message lists the known ones."""


def check_names(names):
    """`names` as a list of registered evaluator names (duplicates dropped, order kept).
    Raises `UnknownEvaluatorError` naming the unknown ones and listing the known ones."""
    names = [str(name).strip() for name in names or () if str(name).strip()]
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise UnknownEvaluatorError(
            f"Unknown evaluator(s) {', '.join(unknown)}; known evaluators: {', '.join(NAMES)}.")
    return list(dict.fromkeys(names))


def evaluator_class(name):
    """The plug-in class registered as `name`."""
    check_names([name])
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def create(name, config, **kwargs):
    """An evaluator by name, configured by an `ExperimentConfig` (see `base.Evaluator`)."""
    return evaluator_class(name)(config, **kwargs)


__all__ = ["NAMES", "REGISTRY", "UnknownEvaluatorError", "check_names", "create",
           "evaluator_class"]
