"""Per-level evaluation: accuracy, attended cells and MACs after every pyramid level.

One pass serves all exit levels (`level_logits`, `level_num_locations`, `level_macs`); a baseline
has one. The result is the `metrics.json` schema:
`{"levels": [{"level": 1, "accuracy": ..., "mean_locations": ..., "mean_macs": ...}, ...]}`.
"""
import numpy as np
import tensorflow as tf

from tf_pyramid import runs
from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.data import build_dataset, evaluate_redrawn
from tf_pyramid.data.completeness import check_complete
from tf_pyramid.modeling import attention_policy

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


class Evaluator:
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
    for entry, xent in zip(result["levels"], result["cross_entropy"]):
        level = entry["level"]
        logs[f"{prefix}level_{level}_accuracy"] = entry["accuracy"]
        logs[f"{prefix}level_{level}_mean_locations"] = entry["mean_locations"]
        logs[f"{prefix}level_{level}_mean_macs"] = entry["mean_macs"]
        logs[f"{prefix}level_{level}_cross_entropy"] = xent
    return logs


def evaluate_run(model_dir, policy=None, levels=None, split=None, checkpoint=None,
                 use_checkpoint=False, num_passes=None, batch_size=None, seed=None,
                 allow_incomplete=None, **overrides):
    """The per-level JSON dict for a run directory or .keras file (`python -m
    tf_pyramid.evaluate`): model.keras, or the latest / a given checkpoint; data settings from the
    run's config.json unless overridden; `levels` re-runs the modules with that many levels.
    A pass that read less than the whole split raises `IncompleteSplitError` unless
    `allow_incomplete` (default: the run's `--allow_incomplete`)."""
    config = runs.read_config(model_dir) or ExperimentConfig()
    if allow_incomplete is None:
        allow_incomplete = config.evaluation.allow_incomplete
    model, where = runs.load_run_model(model_dir, checkpoint=checkpoint,
                                       prefer_checkpoint=use_checkpoint)
    pyramid = model.has_attention
    trained_levels = getattr(model, "levels", None) or config.model.levels or 1
    if levels is not None and levels < 1:
        raise ValueError(f"--levels must be >= 1; got {levels}.")
    if levels and levels != trained_levels:
        # Module weights are depth independent: the same modules, another depth.
        resolution = model.input_size * 2 ** (levels - trained_levels)
        convention = dict(model.input_convention or {}, input_size=resolution)
        rebuilt = runs.build_from_config(
            config.replace(model={"name": config.model.name or model.name, "levels": levels}),
            model.num_classes, convention)
        runs.copy_module_weights(model, rebuilt)
        model = rebuilt
    resolution = model.input_size
    policy = policy or config.model.policy or "threshold"
    if pyramid:  # before any data is read: a bad policy is a usage error, not a trace failure
        attention_policy.parse_policy(policy)
    data = config.data
    dataset_name = overrides.get("dataset") or data.dataset
    if not dataset_name:
        raise ValueError(f"{model_dir} has no config.json naming the dataset: pass --dataset.")
    split = split or config.evaluation.split
    num_passes = num_passes or config.evaluation.passes
    seed = seed if seed is not None else config.trainer.seed
    if seed is not None:  # as the trainer does: the same seed gives the same re-drawn images
        tf.random.set_seed(seed)
    dataset, info = build_dataset(
        dataset_name, split, resolution=resolution,
        batch_size=batch_size or config.evaluation.batch_size or config.schedule.batch_size,
        training=False, variant=overrides.get("variant") or data.variant,
        source=overrides.get("source") or data.source,
        data_dir=overrides.get("data_dir") or data.data_dir, texture=data.texture,
        seed=seed, class_names=runs.read_class_names(model_dir),
        validation_fraction=data.validation_fraction)
    runs.check_same_inputs(model, info.input_convention.get_config(), where)
    result = Evaluator(model, tf.distribute.get_strategy(),
                       policy if pyramid else None).evaluate(
        dataset, num_passes, data_info=info, allow_incomplete=allow_incomplete)
    return {"levels": result["levels"], "model": config.model.name or model.name,
            "split": split, "policy": policy if pyramid else None, "passes": num_passes,
            "dataset": dataset_name,
            "resolution": resolution, "source_file": where,
            **{k: v for k, v in result.items() if k != "levels"}}

