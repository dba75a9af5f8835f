"""Inference cost of the pyramid model against its floors and against the baseline, side by side.

    python tools/benchmark_inference.py [--batch 32] [--levels 3 4] [--k 1 2 3] [--repeats 5]
        [--serving_batch 1 8] [--noserving] [--model imagenet_m2 --baseline imagenet_bl2]

For the pyramid model under a fixed budget of K cells per grid it times, in one run and
interleaved so that machine noise hits all alike (ms per image, median of the repeats):
  pyramid    the Keras model called in a tf.function (one top-down pass, every level's prediction);
  FE floor   the feature extraction module alone on exactly as many patches, in ONE batch: the
             least any implementation could spend if every patch were known up front;
  FE levels  the same module alone on the same patches level by level (1, K, K^2, ... per image,
             one call per level, each after the previous): the least a top-down traversal can
             spend, since level l+1's patches depend on level l's attention;
  baseline   the dense baseline on the same images.
With serving rows (the default), each (L, K) is also exported as a SavedModel and its signatures
are called as TF Serving calls them, `tf.saved_model.load(dir).signatures[name](...)`:
`serving_default` (pixels 0-255), `anytime` (threshold 2: no early exit) and `serving_bytes`
(JPEG strings, decoding included), at each `--serving_batch`, interleaved with the Keras model,
both floors and the baseline at that batch.

The fixed budget is made exact for every policy: the location module's kernel is zeroed and its
bias set so that the same K cells of every grid have p > 0.5 (the exported signatures use the
`threshold` policy); its matmul still runs, so the compute is the trained model's.
"""
import json
import os
import sys
import tempfile
import time

from absl import flags

from tf_pyramid import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIGNATURES = ("serving_default", "anytime", "serving_bytes")
# Cells given the budget, spread over the grid (which cells does not change the cost).
_BUDGET_CELLS = (4, 0, 8, 2, 6, 1, 3, 5, 7)


def _timer(fn, *args, **kwargs):
    def run():
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        # Materialise every output so that nothing is left running asynchronously.
        for value in (result.values() if isinstance(result, dict) else
                      result if isinstance(result, (list, tuple)) else [result]):
            value.numpy()
        return time.perf_counter() - start
    return run


def _interleaved(runs, repeats):
    """{name: [seconds]}: one warm-up call each, then `repeats` rounds over all of them."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return times


def fixed_budget(model, k):
    """Makes every policy attend the same `k` cells of every grid (see the module doc)."""
    import numpy as np
    kernel, bias = model.location_module.conv.kernel, model.location_module.conv.bias
    kernel.assign(np.zeros(kernel.shape, "float32"))
    values = np.full(bias.shape, -4.0, "float32")
    values[list(_BUDGET_CELLS[:k])] = 4.0
    bias.assign(values)


def _fe_functions(model):
    """(one batch, level by level): the feature extraction module alone, as tf.functions."""
    import tensorflow as tf
    b, c = model.base_resolution, model.channels
    spec = tf.TensorSpec([None, b, b, c], tf.float32)

    @tf.function(input_signature=[spec])
    def one_batch(patches):
        return model.feature_extraction(patches)[1]

    @tf.function
    def level_by_level(levels):
        outputs = []
        for patches in levels:
            with tf.control_dependencies(outputs[-1:]):  # level l+1 waits for level l
                outputs.append(model.feature_extraction(tf.identity(patches))[1])
        return outputs

    return one_batch, level_by_level


def _patches(rng, model, batch, k, levels):
    """Random patches: all in one batch, and per level (batch * k**j at level j)."""
    import tensorflow as tf
    b, c = model.base_resolution, model.channels
    per_level = [tf.constant(rng.uniform(-1, 1, (batch * k ** j, b, b, c)).astype("float32"))
                 for j in range(levels)]
    return tf.concat(per_level, axis=0), per_level


def _ms(times, batch):
    import numpy as np
    return {name: 1000 * float(np.median(t)) / batch for name, t in times.items()}


def benchmark(batch=32, levels_list=(3, 4), ks=(1, 2, 3), repeats=5, seed=0,
              model_name="imagenet_m2", baseline_name="imagenet_bl2", serving_batches=(),
              export_dir=None, verbose=True):
    """Rows of the Keras table, and (with `serving_batches`) of the serving table."""
    import numpy as np
    import tensorflow as tf

    import tf_pyramid

    rng = np.random.default_rng(seed)
    rows, serving_rows = [], []
    for levels in levels_list:
        pyramid = tf_pyramid.build_model(model_name, levels=levels, seed=seed)
        baseline = tf_pyramid.build_model(baseline_name, levels=levels)
        side, channels = pyramid.input_size, pyramid.channels
        spec = [tf.TensorSpec([None, side, side, channels], tf.float32)]
        baseline_fn = tf.function(lambda x: baseline(x)["logits"], input_signature=spec)
        baseline_macs = int(baseline(tf.zeros([1, side, side, channels]))["macs"][0])
        one_batch, level_by_level = _fe_functions(pyramid)
        fe_macs = pyramid.module_costs()["feature_extraction"]
        for k in ks:
            fixed_budget(pyramid, k)
            pyramid.policy = f"topk:{k}"
            pyramid_fn = tf.function(lambda x: pyramid(x), input_signature=spec)
            patches = int(sum(k ** j for j in range(levels)))
            images = tf.constant(
                rng.uniform(-1, 1, (batch, side, side, channels)).astype("float32"))
            outputs = pyramid(images)
            assert int(outputs["num_locations"][0]) == patches - 1
            all_patches, per_level = _patches(rng, pyramid, batch, k, levels)
            times = _interleaved({"pyramid": _timer(pyramid_fn, images),
                                  "floor": _timer(one_batch, all_patches),
                                  "levels": _timer(level_by_level, per_level),
                                  "baseline": _timer(baseline_fn, images)}, repeats)
            ms = _ms(times, batch)
            rows.append({
                "levels": levels, "resolution": side, "k": k, "batch": batch,
                "patches_per_image": patches,
                "pyramid_ms": ms["pyramid"], "fe_floor_ms": ms["floor"],
                "fe_levels_ms": ms["levels"], "baseline_ms": ms["baseline"],
                "pyramid_macs": int(outputs["macs"][0]),
                "fe_floor_macs": patches * fe_macs,
                "baseline_macs": baseline_macs,
                "pyramid_over_floor": ms["pyramid"] / ms["floor"],
                "pyramid_over_levels": ms["pyramid"] / ms["levels"],
                "pyramid_over_baseline": ms["pyramid"] / ms["baseline"],
                "macs_ratio": int(outputs["macs"][0]) / baseline_macs,
            })
            if verbose:
                print(format_row(rows[-1]), flush=True)
            if serving_batches:
                serving_rows += _serving_rows(
                    pyramid, k, serving_batches, repeats, rng, export_dir,
                    {"pyramid": pyramid_fn, "floor": one_batch, "levels": level_by_level,
                     "baseline": baseline_fn}, baseline_macs, verbose)
    return rows, serving_rows


def _serving_rows(pyramid, k, batches, repeats, rng, export_dir, keras_fns, baseline_macs,
                  verbose):
    """Times the exported signatures against the Keras model, floors and baseline."""
    import numpy as np
    import tensorflow as tf

    from tf_pyramid.serving import export_lib

    levels, side, channels = pyramid.levels, pyramid.input_size, pyramid.channels
    pyramid.input_convention = {"input_size": side, "channels": channels,
                                "value_range": [-1.0, 1.0],
                                "resize_method": "area" if channels == 1 else "bilinear"}
    with tempfile.TemporaryDirectory(dir=export_dir) as base:
        path = export_lib.export_saved_model(pyramid, base, version=1)
        signatures = tf.saved_model.load(path).signatures
        rows = []
        for batch in batches:
            pixels = rng.integers(0, 256, (batch, side, side, channels)).astype("uint8")
            encoded = tf.constant([tf.io.encode_jpeg(p, quality=90).numpy() for p in pixels])
            raw = tf.constant(pixels.astype("float32"))
            images = tf.constant(pixels.astype("float32") / 127.5 - 1.0)
            all_patches, per_level = _patches(rng, pyramid, batch, k, levels)
            runs = {
                "pyramid": _timer(keras_fns["pyramid"], images),
                "floor": _timer(keras_fns["floor"], all_patches),
                "levels": _timer(keras_fns["levels"], per_level),
                "baseline": _timer(keras_fns["baseline"], images),
                "serving_default": _timer(signatures["serving_default"], images=raw),
                "anytime": _timer(signatures["anytime"], images=raw,
                                  threshold=tf.constant(2.0)),
                "serving_bytes": _timer(signatures["serving_bytes"], image_bytes=encoded),
            }
            patches = int(sum(k ** j for j in range(levels)))
            macs = {}
            for name in SIGNATURES:
                kwargs = ({"image_bytes": encoded} if name == "serving_bytes" else
                          {"images": raw, "threshold": tf.constant(2.0)} if name == "anytime"
                          else {"images": raw})
                outputs = signatures[name](**kwargs)
                locations = outputs["num_locations"].numpy()
                assert np.all(locations == patches - 1), (name, locations)
                macs[name] = int(outputs["macs"].numpy()[0])
            ms = _ms(_interleaved(runs, repeats), batch)
            for name in SIGNATURES:
                rows.append({
                    "levels": levels, "k": k, "batch": batch, "signature": name,
                    "signature_ms": ms[name], "keras_ms": ms["pyramid"],
                    "fe_floor_ms": ms["floor"], "fe_levels_ms": ms["levels"],
                    "baseline_ms": ms["baseline"],
                    "over_keras": ms[name] / ms["pyramid"],
                    "over_floor": ms[name] / ms["floor"],
                    "over_levels": ms[name] / ms["levels"],
                    "over_baseline": ms[name] / ms["baseline"],
                    "macs_ratio": macs[name] / baseline_macs,
                })
                if verbose:
                    print(format_serving_row(rows[-1]), flush=True)
    return rows


HEADER = (f"{'L':>2} {'px':>4} {'K':>2} {'patches':>7} | {'pyramid ms':>10} {'FE floor ms':>11} "
          f"{'FE levels ms':>12} {'baseline ms':>11} | {'pyramid GMAC':>12} {'floor GMAC':>10} "
          f"{'BL GMAC':>8} | {'pyr/floor':>9} {'pyr/levels':>10} {'pyr/BL':>7} {'MAC ratio':>9}")


def format_row(r):
    return (f"{r['levels']:>2} {r['resolution']:>4} {r['k']:>2} {r['patches_per_image']:>7} | "
            f"{r['pyramid_ms']:>10.2f} {r['fe_floor_ms']:>11.2f} {r['fe_levels_ms']:>12.2f} "
            f"{r['baseline_ms']:>11.2f} | "
            f"{r['pyramid_macs'] / 1e9:>12.3f} {r['fe_floor_macs'] / 1e9:>10.3f} "
            f"{r['baseline_macs'] / 1e9:>8.3f} | {r['pyramid_over_floor']:>9.3f} "
            f"{r['pyramid_over_levels']:>10.3f} {r['pyramid_over_baseline']:>7.3f} "
            f"{r['macs_ratio']:>9.3f}")


SERVING_HEADER = (f"{'L':>2} {'K':>2} {'batch':>5} {'signature':>15} | {'sig ms':>7} "
                  f"{'Keras ms':>8} {'floor ms':>8} {'levels ms':>9} {'BL ms':>7} | "
                  f"{'/Keras':>6} {'/floor':>6} {'/levels':>7} {'/BL':>6} {'MAC ratio':>9}")


def format_serving_row(r):
    return (f"{r['levels']:>2} {r['k']:>2} {r['batch']:>5} {r['signature']:>15} | "
            f"{r['signature_ms']:>7.2f} {r['keras_ms']:>8.2f} {r['fe_floor_ms']:>8.2f} "
            f"{r['fe_levels_ms']:>9.2f} {r['baseline_ms']:>7.2f} | {r['over_keras']:>6.3f} "
            f"{r['over_floor']:>6.3f} {r['over_levels']:>7.3f} {r['over_baseline']:>6.3f} "
            f"{r['macs_ratio']:>9.3f}")


FLAGS = flags.FlagValues()
flags.DEFINE_integer("batch", 32, "Images per call (Keras table).", flag_values=FLAGS)
flags.DEFINE_multi_integer("levels", [3, 4], "Pyramid levels (repeat the flag for several).",
                           flag_values=FLAGS)
flags.DEFINE_multi_integer("k", [1, 2, 3], "Cells per grid, K (repeat the flag for several).",
                           flag_values=FLAGS)
flags.DEFINE_integer("repeats", 5, "Timed repeats (median).", flag_values=FLAGS)
flags.DEFINE_multi_integer("serving_batch", [1, 8],
                           "Batch sizes of the SavedModel signature rows.", flag_values=FLAGS)
flags.DEFINE_boolean("serving", True, "Also time the exported SavedModel's signatures.",
                     flag_values=FLAGS)
flags.DEFINE_string("model", "imagenet_m2", "Pyramid model name.", flag_values=FLAGS)
flags.DEFINE_string("baseline", "imagenet_bl2", "Baseline model name.", flag_values=FLAGS)
flags.DEFINE_boolean("json", False, "Print the rows as JSON at the end.", flag_values=FLAGS)


def main(argv=None):
    cli.parse_flags(FLAGS, argv)
    args = FLAGS
    print(f"{args.model} with K cells per grid vs FE alone on the same patches (one batch; level "
          f"by level) vs {args.baseline}; batch {args.batch}, ms per image (median of "
          f"{args.repeats})")
    print(HEADER, flush=True)
    serving_batches = tuple(args.serving_batch) if args.serving else ()
    rows, serving_rows = benchmark(args.batch, args.levels, args.k, args.repeats,
                                   model_name=args.model, baseline_name=args.baseline,
                                   serving_batches=serving_batches, verbose=False)
    for row in rows:
        print(format_row(row))
    if serving_rows:
        print("\nExported SavedModel, signatures as TF Serving calls them (same K; ms per image;"
              " Keras, floors and baseline timed interleaved at the same batch)")
        print(SERVING_HEADER)
        for row in serving_rows:
            print(format_serving_row(row))
    if args.json:
        print(json.dumps({"keras": rows, "serving": serving_rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
