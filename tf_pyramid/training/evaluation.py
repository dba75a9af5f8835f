"""Per-level evaluation: accuracy, attended cells and MACs after every pyramid level.

For a pyramid model one pass serves all levels (`level_logits`, `level_num_locations`,
`level_macs`); a baseline gives one entry. The result is the `metrics.json` schema:
`{"levels": [{"level": 1, "accuracy": ..., "mean_locations": ..., "mean_macs": ...}, ...]}`.
"""
import os

import numpy as np
import tensorflow as tf

from tf_pyramid.modeling import PyramidClassifier


def num_levels(model):
    return model.levels if isinstance(model, PyramidClassifier) else 1


def batch_statistics(model, images, labels, policy=None):
    """Sums over one batch: correct [L], locations [L], macs [L], cross-entropy [L], count [].

    An empty batch (a replica left without examples at the end of a distributed pass) gives
    zeros without running the model.
    """
    levels = num_levels(model)
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

    def distribute(self, dataset_fn):
        """`dataset_fn(input_context)` -> distributed dataset (one pipeline per worker)."""
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def evaluate(self, dataset, num_passes=1):
        """Per-level results over `num_passes` passes of `dataset` (distributed or plain)."""
        passes = []
        for _ in range(int(num_passes)):
            totals = None
            for batch in dataset:
                sums = [np.asarray(s, np.float64) for s in self._step(batch)]
                totals = sums if totals is None else [t + s for t, s in zip(totals, sums)]
            if totals is None or totals[-1] == 0:
                raise ValueError("The evaluation dataset is empty.")
            passes.append(totals)
        return summarize(passes, num_levels(self.model))


def summarize(passes, levels):
    """metrics.json dict from per-pass sums [(correct, locations, macs, xent, count), ...]."""
    accuracy = np.stack([p[0] / p[4] for p in passes])                       # [K, L]
    locations = np.stack([p[1] / p[4] for p in passes])
    macs = np.stack([p[2] / p[4] for p in passes])
    cross_entropy = np.stack([p[3] / p[4] for p in passes])
    entries = []
    for index in range(levels):
        entries.append({"level": index + 1,
                        "accuracy": float(accuracy[:, index].mean()),
                        "mean_locations": float(locations[:, index].mean()),
                        "mean_macs": float(macs[:, index].mean())})
    result = {"levels": entries,
              "num_examples": int(passes[0][4]),
              "num_passes": len(passes),
              "cross_entropy": [float(v) for v in cross_entropy.mean(0)]}
    if len(passes) > 1:
        result["accuracy_std"] = [float(v) for v in accuracy.std(0, ddof=1)]
    return result


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
    from tf_pyramid.data import build_dataset  # noqa: PLC0415
    from tf_pyramid.training import restore  # noqa: PLC0415

    config = (restore.read_config(model_dir) if os.path.isdir(model_dir) else None) or {}
    model, where = restore.load_run_model(model_dir, checkpoint=checkpoint,
                                          prefer_checkpoint=use_checkpoint)
    pyramid = isinstance(model, PyramidClassifier)
    trained_levels = model.levels if pyramid else (config.get("levels") or 1)
    if levels and levels != trained_levels:
        base = model.base_resolution if pyramid else model.input_size // 2 ** (trained_levels - 1)
        rebuilt = restore.build_from_config(
            dict(config, model=config.get("model") or model.name, levels=levels,
                 c_t=config.get("c_t", []), level_weights=[], c_r=config.get("c_r"),
                 lambda_f=0.0, lambda_t=0.0, lambda_r=0.0, mc_samples=1,
                 baseline_decay=0.9), model.num_classes, model.channels, levels=levels)
        restore.copy_module_weights(model, rebuilt)
        model, resolution = rebuilt, base * 2 ** (levels - 1)
    else:
        resolution = model.input_size
    policy = policy or config.get("policy") or "threshold"
    if pyramid:
        model.policy = policy
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
