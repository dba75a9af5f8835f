"""A stage whose `--init_from` run is missing names the flagfile to run first."""
import os
import resource

import pytest
from absl import flags as absl_flags

from tests.helpers import REPO, run_module
from tf_pyramid.training import flagfiles
from tf_pyramid.training import flags as training_flags
from tf_pyramid.training.flags import FlagError, resolve_config


def write(path, *lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A small flags/ tree (family file, a two-stage chain, an alias) run from its root."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "flags/common/family.cfg", "# shared", "--epochs=3", "--model_dir=runs/wrong")
    write(tmp_path / "flags/chain/stage1.cfg", "--flagfile=flags/common/family.cfg",
          "--model_dir=runs/stage1")
    write(tmp_path / "flags/chain/stage2.cfg", "--flagfile=flags/common/family.cfg",
          "--init_from=runs/stage1", "--model_dir=runs/stage2")
    write(tmp_path / "flags/alias.cfg", "// the short name", "--flagfile=flags/chain/stage1.cfg")
    return tmp_path


def test_flagfiles_in_argv():
    argv = ["train", "--flagfile=a.cfg", "--epochs=2", "-flagfile=b.cfg", "--flagfile", "c.cfg",
            "--", "--flagfile=ignored.cfg"]
    assert flagfiles.flagfiles_in_argv(argv) == ["a.cfg", "b.cfg", "c.cfg"]
    assert flagfiles.flagfiles_in_argv(["train", "--model_dir=x"]) == []


def test_read_assignments_expands_nested_files_in_place_like_absl(tree):
    stage2 = "flags/chain/stage2.cfg"
    assert flagfiles.read_assignments(stage2) == [
        ("epochs", "3"), ("model_dir", "runs/wrong"), ("init_from", "runs/stage1"),
        ("model_dir", "runs/stage2")]
    assert flagfiles.flag_value(stage2, "model_dir") == "runs/stage2"  # the last one wins
    values = absl_flags.FlagValues()
    training_flags.define_flags(values)
    values(["train", f"--flagfile={stage2}"])
    assert values.model_dir == "runs/stage2" and values.epochs == 3
    write(tree / "flags/loop.cfg", "--flagfile=flags/loop.cfg", "--seed=1")  # a cycle ends
    assert flagfiles.read_assignments("flags/loop.cfg") == [("seed", "1")]
    assert flagfiles.read_assignments("flags/missing.cfg") == []


def test_flags_tree_is_the_nearest_folder_named_flags(tree, tmp_path_factory):
    assert flagfiles.flags_tree("flags/chain/stage2.cfg") == str(tree / "flags")
    assert flagfiles.flags_tree(str(tree / "flags/alias.cfg")) == str(tree / "flags")
    elsewhere = write(tmp_path_factory.mktemp("mine") / "exp" / "x.cfg", "--seed=1")
    assert flagfiles.flags_tree(str(elsewhere)) == str(elsewhere.parent)


@pytest.mark.parametrize("init_from", ["runs/stage1", "runs/stage1/", "./runs/stage1",
                                       "runs/x/../stage1", "runs/stage1/model.keras"])
def test_flagfile_for_run_finds_the_stage_that_writes_it(tree, init_from):
    # The alias nests stage1 (same model_dir); the file that sets --model_dir itself wins.
    assert flagfiles.flagfile_for_run(init_from, ["flags/chain/stage2.cfg"]) == os.path.join(
        "flags", "chain", "stage1.cfg")
    assert flagfiles.flagfile_for_run(str(tree / init_from), [str(tree / "flags/alias.cfg")]) \
        == os.path.join("flags", "chain", "stage1.cfg")


def test_flagfile_for_run_none_when_no_flagfile_writes_it(tree):
    assert flagfiles.flagfile_for_run("runs/other", ["flags/chain/stage2.cfg"]) is None
    assert flagfiles.flagfile_for_run("runs/stage1", []) is None
    assert flagfiles.run_first_message("runs/other", ["flags/chain/stage2.cfg"]) is None
    (tree / "runs/stage1").mkdir(parents=True)  # it exists: the usual checks speak instead
    assert flagfiles.run_first_message("runs/stage1", ["flags/chain/stage2.cfg"]) is None


def test_run_first_message(tree):
    message = flagfiles.run_first_message("runs/stage1", ["flags/chain/stage2.cfg"])
    assert message.startswith("--init_from=runs/stage1 does not exist yet: run `python -m "
                              "tf_pyramid.train --flagfile=flags/chain/stage1.cfg` first")


def test_every_chained_repository_flagfile_names_its_previous_stage(monkeypatch, tmp_path):
    """resolve_config, given the command line's flagfile, names the flagfile that trains the
    missing --init_from run: for every chain in flags/."""
    monkeypatch.chdir(REPO)
    checked = 0
    for directory, _, names in os.walk("flags"):
        for name in sorted(names):
            path = os.path.join(directory, name)
            init_from = flagfiles.flag_value(path, "init_from")
            if not init_from or os.path.exists(init_from):
                continue
            values = absl_flags.FlagValues()
            training_flags.define_flags(values)
            values(["train", f"--flagfile={path}", f"--model_dir={tmp_path / 'run'}"])
            with pytest.raises(FlagError) as error:
                resolve_config(training_flags.config_from_flags(values), flagfiles=[path])
            previous = flagfiles.flagfile_for_run(init_from, [path])
            assert flagfiles.flag_value(previous, "model_dir") == init_from
            assert previous != path and previous.startswith("flags/")
            assert f"--flagfile={previous}` first" in str(error.value), str(error.value)
            checked += 1
    assert checked >= 20


@pytest.mark.slow  # one fresh process: the TensorFlow import takes 10-35 s on a shared 2-core box
def test_train_names_the_flagfile_to_run_first_before_any_work(tmp_path):
    if os.path.exists(os.path.join(REPO, "runs/mnist/m1_28")):
        pytest.skip("runs/mnist/m1_28 exists in this checkout")
    model_dir = tmp_path / "run"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = run_module("tf_pyramid.train", ["--flagfile=flags/mnist/m1_56_ct6_gradual.cfg",
                                              f"--model_dir={model_dir}"], timeout=180)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert process.returncode == 2, process.stderr[-2000:]
    assert ("Error: --init_from=runs/mnist/m1_28 does not exist yet: run `python -m "
            "tf_pyramid.train --flagfile=flags/mnist/m1_28.cfg` first") in process.stderr
    assert not model_dir.exists()  # nothing written, no data read, no model built
    # CPU time, not wall time (the machine is shared): about 11 s, nearly all of it the
    # TensorFlow import; reading the digits or building the model would add to it.
    assert cpu_seconds < 40, cpu_seconds
