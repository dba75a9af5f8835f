"""Resumed settings against the saved config.json: incompatible changes refused with the flag and
the reason, compatible ones logged and the replaced config kept in config_history/."""
import json
import logging

import pytest

from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.runs import files, run_config

# A flat config.json, as tf_pyramid <= 0.2 wrote them: it reads into the typed config.
SAVED = {"model": "mnist_m2", "levels": 2, "resolution": 28, "dataset": "mnist",
         "variant": "plain", "epochs": 1, "learning_rate": 0.01, "batch_size": 8,
         "c_t": [2.0], "model_dir": "/old/place", "stop_after_steps": 3,
         "run": {"num_classes": 10, "channels": 1, "total_steps": 4}}


@pytest.fixture
def run_dir(tmp_path):
    files.write_json(tmp_path / "config.json", SAVED)
    return tmp_path


def _new(**changes):
    config = {k: v for k, v in SAVED.items() if k != "run"}
    config.update(changes)
    return ExperimentConfig.from_dict(config)


def _saved():
    return ExperimentConfig.from_dict(SAVED)


def test_flat_config_of_earlier_versions_reads_into_the_typed_config():
    saved = _saved()
    assert saved.model.name == "mnist_m2" and saved.model.levels == 2
    assert saved.schedule.epochs == 1 and saved.learning_rule.target_locations == [2.0]
    assert saved.trainer.model_dir == "/old/place" and saved.run.num_classes == 10
    assert ExperimentConfig.from_dict(saved.to_dict()) == saved


def test_compare_sorts_changes():
    incompatible, changed = run_config.compare(
        _saved(), _new(model="mnist_m1", levels=3, epochs=2, learning_rate=0.005, c_t=(2.0,),
                    model_dir="/new/place", stop_after_steps=None,
                    data_service="grpc://dispatcher:5050"),
        {"num_classes": 5, "channels": 1})
    assert [i[:3] for i in incompatible] == [("model", "mnist_m2", "mnist_m1"),
                                             ("levels", 2, 3), ("run.num_classes", 10, 5)]
    assert changed == [("epochs", 1, 2), ("learning_rate", 0.01, 0.005)]  # c_t tuple == list
    assert run_config.compare(_saved(), _new()) == ([], [])


def test_check_resume_refuses_incompatible_change(run_dir):
    with pytest.raises(run_config.IncompatibleConfigError) as error:
        run_config.check_resume(run_dir, _new(resolution=56, levels=3, variant="noisy"))
    message = str(error.value)
    assert "--resolution: saved 28, now 56 (the input side fixes" in message
    assert "--levels: saved 2, now 3" in message and "--variant: saved 'plain'" in message
    assert "--init_from" in message
    assert json.loads((run_dir / "config.json").read_text()) == SAVED  # left as it was
    with pytest.raises(run_config.IncompatibleConfigError,
                       match="--dtype_policy: saved 'float32', now 'mixed_float16'"):
        run_config.check_resume(run_dir, _new(dtype_policy="mixed_float16"))
    with pytest.raises(run_config.IncompatibleConfigError, match="--run.channels: saved 1, now 3"):
        run_config.check_resume(run_dir, _new(), {"num_classes": 10, "channels": 3})


def test_compatible_change_is_logged_and_history_kept(run_dir, caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        changed = run_config.check_resume(run_dir, _new(epochs=3, learning_rate=0.002),
                                          {"num_classes": 10, "channels": 1})
    assert changed == [("epochs", 1, 3), ("learning_rate", 0.01, 0.002)]
    assert "Resuming with changed settings: epochs 1 -> 3, learning_rate 0.01 -> 0.002" in \
        caplog.text

    second = _new(epochs=3, learning_rate=0.002)
    kept = run_config.write_config(run_dir, second, step=4)
    assert kept.endswith("config_history/001-until-step-4.json")
    assert ExperimentConfig.from_dict(json.loads(open(kept).read())) == _saved()
    # Same settings again (only per-process flags differ): no new history entry.
    assert run_config.write_config(run_dir, second.replace(trainer={"stop_after_steps": None}),
                                   step=8) is None
    third = second.replace(schedule={"batch_size": 16})
    assert run_config.write_config(run_dir, third, step=9).endswith("002-until-step-9.json")
    assert [c.schedule.batch_size for c in run_config.history(run_dir)] == [8, 8, 16]
    assert [c.schedule.epochs for c in run_config.history(run_dir)] == [1, 3, 3]


def test_damaged_or_missing_saved_config(run_dir, caplog):
    caplog.set_level(logging.WARNING, logger="absl")
    (run_dir / "config.json").write_text('{"model": "mnist')
    with pytest.raises(files.DamagedFileError, match="config.json is damaged"):
        run_config.check_resume(run_dir, _new())
    assert run_config.write_config(run_dir, _new()) is None  # replaced, with a warning
    assert "Replacing a damaged" in caplog.text
    assert ExperimentConfig.from_dict(files.read_json(run_dir / "config.json")) == _new()
    (run_dir / "config.json").unlink()
    assert run_config.check_resume(run_dir, _new(model="mnist_m1")) == []
    assert "cannot be checked" in caplog.text
