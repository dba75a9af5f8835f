"""The MNIST input setting (--mnist_input) in the typed config: its check, and config.json files
written before it existed, which must keep building the data their model was trained on."""
import pytest

from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.training.flags import FlagError, resolve_config
from tests.helpers import tiny_config


def _older_config(value_range, dataset="mnist"):
    """A config.json of tf_pyramid <= 0.4: no data.mnist_input, the range in run facts."""
    return {"model": {"name": "mnist_m1", "levels": 2}, "data": {"dataset": dataset,
                                                                 "variant": "plain"},
            "run": {"num_classes": 10, "channels": 1, "input_convention": {
                "input_size": 28, "channels": 1, "value_range": value_range,
                "resize_method": "area"}}}


def test_older_run_configs_keep_the_range_they_trained_on():
    assert ExperimentConfig.from_dict(_older_config([-1.0, 1.0])).data.mnist_input == "symmetric"
    assert ExperimentConfig.from_dict(_older_config([0.0, 1.0])).data.mnist_input == "unit"
    # A new config says what it is; one without run facts gets the default.
    fresh = ExperimentConfig.from_dict({"data": {"dataset": "mnist"}})
    assert fresh.data.mnist_input == "standardized"
    written = ExperimentConfig.from_dict(_older_config([-1.0, 1.0]))
    written.data.mnist_input = "standardized"
    assert ExperimentConfig.from_dict(written.to_dict()).data.mnist_input == "standardized"


def test_an_unknown_mnist_input_names_the_flag(tmp_path):
    with pytest.raises(FlagError, match="mnist_input.*standardized"):
        resolve_config(tiny_config(tmp_path, mnist_input="zscore"))


def test_resuming_with_another_mnist_input_is_refused_naming_the_flag():
    from tf_pyramid.runs import run_config

    saved = ExperimentConfig.from_dict(_older_config([-1.0, 1.0]))   # symmetric, from run facts
    rerun = ExperimentConfig.from_dict({"model": {"name": "mnist_m1", "levels": 2},
                                        "data": {"dataset": "mnist", "variant": "plain"}})
    incompatible, _ = run_config.compare(saved, rerun)
    assert [(flag, old, new) for flag, old, new, _ in incompatible] == [
        ("mnist_input", "symmetric", "standardized")]
