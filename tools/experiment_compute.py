"""The compute of each experiment (docs/training.md, "Compute of each experiment"), from its
flagfile: expected MACs per image (and the range per level), training images, epochs per stage and
per chain, training FLOPs (forward + backward ~ 3 forward passes, x M Monte Carlo copies) and
accelerator-hours at a stated throughput (an estimate: peak x assumed utilisation).

    python tools/experiment_compute.py                      # the tables of docs/training.md
    python tools/experiment_compute.py --experiments=imagenet/m2_256_ct29 --json
    python tools/experiment_compute.py --accelerator=H100 --peak_tflops=989 --utilisation=0.3
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

from tf_pyramid import cli  # noqa: E402

FLAGS = flags.FlagValues()
flags.DEFINE_list("experiments", [], "Experiments (default: every one, in the tables of "
                  "docs/training.md).", flag_values=FLAGS)
flags.DEFINE_string("accelerator", "A100", "Name of the accelerator in the table's header.",
                    flag_values=FLAGS)
flags.DEFINE_float("peak_tflops", 312.0, "Its dense peak in TFLOP/s at the training precision "
                   "(A100 bf16: 312).", flag_values=FLAGS)
flags.DEFINE_float("utilisation", 0.3, "Assumed fraction of the peak a training step sustains.",
                   flag_values=FLAGS, lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_boolean("json", False, "Print JSON instead of markdown tables.", flag_values=FLAGS)


def main(argv=None):
    cli.parse_flags(FLAGS, argv)
    from tf_pyramid.training import compute  # noqa: PLC0415  (imports TensorFlow)
    from tf_pyramid.configs import experiments  # noqa: PLC0415

    throughput = compute.Throughput(FLAGS.accelerator, FLAGS.peak_tflops, FLAGS.utilisation)
    if FLAGS.utilisation <= 0 or FLAGS.peak_tflops <= 0:
        print("Error: --peak_tflops and --utilisation must be above 0.", file=sys.stderr)
        return 2
    try:
        if FLAGS.experiments:
            study = compute.study_compute(FLAGS.experiments, throughput)
            text = json.dumps(study, indent=2) if FLAGS.json else compute.markdown(study, throughput)
        elif FLAGS.json:
            names = compute.family_names(("imagenet", "multilevel", "mnist"))
            text = json.dumps(compute.study_compute(names, throughput), indent=2)
        else:
            text = compute.document(throughput)
    except experiments.ExperimentError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
