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


def test_a_bare_model_file_is_evaluated_with_the_input_it_was_trained_on(tmp_path):
    """A .keras file has no config.json: the default (standardised) data would not match a model
    trained on [-1, 1]; the error names --mnist_input, and with it the evaluation runs."""
    from tf_pyramid.data import input_convention
    from tf_pyramid.evaluators import finished_run
    from tf_pyramid.runs import build_from_config

    config = ExperimentConfig.from_dict({"model": {"name": "mnist_m2", "levels": 2}})
    model = build_from_config(config, 10, input_convention(
        "mnist", 28, mnist_input="symmetric").get_config())
    path = tmp_path / "symmetric.keras"
    model.save(path)
    settings = {"dataset": "mnist", "source": "bundled", "num_passes": 1, "batch_size": 250}
    with pytest.raises(ValueError, match="pass the --mnist_input the model was trained with"):
        finished_run.evaluate_run(str(path), **settings)
    result = finished_run.evaluate_run(str(path), mnist_input="symmetric", **settings)
    assert [level["level"] for level in result["levels"]] == [1, 2]
    assert result["levels"][0]["mean_locations"] == 0.0


def test_a_model_with_other_classes_than_the_data_is_a_clear_error(tmp_path):
    import os
    import shutil

    from tf_pyramid.evaluators import finished_run

    path = tmp_path / "three_classes.keras"  # an MNIST pyramid of 8 px with 3 classes
    shutil.copy(os.path.join(os.path.dirname(os.path.dirname(__file__)), "modeling", "data",
                             "pyramid_v0_3.keras"), path)
    with pytest.raises(ValueError, match="has 3 classes, but this data has 10"):
        finished_run.evaluate_run(str(path), dataset="mnist", source="bundled",
                                  mnist_input="symmetric", num_passes=1, batch_size=250)
