"""A user's path with `--dtype_policy=mixed_bfloat16`, in fresh processes: train the tiny MNIST
run, then load its model.keras and its exported SavedModel and serve raw pixels with them."""
import json

import pytest

from tests.helpers import run_module, run_script, tiny_args

CHILD = r"""
import glob, io, json, sys
import numpy as np, keras, tensorflow as tf
from PIL import Image
from tf_pyramid.data import build_dataset
from tf_pyramid.runs import load_run_model
model_dir, seed = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(seed)
model = keras.saving.load_model(model_dir + "/model.keras")
# The run's evaluation images (56 px canvases, the run's seed) as 0-255 pixels.
dataset, info = build_dataset("mnist", "validation", resolution=56, batch_size=500,
                              training=False, source="bundled", seed=seed)
canvases, labels = (t.numpy() for t in next(iter(dataset)))
low, high = info.input_convention.value_range  # the model's range: back to 0-255
pixels = np.round((canvases - low) / (high - low) * 255.0).astype(np.uint8)
report = {"policy": model.dtype_policy.name,
          "fe_dtype": model.feature_extraction.conv0.compute_dtype, "count": len(labels),
          "weights": sorted({v.dtype for v in model.weights})}
keras_probabilities = {}
for name, images in (("uint8", pixels), ("float32", pixels.astype(np.float32))):
    outputs = model.predict(images, batch_size=100, verbose=0)
    report[f"keras_{name}_dtype"] = str(outputs["logits"].dtype)
    report[f"keras_{name}_accuracy"] = float(np.mean(np.argmax(outputs["logits"], -1) == labels))
    keras_probabilities[name] = tf.nn.softmax(outputs["logits"]).numpy()
report["uint8_vs_float32"] = float(np.abs(keras_probabilities["uint8"]
                                          - keras_probabilities["float32"]).max())
# The run's own model: rebuilt from config.json and restored from its last checkpoint.
own, _ = load_run_model(model_dir, prefer_checkpoint=True)
own_outputs = own.predict(pixels, batch_size=100, verbose=0)
report["own_policy"] = own.dtype_policy.name
report["own_vs_keras"] = float(np.abs(tf.nn.softmax(own_outputs["logits"]).numpy()
                                      - keras_probabilities["uint8"]).max())
served = tf.saved_model.load(sorted(glob.glob(model_dir + "/export/*"))[-1])
first = pixels[:32]
by_images = served.signatures["serving_default"](images=tf.constant(first, tf.float32))
encoded = []
for image in first:
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0]).save(buffer, format="PNG")
    encoded.append(buffer.getvalue())
by_bytes = served.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
for name, outputs in (("images", by_images), ("bytes", by_bytes)):
    report[f"saved_{name}_dtype"] = outputs["probabilities"].dtype.name
    report[f"saved_{name}_vs_keras"] = float(np.abs(
        outputs["probabilities"].numpy() - keras_probabilities["uint8"][:32]).max())
print(json.dumps(report))
"""


@pytest.mark.slow
def test_mixed_bfloat16_run_loads_and_serves_float32(tmp_path):
    run = tmp_path / "run"
    seed = 3
    result = run_module("tf_pyramid.train", tiny_args(
        run, dtype_policy="mixed_bfloat16", export=True, seed=seed), timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "config.json").read_text())["model"]["dtype_policy"] == (
        "mixed_bfloat16")
    evaluated = json.loads((run / "metrics.json").read_text())["levels"][-1]["accuracy"]

    report = json.loads(run_script(CHILD, str(run), str(seed)).stdout.strip().splitlines()[-1])
    assert report["policy"] == "mixed_bfloat16" and report["fe_dtype"] == "bfloat16"
    assert report["weights"] == ["float32"], report
    for key in ("keras_uint8_dtype", "keras_float32_dtype"):
        assert report[key] == "float32", report
    assert report["saved_images_dtype"] == report["saved_bytes_dtype"] == "float32", report
    # The run's own evaluation of the same 500 images (metrics.json): the same accuracy (one
    # image of slack for a rounding difference at an attention threshold).
    for key in ("keras_uint8_accuracy", "keras_float32_accuracy"):
        assert abs(report[key] - evaluated) <= 1 / 500, (report, evaluated)
    # The same pixels as uint8 or float32: identical model inputs, identical outputs.
    assert report["uint8_vs_float32"] == 0.0, report
    # model.keras, the SavedModel (a traced graph) and the run's checkpoint all compute the same
    # bfloat16 traversal with the same weights: measured identical (0.0) on this CPU. 1e-4 on the
    # float32 probabilities leaves room for another kernel order, far below bfloat16's own
    # rounding (2**-9 relative), which a float32 path or a cast in the wrong place would show.
    assert report["own_policy"] == "mixed_bfloat16", report
    for key in ("own_vs_keras", "saved_images_vs_keras", "saved_bytes_vs_keras"):
        assert report[key] <= 1e-4, report
