"""The `anytime_sweep` evaluator: per-image early exit at each of a list of thresholds.

`model.anytime(images, threshold)` stops each image at the first level whose top softmax
probability reaches the threshold (0: every image after level 1; above 1: none early). Sweeping
the threshold traces the accuracy-vs-cost curve of an anytime classifier (the data of
tools/plot_tradeoff.py): per threshold, the accuracy, the mean MACs per image (exit tests
included), the mean levels used and attended cells, and the share of images stopping at each
level. Every threshold sees the same images (one pass; each batch is evaluated at all of them).
"""
import numpy as np
import tensorflow as tf

from tf_pyramid.data.completeness import check_complete
from tf_pyramid.evaluators import base


def _name(threshold):
    return f"{threshold:g}"


class AnytimeSweep(base.Evaluator):
    """`{"policy", "split", "num_examples", "points": [{"threshold", "accuracy", "mean_macs",
    "mean_levels_used", "mean_locations", "level_shares"}, ...]}` on `--eval_split` for the
    thresholds `--anytime_thresholds` (ascending)."""

    name = "anytime_sweep"

    def __init__(self, config):
        super().__init__(config)
        thresholds = [float(t) for t in config.evaluation.anytime_thresholds or ()]
        if not thresholds or not all(np.isfinite(thresholds)):
            raise ValueError("--anytime_thresholds needs finite numbers, e.g. 0,0.5,0.9,1.01; "
                             f"got {config.evaluation.anytime_thresholds!r}.")
        self.thresholds = sorted(set(thresholds))
        self._steps = {}

    def _step(self, model, strategy, policy):
        """One compiled step per (model, policy); the threshold is a tensor argument."""
        key = (id(model), id(strategy), policy)
        if key not in self._steps:
            levels = model.exit_levels

            def replica_fn(images, labels, threshold):
                labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)

                def compute():
                    out = model.anytime(images, threshold, policy=policy)
                    correct = tf.cast(tf.equal(out["classes"], labels), tf.float64)
                    used = tf.one_hot(out["levels_used"] - 1, levels, dtype=tf.float64)
                    return (tf.reduce_sum(correct), tf.reduce_sum(tf.cast(out["macs"], tf.float64)),
                            tf.reduce_sum(tf.cast(out["num_locations"], tf.float64)),
                            tf.reduce_sum(used, 0), tf.cast(tf.size(labels), tf.float64))

                def empty():  # a replica without examples at the end of a distributed pass
                    zero = tf.zeros([], tf.float64)
                    return zero, zero, zero, tf.zeros([levels], tf.float64), zero

                return tf.cond(tf.shape(images)[0] > 0, compute, empty)

            @tf.function(reduce_retracing=True)
            def step(batch, threshold):
                sums = strategy.run(replica_fn, args=(batch[0], batch[1], threshold))
                return [strategy.reduce("SUM", s, axis=None) for s in sums]

            self._steps[key] = step
        return self._steps[key]

    def run(self, model, strategy, data):
        c = self.config
        policy = (c.model.policy or "threshold") if model.exit_levels > 1 else None
        step = self._step(model, strategy, policy)
        dataset, info = data.dataset(c.evaluation.split)
        totals = [None] * len(self.thresholds)
        for batch in dataset:
            for index, threshold in enumerate(self.thresholds):
                sums = [np.asarray(s, np.float64)
                        for s in step(batch, tf.constant(threshold, tf.float32))]
                totals[index] = sums if totals[index] is None else [
                    t + s for t, s in zip(totals[index], sums)]
        count = float(totals[0][-1]) if totals[0] is not None else 0.0
        if not count:
            raise ValueError("The evaluation dataset is empty.")
        result = {"policy": policy, "split": c.evaluation.split, "num_examples": int(count),
                  "points": []}
        for threshold, (correct, macs, locations, used, _) in zip(self.thresholds, totals):
            shares = used / count
            result["points"].append({
                "threshold": threshold, "accuracy": float(correct / count),
                "mean_macs": float(macs / count),
                "mean_levels_used": float(np.dot(shares, np.arange(1, len(shares) + 1))),
                "mean_locations": float(locations / count),
                "level_shares": [float(s) for s in shares]})
        if info is not None:
            incomplete = check_complete(info, count, allow_incomplete=c.evaluation.allow_incomplete)
            if incomplete:
                result["incomplete"] = incomplete
        return result

    def scalars(self, result):
        logs = {}
        for point in result["points"]:
            name = _name(point["threshold"])
            logs[f"threshold_{name}_accuracy"] = point["accuracy"]
            logs[f"threshold_{name}_mean_macs"] = point["mean_macs"]
            logs[f"threshold_{name}_mean_levels_used"] = point["mean_levels_used"]
        return logs
