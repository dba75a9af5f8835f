r"""Exports a trained model for TF Serving.

  python -m tf_pyramid.export --model_dir=DIR --export_dir=BASE [--version=N]

Reads `DIR/model.keras` (its saved input convention fixes the in-graph resize and value range),
writes `BASE/<version>/` (next free version by default) with the signatures `level_1` ..
`level_L`, `serving_default`, `anytime` and `serving_bytes` (see docs/serving.md), TF Serving's
warm-up requests, and prints the version directory. A run with class names (its class index, or
MNIST's digits) exports them as outputs beside the class indices.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training run directory holding model.keras (and "
                    "config.json).")
flags.DEFINE_string("model", None, "A .keras file to export instead of DIR/model.keras.")
flags.DEFINE_string("export_dir", None, "TF Serving model base path; the SavedModel goes to "
                    "EXPORT_DIR/<version>/.")
flags.DEFINE_integer("version", None, "Version number; default: the next free one.", lower_bound=0)
flags.DEFINE_string("value_range", None, "Model input range as 'low,high' (e.g. '0,1' or '-1,1'); "
                    "default: the model's saved input convention.")
flags.DEFINE_enum("resize_method", None, ["area", "bilinear"], "In-graph resize to the model "
                  "input; default: the model's saved input convention.")
flags.DEFINE_bool("overwrite", False, "Replace an existing version directory.")
flags.DEFINE_integer("max_image_pixels", 50_000_000, "serving_bytes refuses an encoded image "
                     "whose header declares more pixels (height x width), before decoding it.",
                     lower_bound=1)
flags.DEFINE_string("class_names", None, "Text file naming the classes, one per line in label "
                    "order; default: the run's class index (DIR/class_index.txt; MNIST: the "
                    "digits), else no name outputs.")
flags.DEFINE_integer("top_k", 5, "How many of the most probable classes the top_k_* outputs "
                     "list (at most the number of classes).", lower_bound=1)
flags.mark_flag_as_required("export_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tf_pyramid import serving
    try:
        model = serving.load_model(FLAGS.model_dir, FLAGS.model)
        if FLAGS.class_names:
            class_names = serving.read_class_names_file(FLAGS.class_names)
        else:
            class_names = serving.run_class_names(FLAGS.model_dir)
        path = serving.export_saved_model(
            model, FLAGS.export_dir, version=FLAGS.version, value_range=FLAGS.value_range,
            resize_method=FLAGS.resize_method, overwrite=FLAGS.overwrite,
            max_image_pixels=FLAGS.max_image_pixels, class_names=class_names,
            top_k=FLAGS.top_k)
    except (ValueError, FileNotFoundError, FileExistsError) as error:  # damaged file, no model
        print(f"Error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def run():
    """Entry point of the console script (setup.cfg)."""
    app.run(main)


if __name__ == "__main__":
    run()
