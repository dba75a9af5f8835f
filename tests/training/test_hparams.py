"""TensorBoard HParams: every finished run writes its hyperparameters and final per-level
metrics once, under DIR/logs/hparams, so that runs (e.g. a c_t sweep) compare in one view."""
import glob
import os

import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers import tiny_config
from tf_pyramid.runs import files
from tf_pyramid.training import actions
from tf_pyramid.training.trainer import Trainer


def _events(log_dir):
    """(hparams plugin data by summary tag, scalars by tag) of every event file in `log_dir`."""
    plugin, scalars = {}, {}
    for path in sorted(glob.glob(os.path.join(log_dir, "*.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData()
                    data.ParseFromString(value.metadata.plugin_data.content)
                    plugin[value.tag] = data
                elif value.tag.startswith("hparams/"):
                    scalars[value.tag] = float(tf.make_ndarray(value.tensor))
    return plugin, scalars


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("hparams") / "run"
    config = tiny_config(model_dir, c_t=[2.5], learning_rate=0.003)
    Trainer(config).run()
    return str(model_dir), config


def test_a_run_logs_its_hparams_and_final_metrics(finished):
    model_dir, _ = finished
    plugin, scalars = _events(os.path.join(model_dir, "logs", actions.HPARAMS_LOG))
    session = plugin["_hparams_/session_start_info"].session_start_info
    values = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
              for name, value in session.hparams.items()}
    assert values["model"] == "mnist_m1" and values["resolution"] == 28
    assert values["levels"] == 2 and values["c_t"] == "2.5"
    assert values["learning_rate"] == pytest.approx(0.003) and values["batch_size"] == 16
    assert values["epochs"] == 2 and values["seed"] == 3 and values["mc_samples"] == 2
    assert values["dtype_policy"] == "float32" and values["dataset"] == "mnist"
    metrics = files.read_json(os.path.join(model_dir, "metrics.json"))
    for entry in metrics["levels"]:
        assert scalars[f"hparams/level_{entry['level']}_accuracy"] == pytest.approx(
            entry["accuracy"])
        assert scalars[f"hparams/level_{entry['level']}_mean_locations"] == pytest.approx(
            entry["mean_locations"])
    experiment = plugin["_hparams_/experiment"].experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"hparams/level_2_accuracy"}


def test_a_rerun_of_a_finished_run_adds_no_second_session(finished):
    model_dir, config = finished
    log_dir = os.path.join(model_dir, "logs", actions.HPARAMS_LOG)
    before = sorted(os.listdir(log_dir))
    Trainer(config).run()  # finds training finished, evaluates again
    assert sorted(os.listdir(log_dir)) == before
    assert not actions.write_hparams(log_dir, config, {"levels": []}, 0)
