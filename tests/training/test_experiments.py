"""Experiments by name, flagfiles read relative to the file that includes them, the typed config's
round trip, and the plan of every experiment's chain against the paper's (A.5.2, A.6.2)."""
import json
import os
import zipfile

import pytest

from tests.helpers import REPO, run_module
from tf_pyramid.configs import ExperimentConfig, experiments
from tf_pyramid.training import chain
from tf_pyramid.training.flags import FlagError, resolve_config


def write(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def plan(*args):
    command = experiments.CommandLine(["train", *args])
    return chain.plan(command, chain.parse_argv(command.argv))


# ----------------------------------------------------------------------------- names and files
def test_experiments_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no flags/ here
    assert experiments.experiment_file("imagenet/m2_256_ct29") == os.path.join(
        REPO, "flags", "imagenet", "m2_256_ct29.cfg")
    command = experiments.CommandLine(["train", "--flagfile=flags/m2_256.cfg", "--epochs=3"])
    assert command.experiment_file == os.path.join(REPO, "flags", "m2_256.cfg")
    assert command.experiment_args[0] == "--experiment=m2_256"
    assert "--flagfile" not in " ".join(command.argv)  # nested files expanded
    assert command.override_args == ["--epochs=3"] and command.sets("epochs")
    with pytest.raises(experiments.ExperimentError, match="No experiment 'imagenet/m2_256_ct30'. "
                       "Close: .*imagenet/m2_256_ct29"):
        experiments.experiment_file("imagenet/m2_256_ct30")
    with pytest.raises(experiments.ExperimentError, match="No flagfile mine.cfg"):
        experiments.CommandLine(["train", "--flagfile=mine.cfg"])


def test_names_listed_are_every_experiment_file_but_the_shared_fragments():
    names = experiments.experiment_names()
    assert len(names) >= 60 and "imagenet/m2_256_ct29" in names and "quickstart" in names
    assert not [n for n in names if n.startswith("common/")]
    for name in names:
        assert experiments.experiment_name(experiments.experiment_file(name)) == name
    assert experiments.summary(experiments.experiment_file("imagenet/m2_256_ct29")) == (
        "ImageNet M2 (paper Table 4) at 256 px, 4 levels, c_t 29 (after imagenet/m2_128_ct13.5)")


def test_nested_flagfiles_are_relative_to_the_file_that_includes_them(tmp_path, monkeypatch):
    write(tmp_path / "mine/common/family.cfg", "# shared", "--epochs=3", "--seed=1")
    write(tmp_path / "mine/exp/one.cfg", "--flagfile=../common/family.cfg", "--seed=2")
    monkeypatch.chdir(tmp_path / "mine" / "exp")  # absl would look for exp/../common from here
    assert experiments.read_flagfile("one.cfg") == ["--epochs=3", "--seed=1", "--seed=2"]
    monkeypatch.chdir(tmp_path)
    assert experiments.read_flagfile("mine/exp/one.cfg")[-1] == "--seed=2"
    write(tmp_path / "loop.cfg", "--flagfile=loop.cfg")
    with pytest.raises(experiments.ExperimentError, match="cycle"):
        experiments.read_flagfile("loop.cfg")
    write(tmp_path / "broken.cfg", "--flagfile=missing.cfg")
    with pytest.raises(experiments.ExperimentError, match=r"No flagfile missing.cfg \(in "):
        experiments.read_flagfile("broken.cfg")


def test_two_experiments_on_one_command_line_are_refused():
    with pytest.raises(experiments.ExperimentError, match="Two experiments"):
        experiments.CommandLine(["train", "--experiment=mnist/m1_28", "--experiment=mnist/m2_28"])


# ------------------------------------------------------------------------------ typed config
def test_flags_to_config_to_json_and_back(tmp_path):
    """flags -> config -> config.json -> config gives the same typed config, stages included."""
    stages = plan("--experiment=multilevel/imagenet_m2_256", f"--model_dir={tmp_path / 'run'}",
                  "--epochs=3", "--data_dir=" + str(tmp_path))
    final = stages[-1]
    assert isinstance(final, ExperimentConfig) and len(final.stages) == 2
    assert final.learning_rule.target_locations == [3.2, 13.5, 40.0]
    assert final.schedule.epochs == 3 and final.model.levels == 4
    path = tmp_path / "config.json"
    path.write_text(final.to_json())
    again = ExperimentConfig.from_dict(json.loads(path.read_text()))
    assert again == final and again.stages[0] == stages[0]
    assert again.flag_values()["c_t"] == [3.2, 13.5, 40.0]


def test_every_setting_has_one_flag_and_one_default():
    flags = ExperimentConfig().flag_values()
    assert len(flags) == len(set(flags)) >= 40
    assert ExperimentConfig().schedule.epochs == 70 and ExperimentConfig().trainer.export is True
    with pytest.raises(KeyError, match="Unknown settings"):
        ExperimentConfig().set_flags({"epoch": 3})


# ---------------------------------------------------------------------------------- chains
# The paper's chains, written from its text (A.5.2, A.6.2), not from the flagfiles.
IMAGENET_SESSIONS = (64, 128, 256)          # 128 from a 64 px model, 256 from a 128 px one
PAPER_C_T = {("imagenet_m2", 64): {1.5, 4.5}, ("imagenet_m1", 64): {1.5, 4.5},
             ("imagenet_m2", 128): {3.75, 7, 13.5, 24.75},
             ("imagenet_m1", 128): {3.75, 8, 11, 13.5, 30},
             ("imagenet_m2", 256): {22, 29, 39}, ("imagenet_m1", 256): {30, 35, 40}}
MULTILEVEL_C_T = {"imagenet_m2": [3.2, 13.5, 40.0], "imagenet_m1": [2.9, 11.3, 35.6]}


def _expected_resolutions(name, final):
    if name.startswith("mnist/"):
        return [28, 56] if name.endswith("_gradual") else [final.model.resolution]
    if name.startswith(("imagenet/", "multilevel/")) or name == "m2_256":
        if final.model.resolution < 64:
            return [final.model.resolution]
        return [r for r in IMAGENET_SESSIONS if r <= final.model.resolution]
    return [final.model.resolution]


@pytest.mark.parametrize("name", experiments.experiment_names())
def test_dry_run_plan_of_every_experiment_follows_the_paper(name, tmp_path):
    stages = plan(f"--experiment={name}", f"--data_dir={tmp_path}")
    final = stages[-1]
    assert [s.model.resolution for s in stages] == _expected_resolutions(name, final)
    assert len({s.model.name for s in stages}) == 1  # gradual learning keeps the architecture
    assert stages[0].trainer.init_from is None       # the chain starts from scratch
    for previous, stage in zip(stages, stages[1:]):
        assert stage.trainer.init_from == previous.trainer.model_dir
    for stage in stages:
        assert stage.trainer.model_dir == os.path.join("runs", *stage.experiment.split("/"))
        assert stage.data.data_dir == str(tmp_path)  # command-line overrides reach every stage
        key = (stage.model.name, stage.model.resolution)
        c_t = stage.learning_rule.target_locations
        if name.startswith("multilevel/"):
            levels = stage.model.levels
            assert c_t == MULTILEVEL_C_T[stage.model.name][:levels - 1]
            assert stage.learning_rule.level_weights == [1.0] * levels
        elif key in PAPER_C_T:
            assert len(c_t) == 1 and c_t[0] in PAPER_C_T[key], (stage.experiment, c_t)
    if name.startswith("imagenet/m") and final.model.resolution >= 128:
        assert stages[0].learning_rule.target_locations == [4.5]  # "a M64 model": c_t 4.5
    if name.startswith("imagenet/m") and final.model.resolution == 256:
        assert stages[1].learning_rule.target_locations == [13.5]


def test_given_model_dir_holds_every_stage(tmp_path):
    stages = plan("--flagfile=flags/m2_256.cfg", f"--model_dir={tmp_path / 'm2_256'}")
    assert [s.trainer.model_dir for s in stages] == [
        str(tmp_path / "m2_256/stages/imagenet/m2_64_ct4.5"),
        str(tmp_path / "m2_256/stages/imagenet/m2_128_ct13.5"), str(tmp_path / "m2_256")]
    source = tmp_path / "m2_128.keras"
    with zipfile.ZipFile(source, "w") as archive:  # stands for a finished stage's model file
        archive.writestr("config.json", "{}")
    only_last = plan("--flagfile=flags/m2_256.cfg", f"--model_dir={tmp_path / 'x'}",
                     f"--init_from={source}")
    assert len(only_last) == 1 and only_last[0].model.resolution == 256
    assert only_last[0].trainer.init_from == str(source) and not only_last[0].stages


def test_stage_settings_on_the_command_line_of_a_chain_are_refused(tmp_path):
    with pytest.raises(FlagError, match="--resolution sets one stage, but imagenet/m2_256_ct29 is "
                       "a chain of 3 stages"):
        plan("--experiment=imagenet/m2_256_ct29", "--resolution=128")
    with pytest.raises(FlagError, match="stage 1 of 2 \\(mnist/m2_28\\): --learning_rate must"):
        plan("--experiment=mnist/m2_56_ct6_gradual", "--learning_rate=-1")


def test_a_missing_init_from_outside_a_chain_is_refused(tmp_path):
    with pytest.raises(FlagError, match="does not exist"):
        resolve_config(plan("--experiment=mnist/m1_28", f"--init_from={tmp_path / 'none'}")[-1])


def test_dry_run_and_list_on_the_command_line(tmp_path):
    process = run_module("tf_pyramid.train", ["--experiment=mnist/m1_56_ct6_gradual",
                                              "--source=bundled", f"--model_dir={tmp_path / 'run'}",
                                              "--dry_run"], cwd=str(tmp_path))
    assert process.returncode == 0, process.stderr[-2000:]
    plan_ = json.loads(process.stdout)["stages"]
    assert [(s["stage"], s["of"], s["experiment"], s["status"]) for s in plan_] == [
        (1, 2, "mnist/m1_28", "to train"), (2, 2, "mnist/m1_56_ct6_gradual", "to train")]
    assert plan_[1]["init_from"] == plan_[0]["model_dir"] == str(tmp_path / "run/stages/mnist/m1_28")
    assert plan_[1]["config"]["learning_rule"]["target_locations"] == [6.0]
    assert plan_[1]["config"]["stages"] == ["mnist/m1_28"]
    assert not (tmp_path / "run").exists()  # nothing was set up
    listing = run_module("tf_pyramid.train", ["--list_experiments"], cwd=str(tmp_path))
    lines = listing.stdout.splitlines()
    assert listing.returncode == 0 and len(lines) == len(experiments.experiment_names())
    assert any(line.startswith("imagenet/m2_256_ct29 ") and "after imagenet/m2_128_ct13.5" in line
               for line in lines)
