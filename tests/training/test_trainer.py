"""The trainer end to end on a tiny run (bundled digits, offline): outputs, resume, --init_from,
evaluation of any checkpoint."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from tf_pyramid import runs
from tf_pyramid.callbacks import AttentionImages
from tf_pyramid.modeling import StepDecay
from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.train import export_run
from tf_pyramid.evaluators.finished_run import evaluate_run
from tf_pyramid.training import Trainer

ENTRY_KEYS = {"level", "accuracy", "mean_locations", "mean_macs"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("runs") / "tiny"
    attention = AttentionImages(np.zeros([2, 28, 28, 1], np.float32),
                                log_dir=str(model_dir / "logs"), panel_px=32)
    trainer = Trainer(tiny_config(model_dir, validation_split="validation", export=True,
                                  steps_per_loop=2), callbacks=[attention])
    result = trainer.run()
    export_run(str(model_dir))  # what `python -m tf_pyramid.train` does after the run
    return model_dir, trainer, result


def test_run_writes_config_checkpoints_metrics_model(finished_run):
    model_dir, trainer, result = finished_run
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["name"] == "mnist_m1" and config["model"]["levels"] == 2
    assert config["learning_rule"]["target_locations"] == [2.0]
    assert config["run"]["total_steps"] == 6 and config["run"]["num_classes"] == 10
    assert ExperimentConfig.from_dict(config) == trainer.config.replace(
        run=ExperimentConfig.from_dict(config).run)  # config.json reads back into the types
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-6")
    assert result["final_step"] == 6 and int(trainer.optimizer.iterations.numpy()) == 6

    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert [e["level"] for e in metrics["levels"]] == [1, 2]
    for entry in metrics["levels"]:
        assert set(entry) == ENTRY_KEYS
        assert 0.0 <= entry["accuracy"] <= 1.0
    assert metrics["levels"][0]["mean_locations"] == 0.0
    assert metrics["levels"][1]["mean_macs"] >= metrics["levels"][0]["mean_macs"]
    assert metrics["num_examples"] == 500 and metrics["split"] == "validation"

    for split in ("train", "validation", "attention"):  # attention: the Keras callback
        events = os.listdir(model_dir / "logs" / split)
        assert events and events[0].startswith("events.out.tfevents")
    assert os.path.exists(model_dir / "export" / "1" / "saved_model.pb")

    loaded = keras.saving.load_model(model_dir / "model.keras")
    images = tf.random.stateless_uniform([4, 28, 28, 1], seed=[5, 6])
    np.testing.assert_allclose(loaded(images)["level_logits"],
                               trainer.model(images)["level_logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(loaded.reward_baseline.numpy(),
                                  trainer.model.reward_baseline.numpy())


def test_train_scalars_in_tensorboard(finished_run):
    model_dir = finished_run[0]
    tags = set()
    for name in os.listdir(model_dir / "logs" / "train"):
        for record in tf.compat.v1.train.summary_iterator(str(model_dir / "logs" / "train" / name)):
            tags.update(v.tag for v in record.summary.value)
    for tag in ("loss", "cross_entropy", "reinforce", "target_locations", "uniformity",
                "num_locations", "location_probability", "location_entropy",
                "level_2_accuracy", "baseline_2", "learning_rate"):
        assert tag in tags, tag


def test_evaluate_any_checkpoint_same_schema(finished_run):
    model_dir = str(finished_run[0])
    from_file = evaluate_run(model_dir)
    assert from_file["levels"] == json.loads(open(f"{model_dir}/metrics.json").read())["levels"]
    first = tf.train.get_checkpoint_state(f"{model_dir}/checkpoints").all_model_checkpoint_paths[0]
    from_checkpoint = evaluate_run(model_dir, checkpoint=first, policy="topk:2")
    assert [set(e) for e in from_checkpoint["levels"]] == [ENTRY_KEYS] * 2
    assert from_checkpoint["levels"][1]["mean_locations"] == 2.0
    deeper = evaluate_run(model_dir, levels=3, split="validation")
    assert [e["level"] for e in deeper["levels"]] == [1, 2, 3] and deeper["resolution"] == 56


def test_resume_continues_from_saved_step(tmp_path):
    config = tiny_config(tmp_path / "run", stop_after_steps=3)
    first = Trainer(config)
    result = first.run()
    assert result["interrupted"] and result["final_step"] == 3
    assert not os.path.exists(tmp_path / "run" / "metrics.json")
    saved = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "run" /
                                                                     "checkpoints")))
    baseline = first.model.reward_baseline.numpy()
    assert np.any(baseline != 0.0)
    slots = [v.numpy() for v in first.optimizer.variables]  # iterations, lr, m and v slots
    weights = [w.numpy() for w in first.model.weights]

    second = Trainer(tiny_config(tmp_path / "run"))
    second.setup()
    assert second.initial_step == 3 and int(second.step.numpy()) == 3
    assert int(second.optimizer.iterations.numpy()) == 3
    np.testing.assert_array_equal(second.model.reward_baseline.numpy(), baseline)
    assert len(second.model.weights) == len(weights)
    for variable, saved_value in zip(second.model.weights, weights):  # every module, FE included
        np.testing.assert_array_equal(variable.numpy(), saved_value, err_msg=variable.path)
    assert len(second.optimizer.variables) == len(slots)
    for variable, saved_value in zip(second.optimizer.variables, slots):
        np.testing.assert_array_equal(variable.numpy(), saved_value)
    np.testing.assert_array_equal(second.model.seed_generator.state.numpy(),
                                  first.model.seed_generator.state.numpy())
    assert saved.get_variable_to_shape_map()  # a real checkpoint file
    second.train()
    second.finish()
    assert int(second.step.numpy()) == 6 and int(second.optimizer.iterations.numpy()) == 6
    assert os.path.exists(tmp_path / "run" / "metrics.json")


def test_init_from_across_levels_loads_identical_module_weights(finished_run, tmp_path):
    source_dir = finished_run[0]
    source = finished_run[1].model
    for init_from in (str(source_dir), str(source_dir / "model.keras")):
        trainer = Trainer(tiny_config(tmp_path / os.path.basename(init_from), resolution=56,
                                      c_t=[6.0], init_from=init_from))
        trainer.setup()
        assert trainer.model.levels == 3 and trainer.initial_step == 0
        for a, b in zip(source.module_layers(), trainer.model.module_layers()):
            for wa, wb in zip(a.get_weights(), b.get_weights()):
                np.testing.assert_array_equal(wa, wb)
        baseline = source.reward_baseline.numpy()
        np.testing.assert_array_equal(trainer.model.reward_baseline.numpy(),
                                      [baseline[0], baseline[1], baseline[1]])
        assert int(trainer.optimizer.iterations.numpy()) == 0
    # A run directory with checkpoints only (no model.keras) loads too.
    model, where = runs.load_run_model(str(source_dir), prefer_checkpoint=True)
    assert where.endswith("ckpt-6")
    for a, b in zip(model.weights, source.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_init_from_other_model_kind_fails(finished_run, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "bl", model="mnist_bl1", c_t=[], lambda_f=0.0,
                                  lambda_t=0.0, lambda_r=0.0, init_from=str(finished_run[0])))
    with pytest.raises(ValueError, match="needs the same kind of model"):
        trainer.setup()


def test_schedule_drops_at_80_and_90_percent_and_serializes():
    schedule = StepDecay(0.01, 100)
    values = [float(schedule(s)) for s in (0, 79, 80, 89, 90, 99)]
    np.testing.assert_allclose(values, [0.01, 0.01, 0.002, 0.002, 0.0004, 0.0004], rtol=1e-6)
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert clone.get_config() == schedule.get_config()


def test_cli_evaluate_and_bad_flag(finished_run, tmp_path):
    from tests.helpers import run_module
    out = tmp_path / "eval.json"
    process = run_module("tf_pyramid.evaluate", [f"--model_dir={finished_run[0]}",
                                                 f"--json_out={out}"])
    assert process.returncode == 0, process.stderr[-2000:]
    metrics = json.loads((finished_run[0] / "metrics.json").read_text())
    assert json.loads(out.read_text())["levels"] == metrics["levels"]
    process = run_module("tf_pyramid.train", ["--flagfile=flags/quickstart.cfg",
                                              f"--model_dir={tmp_path / 'bad'}", "--levels=3"])
    assert process.returncode == 2
    assert "--levels=3 does not match --resolution=28" in process.stderr
    assert not os.path.exists(tmp_path / "bad")
