"""Training throughput of the pyramid models next to their baselines, in one run.

    python tools/benchmark_train.py [--steps 10] [--mnist_batch 128] [--imagenet_batch 32] [--json]

Times `model.train_step` driven exactly as the trainer drives it (`strategy.run` inside a
`tf.function`, default strategy) on random images, for
  mnist_m3     56 px, 3 levels, c_t 6, M = 2   next to   mnist_bl3     56 px
  imagenet_m2 128 px, 3 levels, c_t 7, M = 2   next to   imagenet_bl2 128 px
with the paper's lambdas. An untrained location module attends each cell with p ~ 0.5 (about
4.5 + 4.5**2 cells per image at 3 levels); to time the density training converges to, the
location module's bias is set so that the expected number of attended cells equals c_t (every
cell equally likely, `uniform_cell_probability`). Reported: training images/s (images of the
batch, before the M copies), ms per step, attended cells and MACs per image of one sampled
traversal (the forward cost of one Monte Carlo copy; baselines: the fixed cost).
"""
import json
import math
import os
import sys
import time

from absl import flags

from tf_pyramid import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CASES = (
    # name, model, levels, c_t, batch key
    ("mnist_m3 56px c_t=6 M=2", "mnist_m3", 3, 6.0, "mnist"),
    ("mnist_bl3 56px", "mnist_bl3", 3, None, "mnist"),
    ("imagenet_m2 128px c_t=7 M=2", "imagenet_m2", 3, 7.0, "imagenet"),
    ("imagenet_bl2 128px", "imagenet_bl2", 3, None, "imagenet"),
)
RULES = {"mnist": dict(lambda_f=1e-6, lambda_t=1e-7, lambda_r=1e-7, mc_samples=2),
         "imagenet": dict(lambda_f=1e-8, lambda_t=1e-9, lambda_r=1e-9, mc_samples=2)}


def _build(model_name, levels, c_t, dataset, seed):
    import keras
    import numpy as np

    import tf_pyramid
    from tf_pyramid.modeling.learning_rule import uniform_cell_probability
    if c_t is None:
        model = tf_pyramid.build_model(model_name, levels=levels)
        rule = None
    else:
        model = tf_pyramid.build_model(model_name, levels=levels, seed=seed)
        rule = dict(RULES[dataset], target_locations=c_t)
        q = uniform_cell_probability(c_t, levels)
        kernel, bias = model.location_module.get_weights()
        model.location_module.set_weights([np.zeros_like(kernel),
                                           np.full_like(bias, math.log(q / (1.0 - q)))])
    model.compile(optimizer=keras.optimizers.Adam(1e-4), learning_rule=rule)
    return model


def benchmark(steps=10, mnist_batch=128, imagenet_batch=32, seed=0, cases=CASES):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    batches = {"mnist": mnist_batch, "imagenet": imagenet_batch}
    strategy = tf.distribute.get_strategy()
    rows = []
    for label, model_name, levels, c_t, dataset in cases:
        with strategy.scope():
            model = _build(model_name, levels, c_t, dataset, seed)
        batch = batches[dataset]
        side, channels = model.input_size, model.channels
        images = tf.constant(rng.uniform(0, 1, (batch, side, side, channels)).astype("float32"))
        labels = tf.constant(rng.integers(0, model.num_classes, batch).astype("int32"))

        @tf.function
        def train_step(x, y, model=model):
            return strategy.run(model.train_step, args=((x, y),))

        train_step(images, labels)  # trace and warm up
        train_step(images, labels)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            logs = train_step(images, labels)
            float(logs["loss"])
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        outputs = model(images, training=True)
        macs = float(np.mean(outputs["macs"]))
        attention = model.exit_levels > 1
        cells = float(np.mean(outputs["num_locations"])) if attention else None
        samples = model.learning_rule["mc_samples"] if attention else 1
        rows.append({"case": label, "model": model_name, "resolution": side, "levels": levels,
                     "batch": batch, "mc_samples": samples, "ms_per_step": 1000 * seconds,
                     "images_per_s": batch / seconds, "attended_cells": cells,
                     "macs_per_image": macs, "train_macs_per_image": macs * samples})
        print(_format(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _format(row):
    cells = "-" if row["attended_cells"] is None else f"{row['attended_cells']:.2f}"
    return (f"{row['case']:<30} {row['batch']:>5} {row['ms_per_step']:>10.1f} "
            f"{row['images_per_s']:>9.1f} {cells:>7} {row['macs_per_image'] / 1e6:>10.2f} "
            f"{row['train_macs_per_image'] / 1e6:>12.2f}")


HEADER = (f"{'case':<30} {'batch':>5} {'ms/step':>10} {'images/s':>9} {'cells':>7} "
          f"{'MMACs/img':>10} {'MMACs/img*M':>12}")


FLAGS = flags.FlagValues()
flags.DEFINE_integer("steps", 10, "Timed steps per case.", flag_values=FLAGS)
flags.DEFINE_integer("mnist_batch", 128, "MNIST batch.", flag_values=FLAGS)
flags.DEFINE_integer("imagenet_batch", 32, "ImageNet batch.", flag_values=FLAGS)
flags.DEFINE_integer("seed", 0, "Seed.", flag_values=FLAGS)
flags.DEFINE_boolean("json", False, "Print the rows as JSON too.", flag_values=FLAGS)


def main(argv=None):
    cli.parse_flags(FLAGS, argv)
    args = FLAGS
    print(HEADER, file=sys.stderr)
    rows = benchmark(args.steps, args.mnist_batch, args.imagenet_batch, args.seed)
    import tensorflow as tf
    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    print(f"\nTraining throughput on {device}, TF {tf.__version__}:")
    print(HEADER)
    for row in rows:
        print(_format(row))
    if args.json:
        print(json.dumps({"device": device, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
