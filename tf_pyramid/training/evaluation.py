"""Per-level evaluation: accuracy, attended cells and MACs after every pyramid level.

For a pyramid model one pass serves all levels (`level_logits`, `level_num_locations`,
`level_macs`); a baseline gives one entry. The result is the `metrics.json` schema:
`{"levels": [{"level": 1, "accuracy": ..., "mean_locations": ..., "mean_macs": ...}, ...]}`.
"""
import numpy as np
import tensorflow as tf

from tf_pyramid.data import build_dataset, evaluate_redrawn
from tf_pyramid.modeling import PyramidClassifier, exit_levels

LEVEL_KEYS = ("accuracy", "mean_locations", "mean_macs")  # per-level entries of metrics.json


def batch_statistics(model, images, labels, policy=None):
    """Sums over one batch: correct [L], locations [L], macs [L], cross-entropy [L], count [].

    An empty batch (a replica left without examples at the end of a distributed pass) gives
    zeros without running the model.
    """
    levels = exit_levels(model)
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)

    def compute():
        if isinstance(model, PyramidClassifier):
            outputs = model(images, training=False, policy=policy)
            logits = outputs["level_logits"]                                    # [B, L, C]
            locations = tf.cast(outputs["level_num_locations"], tf.float32)    # [B, L]
            macs = tf.cast(outputs["level_macs"], tf.float32)
        else:
            outputs = model(images, training=False)
            logits = outputs["logits"][:, None]
            locations = tf.zeros([tf.shape(logits)[0], 1])
            macs = tf.cast(outputs["macs"], tf.float32)[:, None]
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

        def replica_fn(images, labels):
            return batch_statistics(self.model, images, labels, self.policy)

        @tf.function(reduce_retracing=True)
        def step(batch):
            sums = self.strategy.run(replica_fn, args=(batch[0], batch[1]))
            return [self.strategy.reduce("SUM", s, axis=None) for s in sums]

        self._step = step

    def evaluate(self, dataset, num_passes=1):
        """Per-level results over `num_passes` passes of `dataset` (distributed or plain): the
        mean of the passes (`data.evaluate_redrawn`), and the accuracy's spread over them."""
        levels = range(1, exit_levels(self.model) + 1)
        redrawn = evaluate_redrawn(self._one_pass, dataset, num_passes)
        mean = redrawn["mean"]
        result = {"levels": [{"level": d, **{key: mean[f"{key}_{d}"] for key in LEVEL_KEYS}}
                             for d in levels],
                  "num_examples": int(mean["num_examples"]),
                  "num_passes": redrawn["num_passes"],
                  "cross_entropy": [mean[f"cross_entropy_{d}"] for d in levels]}
        if redrawn["num_passes"] > 1:
            result["accuracy_std"] = [redrawn["std"][f"accuracy_{d}"] for d in levels]
        return result

    def _one_pass(self, dataset):
        """`{"accuracy_1": ..., "mean_locations_1": ..., "mean_macs_1": ...,
        "cross_entropy_1": ..., ..., "num_examples": ...}` of one pass over `dataset`."""
        totals = None
        for batch in dataset:
            sums = [np.asarray(s, np.float64) for s in self._step(batch)]
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
                 use_checkpoint=False, num_passes=1, batch_size=None, seed=None, **data):
    """The per-level JSON dict for a run directory or .keras file (`python -m
    tf_pyramid.evaluate`): model.keras, or the latest / a given checkpoint; data settings from the
    run's config.json unless overridden; `levels` re-runs the modules with that many levels."""
    from tf_pyramid.training import restore  # noqa: PLC0415

    config = restore.read_config(model_dir) or {}
    model, where = restore.load_run_model(model_dir, checkpoint=checkpoint,
                                          prefer_checkpoint=use_checkpoint)
    pyramid = isinstance(model, PyramidClassifier)
    trained_levels = model.levels if pyramid else (config.get("levels") or 1)
    if levels and levels != trained_levels:
        # Evaluation runs no learning rule: build the model with a neutral one (the run's c_t
        # list would not fit another depth).
        rebuilt = restore.build_from_config(
            dict(config, model=config.get("model") or model.name, levels=levels, c_t=[],
                 level_weights=[], c_r=None, lambda_f=0.0, lambda_t=0.0, lambda_r=0.0,
                 mc_samples=1, baseline_decay=0.9), model.num_classes, model.channels)
        restore.copy_module_weights(model, rebuilt)
        model = rebuilt
    resolution = model.input_size
    policy = policy or config.get("policy") or "threshold"
    dataset_name = data.get("dataset") or config.get("dataset")
    if not dataset_name:
        raise ValueError(f"{model_dir} has no config.json naming the dataset: pass --dataset.")
    split = split or config.get("eval_split") or "test"
    seed = seed if seed is not None else config.get("seed")
    if seed is not None:  # as the trainer does: the same seed gives the same re-drawn images
        tf.random.set_seed(seed)
    dataset, _ = build_dataset(
        dataset_name, split, resolution=resolution,
        batch_size=batch_size or config.get("eval_batch_size") or 128, training=False,
        variant=data.get("variant") or config.get("variant", "plain"),
        source=data.get("source") or config.get("source", "tfds"),
        data_dir=data.get("data_dir") or config.get("data_dir"), texture=config.get("texture"),
        seed=seed)
    result = Evaluator(model, tf.distribute.get_strategy(),
                       policy if pyramid else None).evaluate(dataset, num_passes)
    return {"levels": result["levels"], "model": config.get("model") or model.name,
            "split": split, "policy": policy if pyramid else None, "dataset": dataset_name,
            "resolution": resolution, "source_file": where,
            **{k: v for k, v in result.items() if k != "levels"}}
