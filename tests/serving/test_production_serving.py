"""What TF Serving needs beyond the signatures: warm-up requests, any batch size the batching layer
forms, and class names (docs/serving.md)."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import run_python
from tf_pyramid import runs
from tf_pyramid.configs import ExperimentConfig, RunFacts
from tf_pyramid.data import build_dataset, input_convention
from tf_pyramid.serving import export_lib, warmup

prediction_log_pb2 = pytest.importorskip(
    "tensorflow_serving.apis.prediction_log_pb2",
    reason="tensorflow-serving-api (the `test` extra) parses the warm-up file")

FOLDER_CLASSES = ["tabby", "espresso", "astronaut"]  # folder names, in no sorted order
LEVELS = 2
SIDE = 64  # imagenet_m2 with 2 levels: 32 px base


def _photo(seed, side=48):
    """A smooth colour image 0-255 (uint8)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, [1, 6, 6, 3]).astype(np.float32)
    image = tf.image.resize(coarse, [side, side], method="bicubic")[0]
    return np.round(np.clip(image.numpy(), 0, 255)).astype(np.uint8)


def _run_dir(root, model, dataset, class_names=None):
    """A finished run as the trainer leaves it: model.keras, config.json and, where the data had
    names, class_index.txt."""
    run_dir = root / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.keras")
    config = ExperimentConfig().replace(
        data={"dataset": dataset},
        run=RunFacts(num_classes=int(model.num_classes), channels=int(model.channels),
                     input_convention=model.input_convention))
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    if class_names:
        runs.write_class_names(str(run_dir), class_names)
    return run_dir


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A tiny ImageNet-style run on a folders dataset, exported with the CLI in a fresh
    process."""
    root = tmp_path_factory.mktemp("named")
    data = root / "photos"
    for i, name in enumerate(FOLDER_CLASSES):
        (data / "train" / name).mkdir(parents=True)
        for j in range(2):
            (data / "train" / name / f"{j}.png").write_bytes(
                tf.io.encode_png(_photo(10 * i + j)).numpy())
    # The class list the trainer keeps: what the folders source reports.
    _, info = build_dataset("folder", "train", resolution=SIDE, batch_size=2, training=False,
                            data_dir=str(data))
    keras.utils.set_random_seed(3)
    model = tf_pyramid.build_model("imagenet_m2", levels=LEVELS, num_classes=3,
                                   input_convention=input_convention("folder", SIDE).get_config())
    run_dir = _run_dir(root, model, "folder", info.class_names)
    base = root / "serving"
    result = run_python(["-m", "tf_pyramid.export", f"--model_dir={run_dir}",
                         f"--export_dir={base}"])
    version_dir = result.stdout.strip().splitlines()[-1]
    return {"dir": version_dir, "loaded": tf.saved_model.load(version_dir),
            "names": info.class_names, "model": model}


def _call(loaded, name, **inputs):
    outputs = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def _inputs(name, images, files=None):
    """The request of signature `name` for float 0-255 `images` (or their encoded `files`)."""
    if name == "serving_bytes":
        return {"image_bytes": warmup.encode_images(images) if files is None else files}
    if name == "anytime":
        return {"images": images, "threshold": np.float32(0.6)}
    return {"images": images}


def test_warmup_file_parses_and_every_request_runs(named):
    path = os.path.join(named["dir"], "assets.extra", "tf_serving_warmup_requests")
    assert os.path.isfile(path)
    loaded = named["loaded"]
    sizes = {}
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        name = request.model_spec.signature_name
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        signature = loaded.signatures[name]
        assert sorted(inputs) == sorted(signature.structured_input_signature[1])
        outputs = _call(loaded, name, **inputs)
        batch = len(next(iter(v for k, v in inputs.items() if k != "threshold")))
        assert outputs["classes"].shape == (batch,)
        sizes.setdefault(name, []).append(batch)
    assert sorted(sizes) == sorted(loaded.signatures)
    for name in ("serving_default", "anytime", "serving_bytes"):
        assert sizes[name] == [1, 8], name
    assert sizes["level_1"] == [1]
    # The bytes requests are real image files (JPEG and PNG), at the model's input size.
    record = next(r for r in tf.data.TFRecordDataset(path)
                  if b"serving_bytes" in r.numpy())
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    data = tf.make_ndarray(request.inputs["image_bytes"])[0]
    assert tf.io.decode_image(data).shape == (SIDE, SIDE, 3)


def test_any_batch_size_gives_the_same_per_image_answers(named):
    """TF Serving's batching layer concatenates requests (and pads to allowed sizes): an image's
    answer must not depend on what it is batched with."""
    loaded = named["loaded"]
    images = warmup.sample_images(32, SIDE, 3, seed=5)
    files = warmup.encode_images(images)  # JPEG and PNG
    assert set(loaded.signatures) == {"serving_default", "level_1", "level_2", "anytime",
                                      "serving_bytes"}
    for name in loaded.signatures:
        whole = _call(loaded, name, **_inputs(name, images, files))
        if name != "level_1":  # attention varies between images: the gathers are exercised
            assert len(set(whole["num_locations"])) > 1, name
        for size in (1, 3):
            parts = [_call(loaded, name, **_inputs(name, images[i:i + size], files[i:i + size]))
                     for i in range(0, 32, size)]
            for key, value in whole.items():
                joined = np.concatenate([part[key] for part in parts])
                if value.dtype.kind == "f":
                    np.testing.assert_allclose(joined, value, atol=1e-5, err_msg=f"{name} {key}")
                else:
                    np.testing.assert_array_equal(joined, value, err_msg=f"{name} {key} {size}")


def test_folder_run_export_returns_the_class_names_of_its_predictions(named):
    names = np.array(named["names"])
    assert list(names) == sorted(FOLDER_CLASSES)
    info = json.loads(open(os.path.join(named["dir"], export_lib.INFO_FILE)).read())
    assert info["class_names"] == list(names) and info["top_k"] == 3
    images = np.stack([_photo(s, SIDE) for s in range(6)]).astype(np.float32)
    for name in named["loaded"].signatures:
        got = _call(named["loaded"], name, **_inputs(name, images))
        assert [n.decode() for n in got["class_names"]] == list(names[got["classes"]]), name
        # Top-k: every class once, most probable first; names follow the indices.
        assert got["top_k_classes"].shape == (6, 3)
        np.testing.assert_array_equal(got["top_k_classes"][:, 0], got["classes"])
        np.testing.assert_array_equal(np.sort(got["top_k_classes"], axis=1), [[0, 1, 2]] * 6)
        np.testing.assert_allclose(
            got["top_k_probabilities"],
            np.take_along_axis(got["probabilities"], got["top_k_classes"], axis=1))
        assert (np.diff(got["top_k_probabilities"], axis=1) <= 0).all()
        np.testing.assert_array_equal(got["top_k_class_names"].astype(str),
                                      names[got["top_k_classes"]])


def test_mnist_run_returns_digits_and_top_k_names_match_indices(tmp_path):
    from tf_pyramid.train import export_run  # noqa: PLC0415  (the end-of-run export)
    keras.utils.set_random_seed(4)
    model = tf_pyramid.build_model("mnist_m2", levels=2, num_classes=10,
                                   input_convention=input_convention("mnist", 28).get_config())
    run_dir = _run_dir(tmp_path, model, "mnist")
    assert runs.read_class_names(str(run_dir)) is None  # MNIST runs have no class index
    loaded = tf.saved_model.load(export_run(str(run_dir)))
    images = warmup.sample_images(7, 28, 1, seed=2)
    for name in ("serving_default", "anytime", "serving_bytes"):
        got = _call(loaded, name, **_inputs(name, images))
        assert [int(n) for n in got["class_names"]] == list(got["classes"]), name
        assert got["top_k_classes"].shape == (7, 5)
        np.testing.assert_array_equal(got["top_k_class_names"].astype(str).astype(int),
                                      got["top_k_classes"])


def test_runs_without_names_export_indices_only_and_bad_names_are_refused(tmp_path):
    keras.utils.set_random_seed(5)
    model = tf_pyramid.build_model("mnist_bl1", levels=1, num_classes=4,
                                   input_convention=input_convention("mnist", 14).get_config())
    run_dir = _run_dir(tmp_path, model, "tfrecord")  # TFRecords without a label map
    assert export_lib.run_class_names(str(run_dir)) is None
    loaded = tf.saved_model.load(export_lib.export_saved_model(model, str(tmp_path / "out")))
    got = _call(loaded, "serving_default", images=warmup.sample_images(2, 14, 1))
    assert sorted(got) == sorted(["probabilities", "classes", "levels_used", "num_locations",
                                  "macs", "top_k_classes", "top_k_probabilities"])
    assert got["top_k_classes"].shape == (2, 4)  # top_k = min(5, classes)
    with pytest.raises(ValueError, match=r"class names \(3\) do not match the model's 4 classes"):
        export_lib.export_saved_model(model, str(tmp_path / "out"), class_names=["a", "b", "c"])
    # The CLI: an explicit names file, checked the same way.
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    result = run_python(["-m", "tf_pyramid.export", f"--model_dir={run_dir}",
                         f"--export_dir={tmp_path / 'cli'}",
                         f"--class_names={tmp_path / 'names.txt'}"], check=False)
    assert result.returncode == 2 and "do not match the model's 4 classes" in result.stderr


def test_anytime_takes_one_threshold_per_image_as_batched_requests_carry(named):
    """TF Serving's batching layer refuses scalar inputs and concatenates requests: `threshold`
    may be [N], and each image gets the answer of its own request."""
    loaded = named["loaded"]
    images = warmup.sample_images(6, SIDE, 3, seed=8)
    thresholds = np.array([0.0, 2.0, 0.34, 2.0, 0.0, 0.34], np.float32)
    got = _call(loaded, "anytime", images=images, threshold=thresholds)
    assert set(got["levels_used"]) == {1, LEVELS}
    for i, threshold in enumerate(thresholds):
        alone = _call(loaded, "anytime", images=images[i:i + 1], threshold=threshold)
        np.testing.assert_allclose(got["probabilities"][i], alone["probabilities"][0], atol=1e-6)
        for key in ("classes", "levels_used", "num_locations", "macs", "class_names"):
            assert got[key][i] == alone[key][0], key
    for bad in (np.zeros([4], np.float32), np.zeros([6, 1], np.float32)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="one value per image"):
            _call(loaded, "anytime", images=images, threshold=bad)
