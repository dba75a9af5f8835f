"""A run's model against the data it meets: the input convention must be the one it learnt on."""
import pytest

import tf_pyramid
from tf_pyramid import runs
from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.data import input_convention
from tf_pyramid.runs import run_config


def test_a_model_trained_on_other_inputs_is_refused():
    mnist_28 = input_convention("mnist", 28).get_config()
    model = tf_pyramid.build_model("mnist_m2", levels=2, input_convention=mnist_28)
    runs.check_same_inputs(model, input_convention("mnist", 56).get_config(), "x")  # size: fine
    old = dict(mnist_28, value_range=[0.0, 1.0])  # a tf_pyramid 0.1 MNIST model
    model.input_convention = old
    with pytest.raises(ValueError, match=r"x was trained on inputs .*\[0.0, 1.0\]"):
        runs.check_same_inputs(model, mnist_28, "x")
    model.input_convention = None  # nothing saved: nothing to compare
    runs.check_same_inputs(model, mnist_28, "x")


def test_resume_refuses_another_input_convention():
    old_range = dict(input_convention("mnist", 28).get_config(), value_range=[0.0, 1.0])
    saved = ExperimentConfig.from_dict({"model": "mnist_m2",
                                        "run": {"input_convention": old_range}})
    new = ExperimentConfig.from_dict({"model": "mnist_m2"})
    incompatible, _ = run_config.compare(saved, new, {
        "input_convention": input_convention("mnist", 28).get_config()})
    assert [entry[0] for entry in incompatible] == ["run.input_convention"]
    same, _ = run_config.compare(saved, new, {"input_convention": old_range})
    assert same == []
