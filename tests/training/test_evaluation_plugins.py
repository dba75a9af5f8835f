"""The evaluators as plug-ins (tf_pyramid.evaluators): the registry, the anytime sweep against a
slow reference, attention quality skipped where it cannot apply, the trainer running the
configured ones (metrics.json, TensorBoard) and `python -m tf_pyramid.evaluate --evaluators`
in a fresh process on the trained run."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import run_module, tiny_config
from tf_pyramid import evaluators
from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.evaluators import base
from tf_pyramid.evaluators.anytime_sweep import AnytimeSweep
from tf_pyramid.training import FlagError, Trainer, resolve_config


# ------------------------------------------------------------------------------- registry
def test_unknown_evaluator_names_the_known_ones(tmp_path):
    assert evaluators.check_names(["anytime_sweep", "per_level", "anytime_sweep"]) == [
        "anytime_sweep", "per_level"]
    with pytest.raises(evaluators.UnknownEvaluatorError) as error:
        evaluators.create("per_levels", ExperimentConfig())
    assert "per_levels" in str(error.value)
    for name in ("anytime_sweep", "attention_quality", "per_level"):
        assert name in str(error.value)
    with pytest.raises(FlagError, match="--evaluators: Unknown evaluator.*sweep.*known "
                                        "evaluators: anytime_sweep, attention_quality"):
        resolve_config(tiny_config(tmp_path, evaluators=["per_level", "sweep"]))


def test_registry_classes_carry_their_names():
    for name in evaluators.NAMES:
        assert evaluators.evaluator_class(name).name == name


# ------------------------------------------------------------------ anytime sweep, numerically
def _reference_sweep(model, images, labels, thresholds):
    """Per threshold: accuracy, mean MACs and levels used, from the per-level outputs of one
    full traversal (threshold attention): an image stops at the first level whose top softmax
    probability reaches the threshold; each exit test that let it go on costs that level's
    merging and classification (its MACs less its feature extraction and location modules)."""
    out = model(images, training=False, policy="threshold")
    probabilities = tf.nn.softmax(out["level_logits"]).numpy()            # [B, L, C]
    level_macs = np.asarray(out["level_macs"], np.float64)                # [B, L]
    locations = np.asarray(out["level_num_locations"], np.float64)
    applications = np.asarray(out["location_applications"], np.float64)
    costs = model.module_costs()
    test_costs = (level_macs - (1 + locations) * costs["feature_extraction"]
                  - applications * costs["location"])
    batch, levels = level_macs.shape
    points = []
    for threshold in thresholds:
        correct, macs, used = [], [], []
        for b in range(batch):
            stop = levels - 1
            if threshold <= 1:
                for level in range(levels):
                    if probabilities[b, level].max() >= threshold:
                        stop = level
                        break
            correct.append(probabilities[b, stop].argmax() == labels[b])
            went_on = test_costs[b, :stop].sum() if threshold <= 1 else 0.0
            macs.append(level_macs[b, stop] + went_on)
            used.append(stop + 1)
        points.append({"accuracy": np.mean(correct), "mean_macs": np.mean(macs),
                       "mean_levels_used": np.mean(used)})
    return points


def test_anytime_sweep_matches_the_per_image_reference():
    model = tf_pyramid.build_model("mnist_m1", levels=3, policy="threshold")
    images = tf.random.stateless_uniform([24, 56, 56, 1], seed=[1, 2], minval=-1.0)
    labels = np.arange(24) % 10
    confidence = tf.reduce_max(tf.nn.softmax(
        model(images, training=False)["level_logits"]), -1).numpy()[:, :-1].ravel()
    ranked = np.sort(confidence)
    # Thresholds half-way between observed confidences (no image sits on one), spread over them.
    inner = [(ranked[i] + ranked[i + 1]) / 2 for i in (5, 15, 25, 35, 44)]
    thresholds = [0.0, *inner, 1.01]
    config = ExperimentConfig().replace(evaluation={"anytime_thresholds": thresholds})
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(10)
    result = AnytimeSweep(config).run(model, tf.distribute.get_strategy(),
                                      base.EvaluationData(lambda split: (dataset, None)))

    assert result["num_examples"] == 24
    assert [p["threshold"] for p in result["points"]] == sorted(thresholds)
    reference = _reference_sweep(model, images, labels, sorted(thresholds))
    for got, want in zip(result["points"], reference):
        np.testing.assert_allclose(got["accuracy"], want["accuracy"], atol=1e-9)
        np.testing.assert_allclose(got["mean_levels_used"], want["mean_levels_used"], atol=1e-9)
        np.testing.assert_allclose(got["mean_macs"], want["mean_macs"], rtol=1e-6)
        np.testing.assert_allclose(sum(got["level_shares"]), 1.0, atol=1e-9)
    used = [p["mean_levels_used"] for p in result["points"]]
    assert used[0] == 1.0 and used[-1] == 3.0 and 1.0 < np.median(used) < 3.0


# --------------------------------------------------------- attention quality: where it applies
def test_attention_quality_skipped_with_a_reason():
    pyramid = tf_pyramid.build_model("mnist_m1", levels=2, policy="threshold")
    data = base.EvaluationData(lambda split: pytest.fail("no data may be read"))
    folders = ExperimentConfig().replace(data={"dataset": "folder"})
    result = base.run_evaluators(["attention_quality"], folders, pyramid,
                                 tf.distribute.get_strategy(), data)
    assert result == {"attention_quality": {"skipped": (
        "attention quality needs the digit's position: an MNIST run; this run trained on "
        "'folder'.")}}
    baseline = tf_pyramid.build_model("mnist_bl1", levels=2)
    mnist = ExperimentConfig().replace(data={"dataset": "mnist"})
    result = base.run_evaluators(["attention_quality"], mnist, baseline,
                                 tf.distribute.get_strategy(), data)
    assert "has no attention" in result["attention_quality"]["skipped"]


# ------------------------------------------------- the trainer and evaluate, on one tiny run
@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("runs") / "evaluated"
    trainer = Trainer(tiny_config(
        model_dir, evaluators=["per_level", "anytime_sweep", "attention_quality"],
        eval_every_epochs=1, anytime_thresholds=[0, 0.5, 1.01]))
    trainer.run()
    return model_dir


def _tags_by_step(directory):
    found = {}
    for name in os.listdir(directory):
        for record in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
            for value in record.summary.value:
                found.setdefault(value.tag, []).append(record.step)
    return {tag: sorted(steps) for tag, steps in found.items()}


def test_trainer_runs_the_configured_evaluators(evaluated_run):
    metrics = json.loads((evaluated_run / "metrics.json").read_text())
    assert [e["level"] for e in metrics["levels"]] == [1, 2]  # the schema tools read
    assert metrics["per_level"]["levels"] == metrics["levels"]
    sweep = metrics["anytime_sweep"]
    assert [p["threshold"] for p in sweep["points"]] == [0.0, 0.5, 1.01]
    assert sweep["num_examples"] == 500
    first, last = sweep["points"][0], sweep["points"][-1]
    assert first["mean_levels_used"] == 1.0 and first["level_shares"] == [1.0, 0.0]
    # Level 1 sees the whole image only: its cost is the same for every image and pass.
    assert first["mean_macs"] == pytest.approx(metrics["levels"][0]["mean_macs"], rel=1e-9)
    assert last["mean_levels_used"] == 2.0 and last["mean_macs"] > first["mean_macs"]
    quality = metrics["attention_quality"]
    assert [e["level"] for e in quality["levels"]] == [2] and quality["images"] == 500

    tags = _tags_by_step(evaluated_run / "logs" / "evaluation")
    # After epoch 1 (step 3), and once at the end (step 6: the schedule leaves it to finish()).
    assert tags["anytime_sweep/threshold_0.5_accuracy"] == [3, 6]
    assert tags["per_level/level_2_accuracy"] == [3, 6]
    assert tags["attention_quality/level_2_margin"] == [3, 6]


def test_evaluate_runs_an_evaluator_on_a_finished_run(evaluated_run):
    result = run_module("tf_pyramid.evaluate", [f"--model_dir={evaluated_run}",
                                                "--evaluators=anytime_sweep",
                                                "--anytime_thresholds=0,1.01"])
    assert result.returncode == 0, result.stderr[-3000:]
    output = json.loads(result.stdout)
    assert "levels" not in output and output["split"] == "validation"
    assert [p["threshold"] for p in output["anytime_sweep"]["points"]] == [0.0, 1.01]
    assert output["anytime_sweep"]["points"][0]["mean_levels_used"] == 1.0

    unknown = run_module("tf_pyramid.evaluate", [f"--model_dir={evaluated_run}",
                                                 "--evaluators=sweep"])
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines()[-1] == (
        "Error: --evaluators: Unknown evaluator(s) sweep; known evaluators: anytime_sweep, "
        "attention_quality, per_level.")
