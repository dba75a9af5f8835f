"""Input pipeline speed: decode only, TF-slim's Inception preprocessing, ours, side by side.

    python tools/benchmark_input.py [--images 1024] [--resolution 256] [--batch 64]
                                    [--repeats 9] [--json] [--stages]

Writes real photographs (the colour images in `skimage.data`, re-encoded as JPEG at ImageNet-like
sizes, about 500 x 375) into temporary TFRecords in the Inception/slim layout, then runs, in one
process and interleaved so that machine noise hits all alike, passes over:
  decode_only  read + parse + `decode_jpeg`, the floor any pipeline pays;
  train        `build_dataset("tfrecord", ..., training=True)`: crop, random resize, flip,
               colour distortion to `--resolution` px;
  train_tf_ops `train` on TensorFlow's ops instead of the compiled kernels
               (`compiled_ops.tensorflow_ops_only`): what the kernels buy, side by side;
  eval         `build_dataset(..., training=False)`: whole image (JPEGs decoded at a reduced
               DCT scale when at least twice the target), antialiased resize;
  eval_tf_ops  `eval` on TensorFlow's ops instead of the compiled kernels;
  slim_reference       TF-slim's `inception_preprocessing.preprocess_for_train(fast_mode=False)`
                       re-implemented here (`slim_train_preprocess`) with the paper's crop ranges:
                       whole-image decode, float, crop, one of 4 resizes, flip, one of 4 colour
                       orderings, [-1, 1]; the pipeline the paper's authors and tensorflow/models
                       used.
  slim_eval_reference  slim's `preprocess_for_eval`: whole-image decode, central crop 0.875,
                       bilinear resize, [-1, 1] (`slim_eval_preprocess`).
Targets: train >= slim_reference, eval >= slim_eval_reference.

Each pass is split where a training epoch's cost splits (`measure_pass`): the steady state after
the first batch (images/s, and process CPU ms per image: steadier on a shared machine), which is
what an epoch of thousands of batches runs at, and the startup (making the iterator: tf.data's
graph rewrites and function instantiation, plus the first batch), paid once per epoch; the
whole-pass rate is printed too. Each ratio ours / reference is given twice: as the ratio of the
two bests, and as the median over the interleaved rounds of the per-round ratio (`paired_ratios`),
the steadier of the two on a shared machine, whose speed drifts during a run. `--json` prints
{pipeline: steady images/s, ..., "cpu_ms": {pipeline: ...}, "full_rate": {...}, "startup_ms":
{...}, "median_ratios": {"train/slim_reference": {"rate", "cpu", "full_rate"}, "eval/...": ...},
"compiled_ops": null, or why the pipelines ran on TensorFlow's ops instead of the compiled kernels
(tf_pyramid/data/compiled_ops.py; TF_PYRAMID_COMPILED_OPS=0 turns them off)}.

`--stages` times, in the same interleaved way, where the training pipeline's time goes:
  crop_bilinear  the floor of any training pipeline to `--resolution` px float: read + parse +
                 decode + crop + one bilinear resize, nothing else (no builder, no checks);
  then `build_dataset(..., training=True)` cut after each of its augmentation stages in turn
  (random_resize, random_flip, distort_color, value_range; the last is the full `train`).
"""
import json
import os
import statistics
import tempfile
import time

from absl import flags

from tf_pyramid import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry")


def write_records(directory, num_images, seed=0):
    """`num_images` JPEGs (random ~500 x 375 crops/resizes of skimage photos) in 8 shards."""
    import numpy as np
    import tensorflow as tf
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)() for name in PHOTOS]
    shards = [tf.io.TFRecordWriter(os.path.join(directory, f"train-{i:05d}-of-00008"))
              for i in range(8)]
    for i in range(num_images):
        photo = photos[i % len(photos)]
        height, width = (375, 500) if rng.uniform() < 0.7 else (500, 375)
        image = tf.image.resize(photo, [height, width], antialias=True)
        image = tf.image.flip_left_right(image) if rng.uniform() < 0.5 else image
        encoded = tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8),
                                    quality=90).numpy()
        feature = {
            "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
            "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                value=[1 + i % 1000])),
        }
        shards[i % 8].write(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
    for shard in shards:
        shard.close()


def _minimal_pipeline(directory, batch, image_fn, seeded):
    """Read the shards, parse `image/encoded`, map `image_fn(encoded[, seed])`, batch: the bare
    pipeline the reference rows share (no builder, no checks, no shuffle)."""
    import tensorflow as tf
    from tf_pyramid.data import builder

    files = tf.data.Dataset.list_files(os.path.join(directory, "train-*"), shuffle=False)
    records = files.interleave(tf.data.TFRecordDataset, cycle_length=8,
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)

    def example(serialized, *seed):
        encoded = tf.io.parse_single_example(
            serialized, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})["image/encoded"]
        return image_fn(encoded, *seed)

    if seeded:
        records = tf.data.Dataset.zip((records, builder._example_seeds(None, None)))
    return records.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).batch(
        batch).prefetch(tf.data.AUTOTUNE)


# TF-slim `inception_preprocessing` (tensorflow/models, research/slim), with the paper's crop ranges
# (area 0.85-1, aspect 0.5-2) instead of Inception's (0.05-1, 3/4-4/3). Stateful random ops, as
# in slim; `tf.image.resize` is TF2's `resize_images` (half-pixel centres).
SLIM_CROP_AREA_RANGE = (0.85, 1.0)
SLIM_CROP_ASPECT_RANGE = (0.5, 2.0)
SLIM_CROP_MAX_ATTEMPTS = 100  # slim's default
SLIM_RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")  # ResizeMethod 0-3
SLIM_EVAL_CENTRAL_FRACTION = 0.875


def _slim_distort_color(image, ordering):
    """slim `distort_color(fast_mode=False)`: one of four orders of the Howard distortion."""
    import tensorflow as tf

    ops = {"b": lambda x: tf.image.random_brightness(x, max_delta=32.0 / 255.0),
           "s": lambda x: tf.image.random_saturation(x, lower=0.5, upper=1.5),
           "h": lambda x: tf.image.random_hue(x, max_delta=0.2),
           "c": lambda x: tf.image.random_contrast(x, lower=0.5, upper=1.5)}
    for name in ("bshc", "sbch", "chbs", "hscb")[ordering]:
        image = ops[name](image)
    return tf.clip_by_value(image, 0.0, 1.0)


def _slim_random_selector(image, fn, num_cases):
    """slim `apply_with_random_selector`: `fn(image, case)` for one uniformly drawn case."""
    import tensorflow as tf

    case = tf.random.uniform([], maxval=num_cases, dtype=tf.int32)
    return tf.switch_case(case, [lambda k=k: fn(image, k) for k in range(num_cases)])


def slim_train_preprocess(encoded, size):
    """slim `preprocess_for_train(fast_mode=False)` on JPEG bytes -> float32 [size, size, 3]."""
    import tensorflow as tf

    image = tf.image.convert_image_dtype(tf.io.decode_jpeg(encoded, channels=3), tf.float32)
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1, aspect_ratio_range=SLIM_CROP_ASPECT_RANGE,
        area_range=SLIM_CROP_AREA_RANGE, max_attempts=SLIM_CROP_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, crop_size)
    image.set_shape([None, None, 3])
    image = _slim_random_selector(
        image, lambda x, k: tf.image.resize(x, [size, size], SLIM_RESIZE_METHODS[k]), 4)
    image = tf.image.random_flip_left_right(image)
    image = _slim_random_selector(image, _slim_distort_color, 4)
    image.set_shape([size, size, 3])
    return (image - 0.5) * 2.0


def slim_eval_preprocess(encoded, size):
    """slim `preprocess_for_eval`: central 87.5% crop, bilinear resize -> float32 [-1, 1]."""
    import tensorflow as tf

    image = tf.image.convert_image_dtype(tf.io.decode_jpeg(encoded, channels=3), tf.float32)
    image = tf.image.central_crop(image, central_fraction=SLIM_EVAL_CENTRAL_FRACTION)
    image = tf.image.resize(image, [size, size], method="bilinear")
    image.set_shape([size, size, 3])
    return (image - 0.5) * 2.0


def slim_dataset(directory, resolution, batch, training):
    """The slim reference (train or eval) in the minimal pipeline the decode-only row uses."""
    preprocess = slim_train_preprocess if training else slim_eval_preprocess
    return _minimal_pipeline(directory, batch, lambda encoded: preprocess(encoded, resolution),
                             seeded=False)


def decode_only_dataset(directory, batch):
    """The floor any pipeline pays: read + parse + `decode_jpeg`."""
    import tensorflow as tf

    def decode(encoded):
        image = tf.io.decode_jpeg(encoded, channels=3)
        return tf.reduce_mean(tf.cast(image, tf.float32))  # a fixed-size result to batch

    return _minimal_pipeline(directory, batch, decode, seeded=False)


def crop_bilinear_dataset(directory, resolution, batch):
    """The floor of a training pipeline: decode, crop, one bilinear resize, batch."""
    import tensorflow as tf
    from tf_pyramid.data import image_ops

    def crop_and_resize(encoded, seed):
        image = image_ops.decode_and_inception_crop(encoded, seed=seed)
        return tf.image.resize(tf.cast(image, tf.float32), [resolution, resolution]) / 255.0

    return _minimal_pipeline(directory, batch, crop_and_resize, seeded=True)


def stage_datasets(directory, resolution, batch):
    """{stage name: dataset}: the floor, then the training pipeline cut after each stage."""
    from unittest import mock

    from tf_pyramid.data import build_dataset
    from tf_pyramid.data import builder

    stages = builder.image_ops_after_decode(True, resolution)
    datasets = {"crop_bilinear": crop_bilinear_dataset(directory, resolution, batch)}
    for end in range(1, len(stages) + 1):
        # build_dataset reads the op list when it builds the map function: patch only that call.
        with mock.patch.object(builder, "image_ops_after_decode",
                               lambda training, resolution, end=end: stages[:end]):
            datasets["+" + stages[end - 1][0]] = build_dataset(
                "tfrecord", "train", resolution=resolution, batch_size=batch, training=True,
                data_dir=directory)[0]
    return datasets


def measure_pass(dataset):
    """One pass over `dataset`, split where a training epoch's cost splits:
    `startup_ms` (wall) and `startup_cpu_ms`: making the iterator (tf.data's graph rewrites,
    function instantiation) and the first batch, paid once per epoch; `rate` (images/s) and
    `cpu_ms` (process CPU ms per image): the steady state after the first batch, what an epoch of
    many batches runs at; `full_rate`: images/s of the whole pass, startup included."""
    start, cpu_start = time.perf_counter(), time.process_time()
    iterator = iter(dataset)
    first = next(iterator)
    steady, cpu_steady = time.perf_counter(), time.process_time()
    first_count = count = int((first[0] if isinstance(first, tuple) else first).shape[0])
    for batch in iterator:
        count += int((batch[0] if isinstance(batch, tuple) else batch).shape[0])
    end, cpu_end = time.perf_counter(), time.process_time()
    rest = max(count - first_count, 1)
    return {"startup_ms": 1000 * (steady - start),
            "startup_cpu_ms": 1000 * (cpu_steady - cpu_start),
            "rate": rest / (end - steady), "cpu_ms": 1000 * (cpu_end - cpu_steady) / rest,
            "full_rate": count / (end - start)}


# (ours, reference) pairs the tool compares. Targets: the first two >= 1; the others are what
# the compiled kernels buy.
COMPARISONS = (("train", "slim_reference"), ("eval", "slim_eval_reference"),
               ("train", "train_tf_ops"), ("eval", "eval_tf_ops"))


def paired_ratios(ours, reference):
    """Medians over interleaved rounds of ours / reference, from two equally long lists of
    `measure_pass` results (round i of each ran back to back): "rate" and "full_rate" as
    images/s ratios, "cpu" as reference CPU ms / ours (> 1: ours is faster in both). Noise that
    drifts over a run (another process, CPU frequency) hits both passes of a round alike, so
    these ratios are steadier than a ratio of two bests."""
    rounds = list(zip(ours, reference))
    return {"rate": statistics.median(a["rate"] / b["rate"] for a, b in rounds),
            "cpu": statistics.median(b["cpu_ms"] / a["cpu_ms"] for a, b in rounds),
            "full_rate": statistics.median(a["full_rate"] / b["full_rate"] for a, b in rounds)}


def benchmark(num_images=1024, resolution=256, batch=64, repeats=9, stages=False):
    """({pipeline: {measure: value}}, {"ours/reference": paired ratios}): best `rate` and
    `full_rate`, least `cpu_ms` and `startup_ms` (median of `startup_cpu_ms`) over `repeats`
    interleaved passes after a warm-up pass, and `paired_ratios` of COMPARISONS.
    `stages`: the stage breakdown instead of train and eval (no ratios)."""
    from tf_pyramid.data import build_dataset
    from tf_pyramid.data import compiled_ops

    with tempfile.TemporaryDirectory() as directory:
        write_records(directory, num_images)
        pipelines = {"decode_only": decode_only_dataset(directory, batch)}
        if stages:
            pipelines.update(stage_datasets(directory, resolution, batch))
        else:
            def ours(training):
                return build_dataset("tfrecord", "train", resolution=resolution,
                                     batch_size=batch, training=training, data_dir=directory)[0]

            pipelines["train"] = ours(True)
            with compiled_ops.tensorflow_ops_only():
                pipelines["train_tf_ops"] = ours(True)
            pipelines["eval"] = ours(False)
            with compiled_ops.tensorflow_ops_only():
                pipelines["eval_tf_ops"] = ours(False)
            pipelines["slim_reference"], pipelines["slim_eval_reference"] = (
                slim_dataset(directory, resolution, batch, training) for training in (True, False))
        for dataset in pipelines.values():  # warm-up: tracing, autotuning, file cache
            measure_pass(dataset)
        passes = {name: [] for name in pipelines}
        for _ in range(repeats):
            for name, dataset in pipelines.items():
                passes[name].append(measure_pass(dataset))
    pick = {"rate": max, "full_rate": max, "cpu_ms": min, "startup_ms": min,
            "startup_cpu_ms": statistics.median}
    results = {name: {key: round(choose(p[key] for p in runs), 3) for key, choose in pick.items()}
               for name, runs in passes.items()}
    ratios = {f"{ours}/{reference}": {key: round(value, 3) for key, value in
                                      paired_ratios(passes[ours], passes[reference]).items()}
              for ours, reference in COMPARISONS if ours in passes}
    return results, ratios


FLAGS = flags.FlagValues()
flags.DEFINE_integer("images", 1024, "JPEGs written and read.", flag_values=FLAGS)
flags.DEFINE_integer("resolution", 256, "Model input side.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 64, "Batch size.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 9, "Interleaved rounds.", flag_values=FLAGS)
flags.DEFINE_boolean("json", False, "Print JSON.", flag_values=FLAGS)
flags.DEFINE_boolean("stages", False, "Break the training pipeline's time down by stage.",
                     flag_values=FLAGS)


def main(argv=None):
    cli.parse_flags(FLAGS, argv)
    args = FLAGS
    results, ratios = benchmark(args.images, args.resolution, args.batch, args.repeats,
                                stages=args.stages)
    from tf_pyramid.data import compiled_ops
    if args.json:  # steady-state images/s per pipeline, plus the other measures by name
        output = {name: measures["rate"] for name, measures in results.items()}
        for key in ("cpu_ms", "full_rate", "startup_ms"):
            output[key] = {name: measures[key] for name, measures in results.items()}
        output["median_ratios"] = ratios
        output["compiled_ops"] = compiled_ops.why_not()
        print(json.dumps(output))
        return
    print(f"{args.images} JPEGs ~500x375 -> {args.resolution} px, batch {args.batch}, "
          f"{os.cpu_count()} CPUs, {args.repeats} interleaved passes each. Steady state = after "
          "the first batch of a pass (best images/s, least CPU ms per image); startup = iterator "
          "+ first batch (least wall ms, median CPU ms); full pass = images/s of the whole pass.")
    print("  Colour distortion and bilinear resize: " + (
        "compiled kernels" if compiled_ops.why_not() is None else
        f"TensorFlow's ops ({compiled_ops.why_not()})"))
    print(f"  {'pipeline':20s} {'img/s':>8s} {'CPU ms/img':>11s} {'startup ms':>11s} "
          f"{'(CPU ms)':>9s} {'full img/s':>11s}")
    for name, m in results.items():
        print(f"  {name:20s} {m['rate']:8.1f} {m['cpu_ms']:11.2f} {m['startup_ms']:11.0f} "
              f"{m['startup_cpu_ms']:9.0f} {m['full_rate']:11.1f}")
    for ours, reference in COMPARISONS:
        if ours in results:
            a, b = results[ours], results[reference]
            paired = ratios[f"{ours}/{reference}"]
            print(f"  {ours}/{reference}: steady {a['rate'] / b['rate']:.2f} (images/s), "
                  f"{b['cpu_ms'] / a['cpu_ms']:.2f} (CPU); full pass "
                  f"{a['full_rate'] / b['full_rate']:.2f} (images/s) [bests]; median of the "
                  f"{args.repeats} rounds: steady {paired['rate']:.2f}, CPU {paired['cpu']:.2f}, "
                  f"full pass {paired['full_rate']:.2f}")


if __name__ == "__main__":
    main()
