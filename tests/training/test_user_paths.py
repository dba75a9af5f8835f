"""The paths a user walks after the quickstart, as the user walks them: the real flagfiles in a
fresh process (data and epochs overridden), chained runs, the console, `--dry_run`, a missing
evaluation split, and a finished run's model.keras loaded in a fresh process."""
import json
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests.helpers import REPO, encode, python_env, run_module, run_script, sample_photos
from tests.helpers import slim_example, tiny_config
from tests.helpers import write_tfrecords
from tf_pyramid.training import FlagError, Trainer

MNIST_TINY = ["--source=bundled", "--epochs=1", "--steps_per_epoch=2", "--batch_size=16",
              "--eval_batch_size=250", "--eval_passes=2", "--checkpoint_every=100"]


def _train(flagfile, model_dir, *extra):
    process = run_module("tf_pyramid.train", [f"--flagfile={flagfile}", f"--model_dir={model_dir}",
                                              *extra], timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def test_dry_run_prints_the_resolved_configuration(tmp_path):
    source = tmp_path / "m1_28.keras"
    with zipfile.ZipFile(source, "w") as archive:  # stands for a finished stage's model file
        archive.writestr("config.json", "{}")
    process = run_module("tf_pyramid.train", [
        "--flagfile=flags/mnist/m1_56_ct6_gradual.cfg", f"--init_from={source}",
        f"--model_dir={tmp_path / 'run'}", "--dry_run"])
    assert process.returncode == 0, process.stderr[-2000:]
    stages = json.loads(process.stdout)["stages"]
    assert len(stages) == 1  # --init_from given: this stage only, not its chain
    config = stages[0]["config"]
    assert set(config) == {"experiment", "previous_stage", "model", "data", "learning_rule",
                           "schedule", "evaluation", "trainer", "stages", "run"}
    assert config["model"] == {"name": "mnist_m1", "levels": 3, "resolution": 56,
                               "policy": "sample", "dtype_policy": "float32"}
    assert config["learning_rule"]["target_locations"] == [6.0]
    assert config["trainer"]["init_from"] == str(source)
    assert config["schedule"]["learning_rate"] == 0.01
    assert config["evaluation"]["split"] == "validation" and config["evaluation"]["passes"] == 20
    assert not (tmp_path / "run").exists()  # nothing was set up


def test_missing_eval_split_is_refused_before_training(tmp_path):
    photo = encode(sample_photos()["coffee"][::4, ::4], "JPEG")
    data = tmp_path / "records"
    data.mkdir()
    write_tfrecords(str(data), "train", [slim_example(photo, 1 + i % 2, f"{i}.jpg")
                                         for i in range(8)], 1)
    model_dir = tmp_path / "run"
    config = tiny_config(model_dir, dataset="tfrecord", data_dir=str(data), model="imagenet_m1",
                         resolution=64, c_t=[1.5], steps_per_epoch=1, validation_split="none")
    with pytest.raises(FlagError, match="--eval_split=validation cannot be evaluated"):
        Trainer(config).run()
    assert not (model_dir / "checkpoints").exists() and not (model_dir / "config.json").exists()


def _train_until(args, pattern, after):
    """Runs `python -m tf_pyramid.train ARGS` and kills it (SIGKILL) at the first line matching
    `pattern` that comes after a line matching `after`; returns the console so far."""
    process = subprocess.Popen([sys.executable, "-m", "tf_pyramid.train", *args], cwd=REPO,
                               env=python_env(TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seen, lines = False, []
    try:
        for line in process.stderr:
            lines.append(line)
            seen = seen or after in line
            if seen and pattern in line:
                process.kill()
                break
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(lines)[-3000:]
    return "".join(lines)


@pytest.mark.slow
def test_mnist_chain_28_to_56_px_in_one_command_killed_and_resumed(tmp_path):
    """`--experiment=mnist/m1_56_ct6_gradual` trains its 28 px stage, then the 56 px stage from
    it; killed (kill -9) in the middle of stage 2, the same command skips stage 1 and resumes."""
    model_dir = tmp_path / "m1_56"
    args = ["--experiment=mnist/m1_56_ct6_gradual", f"--model_dir={model_dir}", *MNIST_TINY,
            "--epochs=2", "--steps_per_epoch=3", "--checkpoint_every=2"]
    console = _train_until(args, "Checkpoint", after="Stage 2 of 2")
    first = model_dir / "stages" / "mnist" / "m1_28"
    assert "Stage 1 of 2 (mnist/m1_28): training in" in console
    assert (first / "metrics.json").exists() and not (model_dir / "metrics.json").exists()
    process = run_module("tf_pyramid.train", args, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Stage 1 of 2 (mnist/m1_28): finished before, skipped" in process.stderr
    assert "Stage 2 of 2 (mnist/m1_56_ct6_gradual): resumes from its checkpoint" in process.stderr
    assert "Resuming from" in process.stderr
    # The console of a non-terminal stdout: no progress bar.
    assert "\r" not in process.stdout and "Weights digest" not in process.stderr
    config = json.loads((model_dir / "config.json").read_text())
    assert config["trainer"]["init_from"] == str(first)
    assert config["stages"][0]["experiment"] == "mnist/m1_28"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["passes"] == 2 and metrics["step"] == 6
    assert metrics["policy"] == "sample" and metrics["resolution"] == 56
    assert [e["level"] for e in metrics["levels"]] == [1, 2, 3]
    assert [e["level"] for e in metrics["threshold"]["levels"]] == [1, 2, 3]
    assert len(metrics["accuracy_std"]) == 3  # the spread over the re-drawn passes
    assert (model_dir / "export" / "1" / "saved_model.pb").exists()
    again = run_module("tf_pyramid.train", args, timeout=300)  # all done: nothing to train
    assert again.returncode == 0 and "All 2 stages finished before" in again.stdout


LOAD = r"""
import json, sys
import numpy as np, keras
import tf_pyramid
model = keras.saving.load_model(sys.argv[1])
x = np.random.default_rng(0).uniform(-1, 1, [2, 128, 128, 3]).astype("float32")
out = model(x)
print(json.dumps({"levels": model.levels, "convention": model.input_convention,
                  "shape": list(out["level_logits"].shape),
                  "rule": model.learning_rule["target_locations"]}))
"""


@pytest.mark.slow
def test_imagenet_chain_64_to_128_px_in_one_command_on_tfrecords_of_real_photos(tmp_path):
    data = tmp_path / "records"
    data.mkdir()
    photos = list(sample_photos().values())
    for split, count in (("train", 12), ("validation", 6)):
        examples = [slim_example(encode(photos[i % 3][::2, ::2], "JPEG"), 1 + i % 3, f"{i}.jpg")
                    for i in range(count)]
        write_tfrecords(str(data), split, examples, 2)
    (data / "labels.txt").write_text("cat\ncoffee\nastronaut\n")
    tiny = ["--dataset=tfrecord", f"--data_dir={data}", "--epochs=1", "--steps_per_epoch=2",
            "--batch_size=4", "--eval_batch_size=6", "--checkpoint_every=100"]
    second = tmp_path / "m2_128_ct7"
    process = _train("flags/imagenet/m2_128_ct7.cfg", second, *tiny)  # the whole chain
    first = second / "stages" / "imagenet" / "m2_64_ct4.5"
    assert f"module weight arrays from {first}" in process.stderr
    assert (first / "metrics.json").exists() and (first / "export" / "1").exists()
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["num_examples"] == 6
    assert [e["level"] for e in metrics["levels"]] == [1, 2, 3]
    assert (second / "class_index.txt").read_text() == "cat\ncoffee\nastronaut\n"
    assert (second / "export" / "1" / "saved_model.pb").exists()
    report = json.loads(run_script(LOAD, str(second / "model.keras")).stdout.splitlines()[-1])
    assert report["levels"] == 3 and report["shape"] == [2, 3, 3] and report["rule"] == [7.0, 7.0]
    assert report["convention"] == {"input_size": 128, "channels": 3, "value_range": [-1.0, 1.0],
                                    "resize_method": "bilinear"}
    assert np.isfinite([e["accuracy"] for e in metrics["levels"]]).all()
