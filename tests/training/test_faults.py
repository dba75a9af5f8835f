"""The trainer under faults, through its public path (tiny MNIST runs on the bundled digits):
damaged checkpoints, none restorable, a full disk while saving model.keras, a damaged
model.keras, changed settings on resume, two runs on one directory and SIGTERM."""
import builtins
import errno
import glob
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, python_env, run_module, tiny_args, tiny_config
from tf_pyramid import runs, serving
from tf_pyramid.runs import files, run_config
from tf_pyramid.evaluators import finished_run
from tf_pyramid.training import FlagError, Trainer, resolve_config

FAULTS = dict(model="mnist_m2", epochs=2, steps_per_epoch=4, batch_size=8, checkpoint_every=2)


def _config(model_dir, **overrides):
    return tiny_config(model_dir, **dict(FAULTS, **overrides))


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped at step 4 of 8 (checkpoints 2 and 4), and the weights of checkpoint 2."""
    model_dir = tmp_path_factory.mktemp("faults") / "stopped"
    result = Trainer(_config(model_dir, stop_after_steps=4)).run()
    assert result["interrupted"] and result["final_step"] == 4 and result["signal"] is None
    model, _ = runs.load_run_model(str(model_dir), checkpoint=str(model_dir / "checkpoints" /
                                                                     "ckpt-2"))
    return model_dir, [w.numpy() for w in model.weights]


def _copy(stopped_run, tmp_path):
    model_dir = tmp_path / "run"
    shutil.copytree(stopped_run[0], model_dir)
    return model_dir


def _tree(directory):
    digests = {}
    for path in sorted(glob.glob(f"{directory}/**", recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                digests[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return digests


def _damage(checkpoint_dir, kind, step=4):
    prefix = os.path.join(checkpoint_dir, f"ckpt-{step}")
    if kind == "deleted_index":
        os.remove(prefix + ".index")
    elif kind == "corrupt_index":
        with open(prefix + ".index", "r+b") as f:
            f.write(b"garbage!" * 8)
    elif kind == "truncated_data":
        data = prefix + ".data-00000-of-00001"
        os.truncate(data, os.path.getsize(data) // 2)
    elif kind == "corrupt_data":
        data = prefix + ".data-00000-of-00001"
        with open(data, "r+b") as f:
            f.seek(os.path.getsize(data) // 2)
            f.write(b"\xde\xad\xbe\xef")
    elif kind == "empty_state":
        open(os.path.join(checkpoint_dir, "checkpoint"), "w").close()
    elif kind == "garbage_state":
        with open(os.path.join(checkpoint_dir, "checkpoint"), "wb") as f:
            f.write(os.urandom(64) + b"\xff")


@pytest.mark.parametrize("kind", ["deleted_index", "corrupt_index", "truncated_data",
                                  "corrupt_data", "empty_state", "garbage_state"])
def test_resume_skips_a_damaged_checkpoint_and_keeps_it(stopped_run, tmp_path, kind):
    model_dir = _copy(stopped_run, tmp_path)
    checkpoint_dir = model_dir / "checkpoints"
    _damage(checkpoint_dir, kind)
    state_kind = kind.endswith("state")
    damaged = {n: h for n, h in _tree(checkpoint_dir).items()
               if (n == "checkpoint" if state_kind else n.startswith("ckpt-4"))}
    if kind == "deleted_index":  # evaluation falls back too, and moves nothing
        before = _tree(model_dir)
        assert finished_run.evaluate_run(str(model_dir))["source_file"].endswith("ckpt-2")
        assert _tree(model_dir) == before
    trainer = Trainer(_config(model_dir))
    trainer.setup()
    trainer.close()  # the run lock; the trainer stays usable
    kept = glob.glob(f"{checkpoint_dir}/damaged/*")
    assert len(kept) == 1 and os.path.exists(f"{kept[0]}/WHY.txt")
    assert {n: h for n, h in _tree(kept[0]).items() if n != "WHY.txt"} == damaged
    if state_kind:  # the checkpoints themselves are intact: the newest restores
        assert trainer.initial_step == 4
        return
    assert trainer.initial_step == 2 and int(trainer.optimizer.iterations.numpy()) == 2
    for variable, value in zip(trainer.model.weights, stopped_run[1]):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
    # The manager starts from ckpt-2 (this used to restart from step 0 on a deleted index, and
    # the manager then deleted ckpt-2): the next save is a new ckpt-4 beside the kept one.
    assert [os.path.basename(p) for p in trainer.manager.checkpoints] == ["ckpt-2"]
    trainer.step.assign(4)
    trainer.save_checkpoint("test")
    assert [os.path.basename(p) for p in trainer.manager.checkpoints] == ["ckpt-2", "ckpt-4"]
    assert {n: h for n, h in _tree(kept[0]).items() if n != "WHY.txt"} == damaged


@pytest.fixture
def train_cli():
    """`python -m tf_pyramid.train` in this process: `train_cli(args)` -> exit status."""
    from tf_pyramid import train  # noqa: PLC0415  (defines the absl flags)

    def main(args):
        train.FLAGS(["train", *args])
        return train.main(["train"])
    yield main
    train.FLAGS.unparse_flags()


def test_no_restorable_checkpoint_stops_with_an_error(stopped_run, tmp_path, train_cli, capsys):
    model_dir = _copy(stopped_run, tmp_path)
    _damage(model_dir / "checkpoints", "deleted_index", 4)
    _damage(model_dir / "checkpoints", "truncated_data", 2)
    before = _tree(model_dir)
    assert train_cli(tiny_args(model_dir, **FAULTS)) == 2
    stderr = capsys.readouterr().err
    assert "Error: None of the 2 checkpoint(s)" in stderr
    assert "ckpt-4: its index file ckpt-4.index is missing" in stderr
    assert "ckpt-2: its data file ckpt-2.data-* is damaged" in stderr
    assert "Nothing was deleted" in stderr
    after = _tree(model_dir)
    assert {n: h for n, h in after.items() if n != "run.lock"} == \
        {n: h for n, h in before.items() if n != "run.lock"}
    # evaluate falls back the same way, and says the same when nothing restores.
    with pytest.raises(ValueError, match="None of the 2 checkpoint"):
        finished_run.evaluate_run(str(model_dir))


def test_full_disk_while_saving_the_model_then_resume(stopped_run, tmp_path, monkeypatch):
    model_dir = _copy(stopped_run, tmp_path)
    real_open = builtins.open

    def failing_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".keras") and "w" in mode:
            f = real_open(file, mode, *args, **kwargs)
            f.write(b"PK\x03\x04 a few bytes, then the disk is full")
            f.close()
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    # --epochs=1: the 4 steps are done, the run goes straight to its final evaluation and save.
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", failing_open)
        with pytest.raises(OSError, match="No space left"):
            Trainer(_config(model_dir, epochs=1)).run()
    names = os.listdir(model_dir)
    assert "model.keras" not in names and "metrics.json" not in names
    assert not [n for n in names if ".tmp" in n]
    result = Trainer(_config(model_dir, epochs=1)).run()  # the lock was released; rerun finishes
    assert result["initial_step"] == 4 and result["metrics"]["step"] == 4
    files.check_keras_file(model_dir / "model.keras")

    # A truncated model.keras gets "damaged" from evaluate and from export's loader.
    data = (model_dir / "model.keras").read_bytes()
    (model_dir / "model.keras").write_bytes(data[:len(data) // 3])
    with pytest.raises(files.DamagedFileError, match="model.keras is damaged"):
        finished_run.evaluate_run(str(model_dir))
    with pytest.raises(files.DamagedFileError, match="model.keras is damaged"):
        serving.load_model(str(model_dir))
    # The checkpoint is still there to evaluate.
    assert finished_run.evaluate_run(str(model_dir), use_checkpoint=True)["source_file"].endswith(
        "ckpt-4")


def test_changed_settings_on_resume(stopped_run, tmp_path):
    model_dir = _copy(stopped_run, tmp_path)
    saved = (model_dir / "config.json").read_bytes()
    with pytest.raises(run_config.IncompatibleConfigError,
                       match=r"--model: saved 'mnist_m2', now 'mnist_m1' \(the checkpoint holds"):
        Trainer(_config(model_dir, model="mnist_m1")).run()
    with pytest.raises(run_config.IncompatibleConfigError, match="--levels: saved 2, now 3"):
        Trainer(_config(model_dir, resolution=56, c_t=[2.0])).run()
    assert (model_dir / "config.json").read_bytes() == saved
    assert not (model_dir / "config_history").exists()

    trainer = Trainer(_config(model_dir, learning_rate=0.005, epochs=3, batch_size=16))
    trainer.setup()
    trainer.close()
    assert trainer.initial_step == 4 and trainer.total_steps == 12
    history = run_config.history(str(model_dir))
    assert [c.schedule.learning_rate for c in history] == [0.01, 0.005]
    assert [c.schedule.batch_size for c in history] == [8, 16]
    assert os.listdir(model_dir / "config_history") == ["001-until-step-4.json"]


@pytest.mark.slow
def test_second_run_refused_and_sigterm_exits_143_then_resumes(tmp_path, train_cli, capsys):
    model_dir = tmp_path / "run"
    # Long enough to be stopped by SIGTERM, not to finish.
    settings = dict(FAULTS, epochs=1000, steps_per_epoch=50, checkpoint_every=10)
    args = tiny_args(model_dir, **settings)
    first = subprocess.Popen([sys.executable, "-m", "tf_pyramid.train", *args], cwd=REPO,
                             env=python_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not glob.glob(f"{model_dir}/checkpoints/ckpt-*.index"):
            assert first.poll() is None and time.time() < deadline, first.stderr.read()[-3000:]
            time.sleep(0.5)
        # A second training on the same directory (here in this process) is refused.
        assert train_cli(args) == 2
        refused = capsys.readouterr().err
        assert f"is in use by another training run (pid {first.pid} on" in refused
        assert "Two trainings in one run directory overwrite each other's" in refused
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, stderr[-3000:]
    assert "resume with the same command" in stderr
    step = int(re.search(r"Interrupted by SIGTERM at step (\d+) of 50000", stderr).group(1))
    # The checkpoint is where training stopped (the next step after the signal).
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith(f"ckpt-{step}")

    # The lock died with the process; the same settings resume from that step.
    trainer = Trainer(tiny_config(model_dir, **settings))
    trainer.setup()
    trainer.close()
    assert trainer.initial_step == step and int(trainer.optimizer.iterations.numpy()) == step


def test_a_non_finite_state_is_never_checkpointed(tmp_path):
    """A checkpoint with NaN weights would be what every rerun resumes from: it is refused, and
    the last finite checkpoint stays the newest."""
    model_dir = tmp_path / "run"
    trainer = Trainer(_config(model_dir, stop_after_steps=2))
    trainer.run()
    kept = list(trainer.manager.checkpoints)
    weight = trainer.model.trainable_variables[0]
    weight.assign(np.full(weight.shape, np.nan, np.float32))
    trainer.step.assign(3)
    with pytest.raises(FloatingPointError, match=r"Training diverged: 1 variable\(s\) are not "
                       r"finite at step 3 .*No checkpoint was written; the last finite one"):
        trainer.save_checkpoint("test")
    assert list(trainer.manager.checkpoints) == kept
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-2")


def test_non_finite_flag_values_are_refused_on_the_command_line(tmp_path):
    model_dir = tmp_path / "run"
    process = run_module("tf_pyramid.train", tiny_args(model_dir, learning_rate="nan"))
    assert process.returncode == 2, process.stderr[-2000:]
    assert "Error: --learning_rate=nan is not a finite number" in process.stderr
    assert "Traceback" not in process.stderr and not model_dir.exists()


@pytest.mark.slow  # two fresh processes
def test_init_from_a_run_that_has_only_checkpoints(tmp_path):
    """A stage interrupted before its end has checkpoints but no model.keras: the next stage
    starts from its newest checkpoint (the optimizer it is compiled with matches the run's)."""
    first, second = tmp_path / "a", tmp_path / "b"
    stopped = run_module("tf_pyramid.train", tiny_args(first, stop_after_steps=3))
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert not (first / "model.keras").exists() and (first / "checkpoints").is_dir()
    process = run_module("tf_pyramid.train", tiny_args(second, init_from=str(first), epochs=1,
                                                       steps_per_epoch=1))
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"module weight arrays from {first / 'checkpoints' / 'ckpt-3'}" in process.stderr
    assert (second / "metrics.json").exists()
    other = run_module("tf_pyramid.train", tiny_args(tmp_path / "c", init_from=str(first),
                                                     model="mnist_bl1"))
    assert other.returncode == 2 and "Traceback" not in other.stderr, other.stderr[-2000:]
    assert f"Error: --init_from={first} cannot start this run" in other.stderr


def test_a_baseline_ignores_the_pyramid_learning_rule(tmp_path):
    """The quickstart's multi-level rule (--level_weights=1,1) with --model=mnist_bl2: the
    baseline trains on cross-entropy; the ignored flags are named in a warning."""
    config = _config(tmp_path / "run", model="mnist_bl2", level_weights=[1.0, 1.0], epochs=1,
                     steps_per_epoch=1)
    trainer = Trainer(config)
    trainer.setup()
    trainer.close()
    assert trainer.model.learning_rule["level_weights"] == [1.0]
    assert trainer.model.learning_rule["lambda_f"] == 0.0


def test_leftovers_of_a_killed_writer_are_removed_at_the_next_start(stopped_run, tmp_path):
    model_dir = _copy(stopped_run, tmp_path)
    (model_dir / ".model.keras.tmp-12345.keras").write_bytes(b"PK partial")
    (model_dir / ".metrics.json.tmp-99").write_text("{")
    (model_dir / "checkpoints" / "ckpt-9_temp").mkdir()
    (model_dir / "checkpoints" / "ckpt-9_temp" / "part-00000-of-00001.data").write_bytes(b"x")
    (model_dir / "notes.tmp-1.txt").write_text("mine")  # not ours: kept
    trainer = Trainer(_config(model_dir))
    trainer.setup()
    trainer.close()
    names = set(os.listdir(model_dir)) | set(os.listdir(model_dir / "checkpoints"))
    assert not {".model.keras.tmp-12345.keras", ".metrics.json.tmp-99", "ckpt-9_temp"} & names
    assert "notes.tmp-1.txt" in names


def test_full_disk_at_the_end_is_one_line_and_exit_2(stopped_run, tmp_path, train_cli, capsys,
                                                   monkeypatch):
    model_dir = _copy(stopped_run, tmp_path)
    real_open = builtins.open

    def failing_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".keras") and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", failing_open)
    assert train_cli(tiny_args(model_dir, **dict(FAULTS, epochs=1))) == 2
    stderr = capsys.readouterr().err
    assert "Error: [Errno 28] No space left on device" in stderr
    assert "The last checkpoint is kept" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("where", ["checkpoint", "export"])
def test_tensorflow_write_errors_are_one_line_and_exit_2(where, stopped_run, tmp_path, train_cli,
                                                          capsys, monkeypatch):
    """TensorFlow's own writers (checkpoints, the SavedModel) raise OpErrors, not OSErrors: a
    full disk there is the same one line as anywhere else."""
    model_dir = _copy(stopped_run, tmp_path)
    full = tf.errors.ResourceExhaustedError(None, None, "No space left on device")
    if where == "checkpoint":
        monkeypatch.setattr(tf.train.CheckpointManager, "save",
                            lambda *args, **kwargs: (_ for _ in ()).throw(full))
    else:
        monkeypatch.setattr(serving, "export_saved_model",
                            lambda *args, **kwargs: (_ for _ in ()).throw(full))
    status = train_cli(tiny_args(model_dir, **dict(FAULTS, export=True)))
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr, stderr[-2000:]
    expected = ("Cannot write a checkpoint to" if where == "checkpoint"
                else "Cannot write the export to")
    assert f"Error: {expected}" in stderr and "No space left on device" in stderr
    assert "The last checkpoint is kept" in stderr


def test_model_dir_that_is_a_file_or_has_a_tilde(tmp_path, monkeypatch):
    a_file = tmp_path / "not_a_dir"
    a_file.write_text("x")
    with pytest.raises(FlagError, match="--model_dir=.*not_a_dir is a file, not a directory"):
        resolve_config(tiny_config(a_file))
    monkeypatch.setenv("HOME", str(tmp_path))
    config = resolve_config(tiny_config("~/runs/x"))
    assert config.trainer.model_dir == str(tmp_path / "runs" / "x")  # no literal "~" folder


@pytest.mark.parametrize("args, message", [
    (["--policy=bogus"], "Error: Unknown attention policy 'bogus'"),
    (["--levels=0"], "Error: --levels must be >= 1; got 0."),
])
def test_evaluate_usage_errors_are_one_line(stopped_run, args, message):
    process = run_module("tf_pyramid.evaluate", [f"--model_dir={stopped_run[0]}", *args])
    assert process.returncode == 2, process.stderr[-2000:]
    assert message in process.stderr and "Traceback" not in process.stderr
