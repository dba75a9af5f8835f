"""tools/visualize.py, the attention views behind it, and the TensorBoard callback."""
import glob
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import png_size, run_python
from tf_pyramid import visualization
from tf_pyramid.data import input_convention
from tf_pyramid.callbacks import AttentionImages


MNIST_28 = input_convention("mnist", 28).get_config()


def test_visualize_cli_on_a_run_directory(tmp_path):
    keras.utils.set_random_seed(0)
    run = tmp_path / "run"
    run.mkdir()
    tf_pyramid.build_model("mnist_m2", levels=2, num_classes=10,
                           input_convention=MNIST_28).save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"model": "mnist_m2", "dataset": "mnist"}))
    digit = np.zeros([40, 40, 1], np.uint8)
    digit[8:30, 12:20] = 255
    tf.io.write_file(str(tmp_path / "digit.png"), tf.io.encode_png(digit))
    np.save(tmp_path / "more.npy", np.random.default_rng(0).uniform(0, 255, [2, 28, 28]))
    out = tmp_path / "pictures" / "attention.png"
    run_python(["tools/visualize.py", f"--model_dir={run}",
                f"--images={tmp_path / 'digit.png'},{tmp_path / 'more.npy'}", f"--out={out}",
                "--panel_px=100"])
    assert out.stat().st_size > 1000
    assert png_size(out) == visualization.figure_shape(3, 2, 100) == (300, 300)


def test_rgb_views_show_each_region_at_its_resolution(tmp_path):
    keras.utils.set_random_seed(2)
    model = tf_pyramid.build_model("imagenet_m1", levels=3, num_classes=4, policy="topk:2")
    images = np.random.default_rng(1).uniform(-1, 1, [2, 128, 128, 3]).astype("float32")
    views = visualization.attention_views(model, images, upsample="nearest")
    pyramid = [tf.image.resize(level, [128, 128], method="nearest").numpy()
               for level in model.image_pyramid(images)]
    for i, view in enumerate(views):
        np.testing.assert_allclose(view.seen[0], pyramid[0][i])                  # level 1 only
        assert len(view.patches[1]) == 2 and len(view.patches[2]) == 4           # top-2 per grid
        for level in (1, 2):
            for top, left, side in view.patches[level]:
                assert side == 32 * 2 ** (2 - level)
                region = np.s_[top:top + side, left:left + side]
                np.testing.assert_allclose(view.seen[level][region], pyramid[level][i][region])
        np.testing.assert_array_equal(view.num_locations, [0, 2, 6])
    fig = visualization.attention_figure(views, (-1.0, 1.0), class_names=["a", "b", "c", "d"],
                                         panel_px=80)
    path = visualization.save_figure(fig, str(tmp_path / "rgb.png"))
    assert png_size(path) == visualization.figure_shape(2, 3, 80) == (160, 320)
    with pytest.raises(ValueError, match="baselines have no attention"):
        visualization.attention_views(tf_pyramid.build_model("mnist_bl1", levels=1),
                                      np.zeros([1, 14, 14, 1], np.float32))


def _image_summaries(log_dir):
    steps = []
    for path in glob.glob(f"{log_dir}/**/events.out.tfevents.*", recursive=True):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "attention":
                    steps.append(event.step)
    return sorted(steps)


def test_attention_images_callback_with_fit_and_a_custom_loop(tmp_path):
    keras.utils.set_random_seed(4)
    model = tf_pyramid.build_model("mnist_m2", levels=2, num_classes=3,
                                   input_convention=MNIST_28)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).uniform(0, 1, [8, 28, 28, 1]).astype("float32")
    y = np.arange(8) % 3
    callback = AttentionImages(x[:2], log_dir=str(tmp_path / "logs"), panel_px=64)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[callback])
    assert _image_summaries(tmp_path / "logs") == [0, 1]
    assert callback.picture().shape == (128, 192, 3)

    other = AttentionImages(tf.data.Dataset.from_tensor_slices((x, y)).batch(3), max_images=4,
                            log_dir=str(tmp_path / "loop"), every=2)
    other.set_model(model)
    for epoch in range(4):
        other.on_epoch_end(epoch)
    assert _image_summaries(tmp_path / "loop") == [1, 3]
    assert len(other.images) == 4
