"""A run directory on another TensorFlow filesystem (`ram://`, standing for `gs://`): every read
and write goes through `tf.io.gfile`. `ram://` lives in one process, so the whole user path
(train, interrupt, resume, evaluate, export, load the export) runs in this one."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from tf_pyramid.runs import files, lock
from tf_pyramid.evaluators import finished_run
from tf_pyramid.training.trainer import Trainer


@pytest.mark.slow
def test_train_interrupt_resume_evaluate_export_on_ram(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URL made "absolute" would appear here as ./ram:/...
    monkeypatch.setattr(lock, "SETTLE_S", 0.05)
    model_dir = "ram://tf_pyramid_test/run"

    stopped = Trainer(tiny_config(model_dir, stop_after_steps=2)).run()
    assert stopped["interrupted"] and stopped["final_step"] == 2
    assert stopped["model_dir"] == model_dir
    assert tf.io.gfile.exists(f"{model_dir}/checkpoints/ckpt-2.index")
    assert not tf.io.gfile.exists(f"{model_dir}/{lock.RUN_LOCK}")  # released at the end
    saved = files.read_json(f"{model_dir}/config.json")
    assert saved["trainer"]["model_dir"] == model_dir

    finished = Trainer(tiny_config(model_dir)).run()
    assert finished["initial_step"] == 2 and finished["final_step"] == 6
    assert tf.io.gfile.exists(f"{model_dir}/model.keras")
    metrics = files.read_json(f"{model_dir}/metrics.json")
    assert metrics["step"] == 6

    result = finished_run.evaluate_run(model_dir)
    assert [entry["level"] for entry in result["levels"]] == \
        [entry["level"] for entry in metrics["levels"]] == [1, 2]

    from tf_pyramid.train import export_run  # noqa: PLC0415
    exported = export_run(model_dir)
    assert exported == f"{model_dir}/export/1"
    loaded = tf.saved_model.load(exported)
    images = np.random.default_rng(0).uniform(-1, 1, [2, 28, 28, 1]).astype("float32")
    outputs = loaded.signatures["serving_default"](images=tf.constant(images))
    assert outputs["probabilities"].shape[0] == 2
    assert os.listdir(tmp_path) == []  # nothing went to the local disk


def test_atomic_json_and_keras_on_ram(tmp_path):
    import tf_pyramid  # noqa: PLC0415
    directory = "ram://tf_pyramid_test/files"
    files.write_json(f"{directory}/a.json", {"x": np.float32(1.5)})
    assert files.read_json(f"{directory}/a.json") == {"x": 1.5}
    model = tf_pyramid.build_model("mnist_bl1", levels=1, num_classes=3)
    files.save_keras(model, f"{directory}/model.keras")
    assert sorted(files.listdir(directory)) == ["a.json", "model.keras"]
    loaded = files.load_keras(f"{directory}/model.keras")
    images = np.zeros([1, 14, 14, 1], np.float32)
    np.testing.assert_allclose(loaded(images)["logits"], model(images)["logits"], atol=1e-6)
    with tf.io.gfile.GFile(f"{directory}/cut.keras", "wb") as f:
        f.write(b"PK\x03\x04 not a whole archive")
    with pytest.raises(files.DamagedFileError, match=f"{directory}/cut.keras is damaged"):
        files.load_keras(f"{directory}/cut.keras")
    assert files.absolute(directory) == directory
    assert files.absolute("rel") == os.path.join(os.getcwd(), "rel")
