"""Flag validation: every bad flag stops before any work with a message saying what to change."""
import glob
import os

import pytest

from tf_pyramid.configs import experiments as experiment_files
from tf_pyramid.training import chain
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
    assert c.model.levels == 2 and c.model.resolution == 28
    assert c.schedule.learning_rate == 0.01 and c.evaluation.batch_size == c.schedule.batch_size
    c = resolve_config(config(resolution=None, levels=3))
    assert c.model.resolution == 56


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
    (dict(learning_rate=float("nan")), "--learning_rate=nan is not a finite number"),
    (dict(c_t=[2.0, float("inf")]), "--c_t=[2.0, inf] is not a finite number"),
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


FLAGS_DIR = os.path.join(REPO, "flags")
FAMILY_DIR = os.path.join(FLAGS_DIR, "common")
ALL_FLAGFILES = sorted(glob.glob(os.path.join(FLAGS_DIR, "**", "*.cfg"), recursive=True))
FAMILY_FLAGFILES = [p for p in ALL_FLAGFILES if os.path.dirname(p) == FAMILY_DIR]
EXPERIMENT_FLAGFILES = [p for p in ALL_FLAGFILES if p not in FAMILY_FLAGFILES]
SELF_CONTAINED = {"quickstart.cfg"}  # the README's first command: readable on its own
ALIASES = {"m2_256.cfg": "imagenet/m2_256_ct29.cfg"}  # a short name that nests one experiment


def relative(path):
    return os.path.relpath(path, FLAGS_DIR)


def _parse_flagfile(path, *extra):
    """The typed config of `--flagfile=PATH EXTRA...` as the trainer reads it."""
    command = experiment_files.CommandLine(["train", f"--flagfile={path}", *extra])
    return chain.parse_argv(command.argv)


@pytest.fixture(scope="module")
def experiments():
    """`{path relative to flags/: {flag: value}}` of every experiment flagfile."""
    return {relative(path): _parse_flagfile(path).flag_values() for path in EXPERIMENT_FLAGFILES}


def own_assignments(path):
    """The `--name=value` lines of a flagfile itself (nested files not expanded)."""
    with open(path) as file:
        lines = [line.strip() for line in file]
    return [tuple(line[2:].split("=", 1)) for line in lines if line.startswith("--")]


def test_experiment_flagfiles_are_found_in_every_folder():
    folders = {os.path.dirname(relative(path)) for path in EXPERIMENT_FLAGFILES}
    assert {"", "mnist", "imagenet", "multilevel"} <= folders
    assert len(EXPERIMENT_FLAGFILES) >= 60 and FAMILY_FLAGFILES


@pytest.mark.parametrize("path", EXPERIMENT_FLAGFILES, ids=relative)
def test_every_flagfile_parses_and_resolves(path, tmp_path):
    raw = _parse_flagfile(path, f"--model_dir={tmp_path / 'run'}")
    if raw.data.data_dir and not os.path.isdir(raw.data.data_dir):
        raw.data.data_dir = None
    c = resolve_config(raw)
    assert c.model.levels >= 1 and c.trainer.model_dir == str(tmp_path / "run")
    assert c.experiment == relative(path)[:-len(".cfg")]


@pytest.mark.parametrize("path", EXPERIMENT_FLAGFILES, ids=relative)
def test_experiment_files_nest_a_family_file_and_state_only_what_differs(path):
    name = relative(path)
    own = own_assignments(path)
    if name in SELF_CONTAINED:
        assert not [value for key, value in own if key == "flagfile"]
        return
    if name in ALIASES:
        assert own == [("flagfile", ALIASES[name])]
        return
    key, family = own[0]
    assert key == "flagfile" and family.startswith("../common/"), own[0]
    family_file = experiment_files.find_flagfile(family, including_file=path)
    inherited = dict(arg[2:].split("=", 1) for arg in experiment_files.read_flagfile(family_file))
    restated = [(k, v) for k, v in own[1:] if inherited.get(k) == v]
    assert not restated, f"{name} restates its family file's {restated}"
    assert not {"model", "resolution", "model_dir", "init_from", "previous_stage"} & set(inherited)
    # A run's directory follows from its name (runs/<experiment>) and its start from its chain.
    assert not {"model_dir", "init_from"} & {k for k, _ in own}, name


def test_family_files_hold_the_paper_hyper_parameters():
    def family(name):
        raw = _parse_flagfile(os.path.join(FAMILY_DIR, name)).flag_values()
        return {k: raw[k] for k in ("dataset", "epochs", "batch_size", "learning_rate",
                                    "lambda_f", "lambda_t", "lambda_r", "mc_samples",
                                    "eval_split", "eval_passes", "policy")}

    assert family("mnist_pyramid.cfg") == dict(
        dataset="mnist", epochs=70, batch_size=128, learning_rate=0.01, lambda_f=1e-6,
        lambda_t=1e-7, lambda_r=1e-7, mc_samples=2, eval_split="validation", eval_passes=20,
        policy="sample")
    assert family("imagenet_pyramid.cfg") == dict(
        dataset="imagenet2012", epochs=200, batch_size=128, learning_rate=0.001, lambda_f=1e-8,
        lambda_t=1e-9, lambda_r=1e-9, mc_samples=2, eval_split="validation", eval_passes=1,
        policy="threshold")
    for name in ("mnist.cfg", "imagenet.cfg"):  # baselines: no learning rule, no attention
        values = family(name)
        assert values["lambda_f"] == values["lambda_t"] == values["lambda_r"] == 0.0
        assert values["policy"] == "threshold" and values["eval_split"] == "validation"


def test_every_previous_stage_is_the_previous_resolution_of_the_same_model(experiments):
    chained = 0
    for name, raw in experiments.items():
        if not raw["previous_stage"]:
            continue
        before = experiments[raw["previous_stage"] + ".cfg"]
        assert before["model"] == raw["model"], (name, raw["previous_stage"])
        assert before["resolution"] * 2 == raw["resolution"], (name, raw["previous_stage"])
        chained += 1
    assert chained  # the rule of which files chain is checked below


def test_chains_follow_the_paper(experiments):
    """ImageNet: 32 and 64 px from scratch, every 128 / 256 px session (models and baselines) from
    the previous resolution; MNIST: 56 px gradual variants beside from-scratch ones."""
    for name, raw in experiments.items():
        if name.startswith(("imagenet/", "multilevel/")):
            assert bool(raw["previous_stage"]) == (raw["resolution"] >= 128), name
        elif name.startswith("mnist/"):
            assert bool(raw["previous_stage"]) == name.endswith("_gradual.cfg"), name
            if name.endswith("_gradual.cfg"):
                assert raw["resolution"] == 56
                assert name.replace("_gradual", "") in experiments  # the from-scratch twin
    gradual_mnist = [n for n in experiments if n.startswith("mnist/") and "_gradual" in n]
    assert len([n for n in gradual_mnist if "/bl" in n]) == 3
    assert len([n for n in gradual_mnist if "/m" in n]) == 6


def test_paper_evaluation_protocol(experiments):
    """MNIST: the mean of 20 re-drawn passes on validation, sampled attention for the models;
    ImageNet: the validation split (its test labels are not public)."""
    for name, raw in experiments.items():
        if name.startswith("mnist/"):
            assert raw["eval_split"] == "validation" and raw["eval_passes"] == 20, name
            pyramid = training_flags.is_pyramid(raw["model"])
            assert raw["policy"] == ("sample" if pyramid else "threshold"), name
        elif raw["dataset"] == "imagenet2012":
            assert raw["eval_split"] == "validation", name


def test_eval_split_defaults_to_validation():
    assert default_config().evaluation.split == "validation"


def test_command_line_list_replaces_the_flagfiles(tmp_path):
    path = os.path.join(FLAGS_DIR, "multilevel", "imagenet_m2_128.cfg")
    c = resolve_config(_parse_flagfile(path, f"--model_dir={tmp_path}"))
    assert c.learning_rule.target_locations == [3.2, 13.5]
    assert c.learning_rule.level_weights == [1.0, 1.0, 1.0]
    c = resolve_config(_parse_flagfile(path, f"--model_dir={tmp_path}", "--c_t=7",
                                       "--level_weights=0,1,1"))
    assert c.learning_rule.target_locations == [7.0]
    assert c.learning_rule.level_weights == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("flag, message", [
    ("--c_t=2,x", "--c_t takes numbers separated by commas, e.g. --c_t=3.2,13.5"),
    ("--level_weights=1,one", "--level_weights takes numbers separated by commas"),
    ("--c_t=2,3,4", "--c_t has 3 values for 2 levels"),
])
def test_bad_list_values(flag, message, tmp_path):
    with pytest.raises(FlagError) as error:  # when read, or when resolved
        resolve_config(_parse_flagfile(os.path.join(FLAGS_DIR, "quickstart.cfg"),
                                       f"--model_dir={tmp_path}", flag))
    assert message in str(error.value)


def test_flagfile_overrides_and_multi_c_t(tmp_path):
    path = tmp_path / "multi.cfg"
    path.write_text("--model=imagenet_m2\n--dataset=imagenet2012\n--resolution=128\n"
                    "--c_t=3.2,13.5\n--level_weights=0,1,1\n# comment\n")
    c = resolve_config(_parse_flagfile(path, f"--model_dir={tmp_path}", "--epochs=3"))
    assert c.learning_rule.target_locations == [3.2, 13.5]
    assert c.learning_rule.level_weights == [0.0, 1.0, 1.0]
    assert c.schedule.epochs == 3 and c.model.levels == 3 and c.schedule.learning_rate == 0.001


def test_bad_command_line_values_get_one_usage_line_not_a_traceback():
    """absl's own parse errors (bounds, unknown flags) and the resolution checks that need no
    data: a short message and exit code 1 or 2, before any data is read."""
    from tests.helpers import run_module
    for args, expected in ((["--batch_size=0"], "--batch_size"),
                           (["--epoch=3"], "Unknown command line flag 'epoch'"),
                           (["--model=imagenet_m2", "--levels=13"],
                            "levels must be an integer between 1 and 12")):
        process = run_module("tf_pyramid.train", ["--flagfile=flags/quickstart.cfg", *args,
                                                  "--model_dir=/nonexistent/run"], timeout=300)
        assert process.returncode in (1, 2), process.stderr[-2000:]
        assert expected in process.stderr and "Traceback" not in process.stderr, args
