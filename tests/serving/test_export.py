"""SavedModel export: signatures, per-level cost, anytime, fresh-process equality, bad requests."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import run_python, run_script
from tf_pyramid import serving
from tf_pyramid.data import input_convention
from tf_pyramid.serving import export_lib

LEVELS = 3
SIDE = 56
PYRAMID_SIGNATURES = ["serving_default", "level_1", "level_2", "level_3", "anytime",
                      "serving_bytes"]
OUTPUTS = ["classes", "levels_used", "macs", "num_locations", "probabilities"]
TOP_K = ["top_k_classes", "top_k_probabilities"]
CONVENTION = input_convention("mnist", SIDE, mnist_input="symmetric")  # 1 channel, [-1, 1], area


def _pixels(seed, n, height=SIDE, width=SIDE, channels=1):
    """Blobby 0-255 images (smooth enough that the untrained model's attention varies)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, [n, height // 4 + 1, width // 4 + 1, channels]).astype("float32")
    return tf.image.resize(small, [height, width], method="bicubic").numpy().clip(0, 255)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny MNIST-type model saved as a training run and exported with the CLI."""
    root = tmp_path_factory.mktemp("export")
    run_dir, base = root / "run", root / "serving"
    run_dir.mkdir()
    keras.utils.set_random_seed(7)
    model = tf_pyramid.build_model("mnist_m2", levels=LEVELS, num_classes=5,
                                   input_convention=CONVENTION.get_config())
    model.save(run_dir / "model.keras")
    (run_dir / "config.json").write_text(json.dumps(
        {"model": "mnist_m2", "levels": LEVELS, "dataset": "mnist_noisy", "resolution": SIDE}))
    result = run_python(["-m", "tf_pyramid.export", f"--model_dir={run_dir}",
                         f"--export_dir={base}"])
    version_dir = result.stdout.strip().splitlines()[-1]
    assert version_dir == str(base / "1")
    loaded = tf.saved_model.load(version_dir)
    model = keras.saving.load_model(run_dir / "model.keras")
    images = _pixels(0, 6)
    return {"dir": version_dir, "base": base, "loaded": loaded, "model": model,
            "images": images, "functions": serving.ServingFunctions(model, CONVENTION)}


def _call(loaded, name, **inputs):
    outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def _expected(model, images, depth):
    """What the Keras model says on the same images, preprocessed as in evaluation."""
    outputs = model(serving.prepare_images(images, CONVENTION), training=False,
                    depth=depth, policy="threshold")
    probabilities = tf.nn.softmax(outputs["logits"]).numpy()
    return {"probabilities": probabilities, "classes": probabilities.argmax(-1),
            "levels_used": np.full(len(images), depth), "num_locations": outputs["num_locations"],
            "macs": outputs["macs"]}


def _assert_outputs_equal(got, expected, atol=1e-5):
    """The outputs of an export without class names; top-k compared where both have them."""
    assert set(OUTPUTS) <= set(got) <= set(OUTPUTS + TOP_K)
    for key in TOP_K:
        if key in expected and key in got:
            np.testing.assert_allclose(got[key], expected[key], atol=atol, err_msg=key)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=atol)
    for key in OUTPUTS[:-1]:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_layout_and_signature_list(exported):
    assert sorted(os.listdir(exported["base"])) == ["1"]
    names = set(os.listdir(exported["dir"]))
    assert {"saved_model.pb", "variables", "assets.extra"} <= names
    info = json.loads(open(os.path.join(exported["dir"], export_lib.INFO_FILE)).read())
    assert info["value_range"] == [-1.0, 1.0] and info["input_size"] == SIDE
    assert info["resize_method"] == "area"  # an MNIST run (config.json dataset)
    assert sorted(exported["loaded"].signatures) == sorted(PYRAMID_SIGNATURES)
    assert sorted(info["outputs"]) == sorted(OUTPUTS + TOP_K)  # no class names: mnist_noisy
    assert info["class_names"] is None and info["top_k"] == 5
    result = run_python(["-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
                         exported["dir"], "--all"])
    for name in PYRAMID_SIGNATURES:
        assert f"signature_def['{name}']" in result.stdout
    for name in ("images", "threshold", "image_bytes", *OUTPUTS):
        assert f"['{name}']" in result.stdout


def test_saved_model_cli_run(exported, tmp_path):
    np.save(tmp_path / "x.npy", exported["images"][:2])
    result = run_python(["-m", "tensorflow.python.tools.saved_model_cli", "run", "--dir",
                         exported["dir"], "--tag_set", "serve", "--signature_def", "anytime",
                         "--inputs", f"images={tmp_path / 'x.npy'}", "--input_exprs",
                         "threshold=2.0", "--outdir", str(tmp_path / "out")])
    assert result.returncode == 0
    levels_used = np.load(tmp_path / "out" / "levels_used.npy")
    np.testing.assert_array_equal(levels_used, [LEVELS, LEVELS])
    macs = np.load(tmp_path / "out" / "macs.npy")
    expected = _expected(exported["model"], exported["images"][:2], LEVELS)
    np.testing.assert_array_equal(macs, expected["macs"])


def test_levels_match_the_keras_model_and_cost_grows(exported):
    images, loaded = exported["images"], exported["loaded"]
    results = {d: _call(loaded, f"level_{d}", images=images) for d in range(1, LEVELS + 1)}
    for depth, got in results.items():
        _assert_outputs_equal(got, _expected(exported["model"], images, depth))
    _assert_outputs_equal(_call(loaded, "serving_default", images=images), results[LEVELS])
    # Cells are attended (otherwise deeper levels would cost the same) ...
    assert (results[2]["num_locations"] > 0).all()
    assert (results[3]["num_locations"] > results[2]["num_locations"]).all()
    # ... and every deeper level really costs more.
    assert (results[1]["macs"] < results[2]["macs"]).all()
    assert (results[2]["macs"] < results[3]["macs"]).all()
    costs = exported["model"].module_costs()
    np.testing.assert_array_equal(results[1]["macs"],
                                  costs["feature_extraction"] + costs["classification"])


def test_anytime_extremes(exported):
    images, loaded = exported["images"], exported["loaded"]
    _assert_outputs_equal(_call(loaded, "anytime", images=images, threshold=np.float32(0.0)),
                          _call(loaded, "level_1", images=images))
    _assert_outputs_equal(_call(loaded, "anytime", images=images, threshold=np.float32(1.5)),
                          _call(loaded, "serving_default", images=images))


def test_anytime_stops_some_images_and_skips_their_work(exported):
    images, loaded = exported["images"], exported["loaded"]
    level_1 = _call(loaded, "level_1", images=images)
    deepest = _call(loaded, "serving_default", images=images)
    top = level_1["probabilities"].max(-1)
    threshold = np.float32(np.median(top))
    got = _call(loaded, "anytime", images=images, threshold=threshold)
    stopped = top >= threshold
    assert 0 < stopped.sum() < len(images)
    np.testing.assert_array_equal(got["levels_used"][stopped], 1)
    assert (got["levels_used"][~stopped] >= 2).all()
    np.testing.assert_allclose(got["probabilities"][stopped], level_1["probabilities"][stopped],
                               atol=1e-6)
    np.testing.assert_array_equal(got["macs"][stopped], level_1["macs"][stopped])
    np.testing.assert_array_equal(got["num_locations"][stopped], 0)
    # Images that went on: their exit tests cost a classification each, beyond the traversal.
    went_to_end = got["levels_used"] == LEVELS
    assert (got["macs"][went_to_end] > deepest["macs"][went_to_end]).all()
    # An image's answer does not depend on the rest of the batch.
    for i in (int(np.argmax(stopped)), int(np.argmin(stopped))):
        single = _call(loaded, "anytime", images=images[i:i + 1], threshold=threshold)
        assert single["levels_used"][0] == got["levels_used"][i]
        np.testing.assert_allclose(single["probabilities"][0], got["probabilities"][i], atol=1e-5)


def test_anytime_eager_function_equals_the_signature(exported):
    images = exported["images"]
    model_images = serving.prepare_images(images, CONVENTION)
    threshold = np.float32(0.2)
    eager = exported["model"].anytime(model_images, threshold)
    got = _call(exported["loaded"], "anytime", images=images, threshold=threshold)
    _assert_outputs_equal(got, {k: v.numpy() for k, v in eager.items()})


FRESH = r"""
import sys
import numpy as np, tensorflow as tf
path, data, out = sys.argv[1:4]
arrays = np.load(data, allow_pickle=True)  # PNG strings (written by the test)
loaded = tf.saved_model.load(path)
results = {}
for name, fn in loaded.signatures.items():
    if name == "serving_bytes":
        inputs = {"image_bytes": tf.constant(arrays["png"])}
    elif name == "anytime":
        inputs = {"images": tf.constant(arrays["x"]), "threshold": tf.constant(0.2)}
    else:
        inputs = {"images": tf.constant(arrays["x"])}
    for key, value in fn(**inputs).items():
        results[f"{name}/{key}"] = value.numpy()
assert not any(m.startswith("tf_pyramid") for m in sys.modules), "tf_pyramid was imported"
np.savez(out, **results)
"""


def test_fresh_process_with_only_tensorflow_equals_keras_model(exported, tmp_path):
    images = exported["images"]
    png = np.array([tf.io.encode_png(np.round(i).astype(np.uint8)).numpy() for i in images],
                   dtype=object)
    np.savez(tmp_path / "data.npz", x=images, png=png)
    run_script(FRESH, exported["dir"], str(tmp_path / "data.npz"), str(tmp_path / "out.npz"))
    got = np.load(tmp_path / "out.npz")
    model = exported["model"]
    for depth in range(1, LEVELS + 1):
        expected = _expected(model, images, depth)
        _assert_outputs_equal({k: got[f"level_{depth}/{k}"] for k in OUTPUTS}, expected)
    _assert_outputs_equal({k: got[f"serving_default/{k}"] for k in OUTPUTS},
                          _expected(model, images, LEVELS))
    _assert_outputs_equal({k: got[f"serving_bytes/{k}"] for k in OUTPUTS},
                          _expected(model, np.round(images), LEVELS))
    model_images = serving.prepare_images(images, CONVENTION)
    anytime = model.anytime(model_images, 0.2)
    _assert_outputs_equal({k: got[f"anytime/{k}"] for k in OUTPUTS},
                          {k: v.numpy() for k, v in anytime.items()})


def test_bytes_path_equals_float_path_on_the_decoded_image(exported):
    loaded = exported["loaded"]
    gray = _pixels(1, 1, 40, 64)[0].round().astype(np.uint8)
    rgb = _pixels(2, 1, 90, 70, channels=3)[0].round().astype(np.uint8)
    encoded = [tf.io.encode_png(gray).numpy(), tf.io.encode_jpeg(rgb, quality=90).numpy()]
    got = _call(loaded, "serving_bytes", image_bytes=np.array(encoded, dtype=object))
    for i, data in enumerate(encoded):
        decoded = tf.cast(tf.io.decode_image(data, channels=1, expand_animations=False),
                          tf.float32)[None]
        expected = _call(loaded, "serving_default", images=decoded.numpy())
        _assert_outputs_equal({k: v[i:i + 1] for k, v in got.items()}, expected)


@pytest.mark.parametrize("name,value,match", [
    ("rank", np.zeros([SIDE, SIDE, 1], np.float32), "rank"),
    ("channels", np.zeros([2, SIDE, SIDE, 3], np.float32), "1 channel"),
    ("empty", np.zeros([0, SIDE, SIDE, 1], np.float32), "empty batch"),
    ("nan", np.full([1, SIDE, SIDE, 1], np.nan, np.float32), "NaN or Inf"),
])
def test_bad_image_requests(exported, name, value, match):
    for signature in ("serving_default", "level_1"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            _call(exported["loaded"], signature, images=value)
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        _call(exported["loaded"], "anytime", images=value, threshold=np.float32(0.5))


def test_non_numeric_images_are_rejected(exported):
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        exported["loaded"].signatures["serving_default"](
            images=tf.constant([[["a"]]]))


def test_bad_threshold(exported):
    with pytest.raises(tf.errors.InvalidArgumentError, match="threshold"):
        _call(exported["loaded"], "anytime", images=exported["images"][:1],
              threshold=np.float32(np.nan))


@pytest.mark.parametrize("data,match", [
    ([b"not an image"], "not an encoded JPEG or PNG"),
    ([], "empty batch"),
    ("truncated", "Invalid PNG"),
])
def test_bad_byte_requests(exported, data, match):
    if data == "truncated":
        png = tf.io.encode_png(np.zeros([30, 30, 1], np.uint8)).numpy()
        data = [png, png[:40]]
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        _call(exported["loaded"], "serving_bytes", image_bytes=np.array(data, dtype=object))


def test_baseline_export(tmp_path):
    keras.utils.set_random_seed(1)
    model = tf_pyramid.build_model("mnist_bl1", levels=2, num_classes=3)
    with pytest.raises(ValueError, match="carries no input convention"):
        serving.export_saved_model(model, str(tmp_path))
    path = serving.export_saved_model(model, str(tmp_path), value_range="0,1",
                                      resize_method="area")
    assert path == str(tmp_path / "1")
    loaded = tf.saved_model.load(path)
    assert sorted(loaded.signatures) == sorted(["serving_default", "level_1", "anytime",
                                                "serving_bytes"])
    images = _pixels(3, 3, 28, 28)
    default = _call(loaded, "serving_default", images=images)
    for got in (_call(loaded, "level_1", images=images),
                _call(loaded, "anytime", images=images, threshold=np.float32(0.9))):
        _assert_outputs_equal(got, default)
    np.testing.assert_array_equal(default["levels_used"], 1)
    np.testing.assert_array_equal(default["num_locations"], 0)
    expected = model(images / 255.0)
    np.testing.assert_allclose(default["probabilities"],
                               tf.nn.softmax(expected["logits"]).numpy(), atol=1e-5)
    # Versions: the next free one, and no silent overwrite.
    model.input_convention = input_convention("mnist", 28).get_config()
    assert serving.export_saved_model(model, str(tmp_path)) == str(tmp_path / "2")
    with pytest.raises(FileExistsError, match="next free one"):
        serving.export_saved_model(model, str(tmp_path), version=1)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


def test_an_export_finished_while_this_one_waited_keeps_its_version(tmp_path, monkeypatch):
    """Two exports into one base: the version is chosen under the export lock. Another export
    that writes version 1 while this one waits for the lock keeps it; this one takes 2."""
    model = tf_pyramid.build_model("mnist_bl1", levels=1, num_classes=3)
    model.input_convention = input_convention("mnist", 14).get_config()
    acquire = export_lib.lock_lib.DirectoryLock.acquire

    def other_export_finishes_first(lock, *args, **kwargs):
        (tmp_path / "1").mkdir()
        (tmp_path / "1" / "saved_model.pb").write_text("the other export's")
        return acquire(lock, *args, **kwargs)

    monkeypatch.setattr(export_lib.lock_lib.DirectoryLock, "acquire", other_export_finishes_first)
    assert serving.export_saved_model(model, str(tmp_path)) == str(tmp_path / "2")
    assert (tmp_path / "1" / "saved_model.pb").read_text() == "the other export's"
    with pytest.raises(FileExistsError, match=r"1 exists.*next free one \(3\)"):
        serving.export_saved_model(model, str(tmp_path), version=1)


def test_next_version_and_missing_model(tmp_path):
    for name in ("1", "7", "notes", "3x"):
        (tmp_path / name).mkdir()
    assert serving.next_version(str(tmp_path)) == 8
    assert serving.next_version(str(tmp_path / "new")) == 1
    with pytest.raises(FileNotFoundError, match="model.keras"):
        serving.load_model(str(tmp_path))
    result = run_python(["-m", "tf_pyramid.export", f"--model_dir={tmp_path}",
                         f"--export_dir={tmp_path / 'out'}"], check=False)
    assert result.returncode != 0 and "No model file at" in result.stderr
