r"""Accuracy vs. MACs per image (paper Fig. 4 and 6) from per-level results.

  python tools/plot_tradeoff.py runs/m2/metrics.json runs/bl2 --out=tradeoff.png \
      [--labels="M2,BL2"] [--linear_x] [--noanytime]

Each RESULT is a metrics JSON ({"levels": [{"level", "accuracy", "mean_locations",
"mean_macs"}, ...]}) or a run directory holding metrics.json. Pyramid models: one point per level,
labelled with the mean number of attended cells; baselines: one star. Where the file holds an
`anytime_sweep` result (`--evaluators=anytime_sweep` in training or in `python -m
tf_pyramid.evaluate --json_out=...`), its early-exit curve is drawn dashed, points labelled with
their thresholds. Labels default to the run's model name and resolution (config.json), else the
directory / file name. Run from the checkout with the package importable (installed, or
PYTHONPATH=.).
"""
from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output PNG.")
flags.DEFINE_list("labels", None, "One label per RESULT (comma-separated).")
flags.DEFINE_integer("width", 900, "PNG width in pixels.")
flags.DEFINE_integer("height", 600, "PNG height in pixels.")
flags.DEFINE_bool("linear_x", False, "Linear MACs axis (default: log scale).")
flags.DEFINE_string("title", None, "Plot title.")
flags.DEFINE_bool("anytime", True, "Also draw each result's anytime_sweep curve (early exit at "
                  "each threshold) where it has one.")
flags.mark_flag_as_required("out")


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("Give at least one results JSON or run directory.")
    if FLAGS.labels is not None and len(FLAGS.labels) != len(paths):
        raise app.UsageError(f"--labels has {len(FLAGS.labels)} labels for {len(paths)} results.")
    from tf_pyramid.visualization import figures
    from tf_pyramid.visualization import tradeoff

    labels = FLAGS.labels or [None] * len(paths)
    results = [tradeoff.load_results(p, label) for p, label in zip(paths, labels)]
    fig = tradeoff.tradeoff_figure(results, FLAGS.width, FLAGS.height, log_x=not FLAGS.linear_x,
                                   title=FLAGS.title, anytime=FLAGS.anytime)
    figures.save_figure(fig, FLAGS.out)
    print(FLAGS.out)


if __name__ == "__main__":
    app.run(main)
