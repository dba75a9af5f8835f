"""Flag validation: every bad flag stops before any work with a message saying what to change."""
import glob
import os

import pytest
from absl import flags as absl_flags

from tf_pyramid.training import flags as training_flags
from tf_pyramid.training.flags import FlagError, default_config, resolve_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config(**overrides):
    base = dict(model="mnist_m2", resolution=28, dataset="mnist", source="bundled",
                model_dir="/tmp/unused_run_dir")
    base.update(overrides)
    return default_config(**base)


def test_good_config_resolves_levels_and_defaults():
    c = resolve_config(config(c_t=[2.0]))
    assert c["levels"] == 2 and c["resolution"] == 28
    assert c["learning_rate"] == 0.01 and c["eval_batch_size"] == c["batch_size"]
    c = resolve_config(config(resolution=None, levels=3))
    assert c["resolution"] == 56


@pytest.mark.parametrize("overrides, message", [
    (dict(model="mnist_m7"), "Unknown --model=mnist_m7; use one of"),
    (dict(model=None), "--model is required"),
    (dict(dataset=None), "--dataset is required"),
    (dict(dataset="cifar10"), "Unknown --dataset=cifar10"),
    (dict(dataset="folder"), "set --data_dir"),
    (dict(data_dir="/nonexistent/images"), "--data_dir=/nonexistent/images is not a directory"),
    (dict(resolution=30), "--resolution=30 does not fit --model=mnist_m2"),
    (dict(resolution=56, levels=2), "--levels=2 does not match --resolution=56"),
    (dict(resolution=None, levels=None), "Set --resolution (or --levels)"),
    (dict(model="mnist_m2", resolution=112, levels=None), "--resolution must divide 56"),
    (dict(resolution=56, c_t=[6.0, 12.0, 1.0]), "--c_t has 3 values for 3 levels"),
    (dict(level_weights=[1.0, 1.0, 1.0]), "--level_weights has 3 values for 2 levels"),
    (dict(level_weights=[0.0, 0.0]), "all zero"),
    (dict(source="internet"), "Unknown --source=internet"),
    (dict(variant="blurry"), "Unknown --variant=blurry"),
    (dict(policy="topk:12"), "--policy"),
    (dict(model="mnist_bl2", policy="sample"), "baseline and has no attention policy"),
    (dict(init_from="/nonexistent/run"), "--init_from=/nonexistent/run does not exist"),
    (dict(model_dir=None), "--model_dir is required"),
    (dict(validation_split="dev"), "--validation_split=dev"),
    (dict(lr_decay_at=["0.8", "1.5"]), "--lr_decay_at fractions"),
    (dict(mc_samples=0), "--mc_samples must be >= 1"),
])
def test_bad_flags_raise_with_what_to_change(overrides, message):
    with pytest.raises(FlagError) as error:
        resolve_config(config(**overrides))
    assert message in str(error.value)


def test_unreadable_init_from(tmp_path):
    not_a_model = tmp_path / "model.keras"
    not_a_model.write_text("not a zip")
    with pytest.raises(FlagError, match="not a .keras model file"):
        resolve_config(config(init_from=str(not_a_model)))
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    with pytest.raises(FlagError, match="neither model.keras nor a checkpoint"):
        resolve_config(config(init_from=str(empty_run)))


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(FlagError, match="needs the TF_CONFIG environment variable"):
        resolve_config(config(strategy="multi_worker"))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(FlagError, match="not valid JSON"):
        resolve_config(config(strategy="multi_worker"))


def _parse_flagfile(path, *extra):
    values = absl_flags.FlagValues()
    training_flags.define_flags(values)
    values(["train", f"--flagfile={path}", *extra])
    return training_flags.config_from_flags(values)


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "flags", "**", "*.cfg"), recursive=True)),
    ids=lambda path: os.path.relpath(path, os.path.join(REPO, "flags")))
def test_every_flagfile_parses_and_resolves(path, tmp_path):
    raw = _parse_flagfile(path, f"--model_dir={tmp_path / 'run'}")
    if raw["init_from"]:  # the previous stage does not exist here: check the name only
        assert raw["init_from"].startswith(("/tmp/tf_pyramid/", "runs/")), raw["init_from"]
        raw["init_from"] = None
    if raw["data_dir"] and not os.path.isdir(raw["data_dir"]):
        raw["data_dir"] = None
    c = resolve_config(raw)
    assert c["levels"] >= 1


def test_flagfile_overrides_and_multi_c_t(tmp_path):
    path = tmp_path / "multi.cfg"
    path.write_text("--model=imagenet_m2\n--dataset=imagenet2012\n--resolution=128\n"
                    "--c_t=3.2\n--c_t=13.5\n--level_weights=0\n--level_weights=1\n"
                    "--level_weights=1\n# comment\n")
    c = resolve_config(_parse_flagfile(path, f"--model_dir={tmp_path}", "--epochs=3"))
    assert c["c_t"] == [3.2, 13.5] and c["level_weights"] == [0.0, 1.0, 1.0]
    assert c["epochs"] == 3 and c["levels"] == 3 and c["learning_rate"] == 0.001
