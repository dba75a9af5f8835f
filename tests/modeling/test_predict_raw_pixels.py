"""A user's path, in fresh processes: train the tiny MNIST run, then `keras.saving.load_model`
its model.keras and `predict` on the digits as a user holds them (0-255 arrays)."""
import json

import pytest

from tests.helpers import run_module, run_script, tiny_args
from tf_pyramid.data import mnist

CHILD = r"""
import json, sys
import numpy as np, keras, tensorflow as tf
import tf_pyramid
from tf_pyramid.data import build_dataset
model_dir, seed = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(seed)  # as the trainer: its global seed is part of the draws
model = keras.saving.load_model(model_dir + "/model.keras")
# The evaluation split's canvases (56 px), drawn with the run's seed: the images its own
# evaluation saw, before the pipeline's resize to 28 px and its standardisation ([0, 1] here).
dataset, _ = build_dataset("mnist", "validation", resolution=56, batch_size=500, training=False,
                           source="bundled", seed=seed, mnist_input="unit")
canvases, labels = (t.numpy() for t in next(iter(dataset)))
pixels = np.round(canvases * 255.0).astype(np.uint8)
report = {"class": type(model.preprocessor).__name__, "count": len(labels),
          "value_range": list(model.preprocessor.value_range)}
for name, images in (("uint8", pixels), ("float", pixels.astype(np.float32))):
    logits = model.predict(images, batch_size=100, verbose=0)["logits"]
    report[name] = float(np.mean(np.argmax(logits, -1) == labels))
try:
    model.predict(pixels.astype(np.float32) / 255.0, verbose=0)
    report["unit"] = "accepted"
except tf.errors.InvalidArgumentError as error:
    report["unit"] = error.message
print(json.dumps(report))
"""


@pytest.mark.slow
def test_load_model_predicts_raw_pixels_with_the_runs_own_accuracy(tmp_path):
    run = tmp_path / "run"
    seed = 3
    # 8 short epochs (~50 s on 2 cores): enough for an accuracy well above chance (0.38).
    result = run_module("tf_pyramid.train", tiny_args(
        run, epochs=8, steps_per_epoch=62, batch_size=64, learning_rate=0.003, mc_samples=1,
        level_weights="1,1", checkpoint_every=1000, seed=seed), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["passes"] == 1
    evaluated = metrics["levels"][-1]["accuracy"]
    assert evaluated > 0.25, f"the run should be well above chance (0.1); got {evaluated}"

    report = json.loads(run_script(CHILD, str(run), str(seed)).stdout.strip().splitlines()[-1])
    assert report["class"] == "ImagePreprocessor" and report["count"] == 500
    low, high = mnist.model_value_range("plain")  # trained on the standardised input
    assert report["value_range"] == pytest.approx([low, high])
    # The same images as the run's evaluation: the same accuracy (one image of slack for a
    # rounding difference at an attention threshold).
    assert abs(report["uint8"] - evaluated) <= 1 / 500, (report, evaluated)
    assert abs(report["float"] - evaluated) <= 1 / 500, (report, evaluated)
    assert "scaled to [0, 1]" in report["unit"] and "Multiply such data by 255" in report["unit"]
