"""Inference cost of the pyramid model against its floor and against the baseline, side by side.

    python tools/benchmark_inference.py [--batch 32] [--levels 3 4] [--k 1 2 3] [--repeats 5]

For `imagenet_m2` under the `topk:K` policy (a fixed number of patches per image) it times, in
one run and interleaved so that machine noise hits all alike:
  pyramid   the whole model (one top-down pass, every level's prediction);
  FE floor  the feature extraction module alone on exactly as many 32x32 patches, in one batch:
            the least any implementation of this design can spend;
  baseline  `imagenet_bl2` on the same images.
and prints ms per image, MACs per image and the ratios (target: pyramid / FE floor <= 1.25).
"""
import json
import os
import sys
import time

from absl import flags

from tf_pyramid import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timer(fn, *args):
    def run():
        start = time.perf_counter()
        result = fn(*args)
        # Materialise every output so that nothing is left running asynchronously.
        for value in (result.values() if isinstance(result, dict) else [result]):
            value.numpy()
        return time.perf_counter() - start
    return run


def benchmark(batch=32, levels_list=(3, 4), ks=(1, 2, 3), repeats=5, seed=0):
    import numpy as np
    import tensorflow as tf

    import tf_pyramid

    rng = np.random.default_rng(seed)
    rows = []
    for levels in levels_list:
        pyramid = tf_pyramid.build_model("imagenet_m2", levels=levels, seed=seed)
        baseline = tf_pyramid.build_model("imagenet_bl2", levels=levels)
        side = pyramid.input_size
        images = tf.constant(rng.uniform(-1, 1, (batch, side, side, 3)).astype("float32"))
        spec = [tf.TensorSpec([None, side, side, 3], tf.float32)]
        baseline_fn = tf.function(lambda x: baseline(x)["logits"], input_signature=spec)
        baseline_macs = int(baseline(images[:1])["macs"][0])
        for k in ks:
            pyramid.policy = f"topk:{k}"
            pyramid_fn = tf.function(lambda x: pyramid(x), input_signature=spec)
            outputs = pyramid(images)
            patches = int(sum(k ** j for j in range(levels)))
            assert int(outputs["num_locations"][0]) == patches - 1
            b = pyramid.base_resolution
            floor_patches = tf.constant(
                rng.uniform(-1, 1, (batch * patches, b, b, 3)).astype("float32"))
            floor_fn = tf.function(lambda x: pyramid.feature_extraction(x)[1],
                                   input_signature=[tf.TensorSpec([None, b, b, 3], tf.float32)])
            runs = {"pyramid": _timer(pyramid_fn, images), "floor": _timer(floor_fn, floor_patches),
                    "baseline": _timer(baseline_fn, images)}
            for run in runs.values():
                run()  # trace and warm up
            times = {name: [] for name in runs}
            for _ in range(repeats):
                for name, run in runs.items():
                    times[name].append(run())
            ms = {name: 1000 * float(np.median(t)) / batch for name, t in times.items()}
            rows.append({
                "levels": levels, "resolution": side, "k": k, "patches_per_image": patches,
                "pyramid_ms": ms["pyramid"], "fe_floor_ms": ms["floor"],
                "baseline_ms": ms["baseline"],
                "pyramid_macs": int(outputs["macs"][0]),
                "fe_floor_macs": patches * pyramid.module_costs()["feature_extraction"],
                "baseline_macs": baseline_macs,
                "pyramid_over_floor": ms["pyramid"] / ms["floor"],
                "pyramid_over_baseline": ms["pyramid"] / ms["baseline"],
            })
            print(_format_row(rows[-1]), flush=True)
    return rows


HEADER = (f"{'L':>2} {'px':>4} {'K':>2} {'patches':>7} | {'pyramid ms':>10} {'FE floor ms':>11} "
          f"{'baseline ms':>11} | {'pyramid GMAC':>12} {'floor GMAC':>10} {'BL GMAC':>8} | "
          f"{'pyr/floor':>9} {'pyr/BL':>7}")


def _format_row(r):
    return (f"{r['levels']:>2} {r['resolution']:>4} {r['k']:>2} {r['patches_per_image']:>7} | "
            f"{r['pyramid_ms']:>10.2f} {r['fe_floor_ms']:>11.2f} {r['baseline_ms']:>11.2f} | "
            f"{r['pyramid_macs'] / 1e9:>12.3f} {r['fe_floor_macs'] / 1e9:>10.3f} "
            f"{r['baseline_macs'] / 1e9:>8.3f} | {r['pyramid_over_floor']:>9.3f} "
            f"{r['pyramid_over_baseline']:>7.3f}")


FLAGS = flags.FlagValues()
flags.DEFINE_integer("batch", 32, "Images per call.", flag_values=FLAGS)
flags.DEFINE_multi_integer("levels", [3, 4], "Pyramid levels (repeat the flag for several).",
                           flag_values=FLAGS)
flags.DEFINE_multi_integer("k", [1, 2, 3], "topk:K budgets (repeat the flag for several).",
                           flag_values=FLAGS)
flags.DEFINE_integer("repeats", 5, "Timed repeats (median).", flag_values=FLAGS)
flags.DEFINE_boolean("json", False, "Print the rows as JSON at the end.", flag_values=FLAGS)


def main(argv=None):
    cli.parse_flags(FLAGS, argv)
    args = FLAGS
    print("imagenet_m2 under topk:K vs FE alone on the same patches vs imagenet_bl2; "
          f"batch {args.batch}, ms per image (median of {args.repeats})")
    print(HEADER, flush=True)
    rows = benchmark(args.batch, args.levels, args.k, args.repeats)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
