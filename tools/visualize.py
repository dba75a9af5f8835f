r"""Draws what a pyramid model attends to (paper Fig. 3 and 7).

  python tools/visualize.py --model_dir=DIR --images=a.png,b.jpg --out=attention.png
  python tools/visualize.py --model=model.keras --images='digits/*.png' --out=attention.png

One row per image: the input, then one panel per level d showing the image at the resolution each
region was processed at after d levels (blurred where only coarse levels saw it), the attended
cells of levels 2..d, and the level-d prediction (top class, probability, attended cells).
Images: PNG/JPEG files or .npy/.npz arrays, pixel values 0-255, any size (resized like in
evaluation). Works for 1-channel (MNIST variants) and RGB models.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training run directory with model.keras (and config.json).")
flags.DEFINE_string("model", None, "A .keras model file (instead of --model_dir).")
flags.DEFINE_multi_string("images", None, "Image files / globs / .npy arrays (comma-separated or "
                          "repeated).")
flags.DEFINE_string("out", None, "Output PNG.")
flags.DEFINE_integer("max_images", 8, "Draw at most this many images.")
flags.DEFINE_integer("panel_px", 192, "Side of one panel in pixels; the PNG is "
                     "(images * panel_px) x ((levels + 1) * panel_px).")
flags.DEFINE_string("policy", None, "Attention policy (threshold, topk:K, sample); default: the "
                    "model's own, or threshold if it samples.")
flags.DEFINE_enum("upsample", "bilinear", ["bilinear", "nearest"], "How coarse regions are shown.")
flags.DEFINE_string("value_range", None, "Model input range 'low,high'; default: the model's "
                    "saved input convention.")
flags.DEFINE_enum("resize_method", None, ["area", "bilinear"], "Resize to the model input; "
                  "default: the model's saved input convention.")
flags.DEFINE_string("class_names", None, "Text file with one class name per line.")
flags.mark_flags_as_required(["images", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tf_pyramid import serving
    from tf_pyramid import visualization
    from tf_pyramid.modeling import ImagePreprocessor
    from tf_pyramid.visualization import inputs

    model = serving.load_model(FLAGS.model_dir, FLAGS.model)
    preprocessor = ImagePreprocessor.of_model(model, FLAGS.value_range, FLAGS.resize_method)
    value_range = preprocessor.value_range
    images = inputs.load_images(FLAGS.images, model.channels)[:FLAGS.max_images]
    batch = inputs.model_inputs(images, preprocessor)
    class_names = None
    if FLAGS.class_names:
        with open(FLAGS.class_names) as f:
            class_names = [line.strip() for line in f if line.strip()]
    views = visualization.attention_views(model, batch, policy=FLAGS.policy,
                                          upsample=FLAGS.upsample)
    fig = visualization.attention_figure(views, value_range, class_names=class_names,
                                         panel_px=FLAGS.panel_px)
    visualization.save_figure(fig, FLAGS.out)
    print(FLAGS.out)


if __name__ == "__main__":
    app.run(main)
