"""The `per_level` evaluator: accuracy, attended cells, MACs and cross-entropy after every exit
level, under an attention policy, averaged over re-drawn passes.

One pass serves all exit levels (`level_logits`, `level_num_locations`, `level_macs`); a baseline
has one. The result is the `metrics.json` schema:
`{"levels": [{"level": 1, "accuracy": ..., "mean_locations": ..., "mean_macs": ...}, ...]}`.
`LevelStatistics` is the compiled computation (also the trainer's per-epoch validation);
`PerLevel` the plug-in (`finished_run.evaluate_run`: the same on a run directory).
"""
import numpy as np
import tensorflow as tf

from tf_pyramid.data import evaluate_redrawn
from tf_pyramid.data.completeness import check_complete
from tf_pyramid.evaluators import base

LEVEL_KEYS = ("accuracy", "mean_locations", "mean_macs")  # per-level entries of metrics.json


def batch_statistics(model, images, labels, policy=None):
    """Sums over one batch: correct [L], locations [L], macs [L], cross-entropy [L], count [].

    An empty batch (a replica left without examples at the end of a distributed pass) gives
    zeros without running the model.
    """
    levels = model.exit_levels
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)

    def compute():
        outputs = model(images, training=False, policy=policy)
        logits = outputs["level_logits"]                                        # [B, L, C]
        locations = tf.cast(outputs["level_num_locations"], tf.float32)        # [B, L]
        macs = tf.cast(outputs["level_macs"], tf.float32)
        tiled = tf.repeat(labels[:, None], levels, axis=1)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tiled), tf.float32)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(tiled, logits)
        return (tf.reduce_sum(correct, 0), tf.reduce_sum(locations, 0), tf.reduce_sum(macs, 0),
                tf.reduce_sum(cross_entropy, 0), tf.cast(tf.shape(labels)[0], tf.float32))

    def empty():
        zeros = tf.zeros([levels])
        return zeros, zeros, zeros, zeros, tf.zeros([])

    return tf.cond(tf.shape(images)[0] > 0, compute, empty)


class LevelStatistics:
    """Evaluates `model` on (distributed) batches under `strategy`, summing over replicas."""

    def __init__(self, model, strategy=None, policy=None):
        self.model = model
        self.strategy = strategy or tf.distribute.get_strategy()
        self.policy = policy
        self._steps = {}

    def _step_for(self, policy):
        """One compiled evaluation step per attention policy."""
        if policy not in self._steps:
            def replica_fn(images, labels):
                return batch_statistics(self.model, images, labels, policy)

            @tf.function(reduce_retracing=True)
            def step(batch):
                sums = self.strategy.run(replica_fn, args=(batch[0], batch[1]))
                return [self.strategy.reduce("SUM", s, axis=None) for s in sums]

            self._steps[policy] = step
        return self._steps[policy]

    def evaluate(self, dataset, num_passes=1, policy=None, data_info=None,
                 allow_incomplete=False):
        """Per-level results over `num_passes` passes of `dataset` (distributed or plain): the
        mean of the passes (`data.evaluate_redrawn`), and the accuracy's spread over them.
        `policy`: attention policy of this evaluation (default: the evaluator's).
        `data_info` (the dataset's `DatasetInfo`): then a pass that read fewer examples than the
        split holds raises `IncompleteSplitError` unless `allow_incomplete` (then the result's
        "incomplete" says what was missing)."""
        levels = range(1, self.model.exit_levels + 1)
        step = self._step_for(policy or self.policy)
        redrawn = evaluate_redrawn(lambda data: self._one_pass(step, data), dataset, num_passes)
        mean = redrawn["mean"]
        result = {"levels": [{"level": d, **{key: mean[f"{key}_{d}"] for key in LEVEL_KEYS}}
                             for d in levels],
                  "num_examples": int(mean["num_examples"]),
                  "num_passes": redrawn["num_passes"],
                  "cross_entropy": [mean[f"cross_entropy_{d}"] for d in levels]}
        if redrawn["num_passes"] > 1:
            result["accuracy_std"] = [redrawn["std"][f"accuracy_{d}"] for d in levels]
        if data_info is not None:
            incomplete = check_complete(data_info, mean["num_examples"],
                                        allow_incomplete=allow_incomplete)
            if incomplete:
                result["incomplete"] = incomplete
        return result

    @staticmethod
    def _one_pass(step, dataset):
        """`{"accuracy_1": ..., "mean_locations_1": ..., "mean_macs_1": ...,
        "cross_entropy_1": ..., ..., "num_examples": ...}` of one pass over `dataset`."""
        totals = None
        for batch in dataset:
            sums = [np.asarray(s, np.float64) for s in step(batch)]
            totals = sums if totals is None else [t + s for t, s in zip(totals, sums)]
        if totals is None or totals[-1] == 0:
            raise ValueError("The evaluation dataset is empty.")
        *per_level, count = totals
        means = {"num_examples": count}
        for key, sums in zip((*LEVEL_KEYS, "cross_entropy"), per_level):
            means.update({f"{key}_{d}": value / count for d, value in enumerate(sums, start=1)})
        return means


def scalar_logs(result, prefix=""):
    """Flat `{name: value}` of an evaluation result (for TensorBoard and the progress bar)."""
    logs = {}
    cross_entropy = result.get("cross_entropy") or [None] * len(result["levels"])
    for entry, xent in zip(result["levels"], cross_entropy):
        level = entry["level"]
        logs[f"{prefix}level_{level}_accuracy"] = entry["accuracy"]
        logs[f"{prefix}level_{level}_mean_locations"] = entry["mean_locations"]
        logs[f"{prefix}level_{level}_mean_macs"] = entry["mean_macs"]
        if xent is not None:
            logs[f"{prefix}level_{level}_cross_entropy"] = xent
    return logs


def final_policy(config, model):
    """The attention policy of a run's evaluation: the run's `--policy` for a model with
    several exit levels, None for one exit."""
    return (config.model.policy or "threshold") if model.exit_levels > 1 else None


class PerLevel(base.Evaluator):
    """Per-level figures on `--eval_split` over `--eval_passes` passes under `--policy`; with
    a sampled policy also the deterministic `threshold` figures (`"threshold"`), as the paper
    reports both. `statistics`: a `LevelStatistics` of the same model to reuse (its compiled
    steps)."""

    name = "per_level"

    def __init__(self, config, statistics=None):
        super().__init__(config)
        self.statistics = statistics

    def run(self, model, strategy, data, policy="run", with_threshold=True):
        """`{"levels", "split", "policy", "passes", "num_examples", "cross_entropy", ...}`.
        `policy`: "run" for the run's (`final_policy`), else this one."""
        c = self.config
        if self.statistics is None or self.statistics.model is not model:
            self.statistics = LevelStatistics(model, strategy)
        policy = final_policy(c, model) if policy == "run" else policy

        def evaluate(with_policy):
            dataset, info = data.dataset(c.evaluation.split)
            return self.statistics.evaluate(dataset, num_passes=c.evaluation.passes,
                                            policy=with_policy, data_info=info,
                                            allow_incomplete=c.evaluation.allow_incomplete)

        result = evaluate(policy)
        entry = {"levels": result.pop("levels"), "split": c.evaluation.split, "policy": policy,
                 "passes": result.pop("num_passes"), **result}
        if with_threshold and policy not in (None, "threshold"):
            deterministic = evaluate("threshold")
            entry["threshold"] = {"levels": deterministic["levels"],
                                  "passes": deterministic["num_passes"]}
        return entry

    def scalars(self, result):
        return scalar_logs(result)
