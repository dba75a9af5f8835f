"""The paths a user walks after the quickstart, as the user walks them: the real flagfiles in a
fresh process (data and epochs overridden), chained runs, the console, `--dry_run`, a missing
evaluation split, and a finished run's model.keras loaded in a fresh process."""
import json
import zipfile

import numpy as np
import pytest

from tests.helpers import encode, run_module, run_script, sample_photos, slim_example, tiny_config
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
    config = json.loads(process.stdout)
    from tf_pyramid.training.flags import CONFIG_KEYS
    assert set(config) == set(CONFIG_KEYS)
    assert config["model"] == "mnist_m1" and config["levels"] == 3 and config["resolution"] == 56
    assert config["c_t"] == [6.0] and config["init_from"] == str(source)
    assert config["learning_rate"] == 0.01 and config["eval_split"] == "validation"
    assert config["eval_passes"] == 20 and config["policy"] == "sample"
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


@pytest.mark.slow
def test_mnist_chain_28_to_56_px_on_the_bundled_digits(tmp_path):
    first, second = tmp_path / "m1_28", tmp_path / "m1_56_ct6_gradual"
    process = _train("flags/mnist/m1_28.cfg", first, *MNIST_TINY)
    # The console of a non-terminal stdout: one line per epoch, no progress bar.
    lines = process.stdout.splitlines()
    assert [line for line in lines if line.startswith("Epoch")] == [
        line for line in lines if line.startswith("Epoch 1/1 (")] and len(lines) < 10
    assert "\r" not in process.stdout and "Weights digest" not in process.stderr
    process = _train("flags/mnist/m1_56_ct6_gradual.cfg", second, *MNIST_TINY,
                     f"--init_from={first}")
    assert f"module weight arrays from {first}" in process.stderr
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["passes"] == 2
    assert metrics["policy"] == "sample" and metrics["resolution"] == 56
    assert [e["level"] for e in metrics["levels"]] == [1, 2, 3]
    assert [e["level"] for e in metrics["threshold"]["levels"]] == [1, 2, 3]
    assert len(metrics["accuracy_std"]) == 3  # the spread over the re-drawn passes
    assert (second / "export" / "1" / "saved_model.pb").exists()


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
def test_imagenet_chain_64_to_128_px_on_tfrecords_of_real_photos(tmp_path):
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
    first, second = tmp_path / "m2_64_ct4.5", tmp_path / "m2_128_ct7"
    _train("flags/imagenet/m2_64_ct4.5.cfg", first, *tiny)
    _train("flags/imagenet/m2_128_ct7.cfg", second, *tiny, f"--init_from={first}")
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
