"""Input pipeline speed: decode only, TF-slim's Inception preprocessing, ours, side by side.

    python tools/benchmark_input.py [--images 512] [--resolution 256] [--batch 64] [--json]
                                    [--stages]

Writes real photographs (the colour images in `skimage.data`, re-encoded as JPEG at ImageNet-like
sizes, about 500 x 375) into temporary TFRecords in the Inception/slim layout, then times, in one
run and interleaved so that machine noise hits all alike, images per second of:
  decode_only  read + parse + `decode_jpeg`, the floor any pipeline pays;
  train        `build_dataset("tfrecord", ..., training=True)`: crop, random resize, flip,
               colour distortion to `--resolution` px;
  eval         `build_dataset(..., training=False)`: whole image, antialiased resize;
  slim_reference       TF-slim's `inception_preprocessing.preprocess_for_train(fast_mode=False)`
                       re-implemented here (`slim_train_preprocess`) with the paper's crop ranges:
                       whole-image decode, float, crop, one of 4 resizes, flip, one of 4 colour
                       orderings, [-1, 1]; the pipeline the paper's authors and tensorflow/models
                       used.
  slim_eval_reference  slim's `preprocess_for_eval`: whole-image decode, central crop 0.875,
                       bilinear resize, [-1, 1] (`slim_eval_preprocess`).
Targets: train >= slim_reference, eval >= slim_eval_reference. `--json` prints one object
{"decode_only", "train", "eval", "slim_reference", "slim_eval_reference"}.
The text output also gives CPU milliseconds per image (process CPU time / images, least of the
repeats): steadier than images/s on a shared machine, where other jobs take cores away.

`--stages` times, in the same interleaved way, where the training pipeline's time goes:
  crop_bilinear  the floor of any training pipeline to `--resolution` px float: read + parse +
                 decode + crop + one bilinear resize, nothing else (no builder, no checks);
  then `build_dataset(..., training=True)` cut after each of its augmentation stages in turn
  (random_resize, random_flip, distort_color, value_range; the last is the full `train`).
"""
import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


def images_per_second(dataset, cpu_ms=None):
    """Images/s of one pass; appends the pass's process CPU ms per image to `cpu_ms`."""
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    for batch in dataset:
        count += int((batch[0] if isinstance(batch, tuple) else batch).shape[0])
    if cpu_ms is not None:
        cpu_ms.append(1000 * (time.process_time() - cpu_start) / count)
    return count / (time.perf_counter() - start)


def benchmark(num_images=512, resolution=256, batch=64, repeats=3, cpu_ms=None, stages=False):
    """Best images/s of `repeats` interleaved passes per pipeline; `cpu_ms` (a dict) receives the
    least CPU ms per image of each. `stages`: the stage breakdown instead of train and eval."""
    from tf_pyramid.data import build_dataset

    with tempfile.TemporaryDirectory() as directory:
        write_records(directory, num_images)
        pipelines = {"decode_only": decode_only_dataset(directory, batch)}
        if stages:
            pipelines.update(stage_datasets(directory, resolution, batch))
        else:
            pipelines["train"], pipelines["eval"] = (
                build_dataset("tfrecord", "train", resolution=resolution, batch_size=batch,
                              training=training, data_dir=directory)[0]
                for training in (True, False))
            pipelines["slim_reference"], pipelines["slim_eval_reference"] = (
                slim_dataset(directory, resolution, batch, training) for training in (True, False))
        for dataset in pipelines.values():  # warm-up: tracing, autotuning, file cache
            images_per_second(dataset)
        rates = {name: [] for name in pipelines}
        cpu = {name: [] for name in pipelines}
        for _ in range(repeats):
            for name, dataset in pipelines.items():
                rates[name].append(images_per_second(dataset, cpu[name]))
    if cpu_ms is not None:
        cpu_ms.update({name: round(min(values), 3) for name, values in cpu.items()})
    return {name: round(max(values), 1) for name, values in rates.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stages", action="store_true",
                        help="break the training pipeline's time down by stage")
    args = parser.parse_args(argv)
    cpu_ms = {}
    rates = benchmark(args.images, args.resolution, args.batch, args.repeats, cpu_ms,
                      stages=args.stages)
    if args.json:
        print(json.dumps(rates))
        return
    print(f"images/s ({args.images} JPEGs ~500x375, {args.resolution} px, batch {args.batch}, "
          f"{os.cpu_count()} CPUs; best of {args.repeats}). CPU ratio = decode_only CPU ms / "
          "CPU ms, the steadier estimate of the images/s ratio.")
    for name, rate in rates.items():
        print(f"  {name:20s} {rate:9.1f}   {rate / rates['decode_only']:.2f} x decode_only   "
              f"{cpu_ms[name]:.2f} CPU ms/image   CPU ratio "
              f"{cpu_ms['decode_only'] / cpu_ms[name]:.2f}")
    for ours, reference in (("train", "slim_reference"), ("eval", "slim_eval_reference")):
        if ours in rates:
            print(f"  {ours}/{reference}: {rates[ours] / rates[reference]:.2f} (images/s), "
                  f"{cpu_ms[reference] / cpu_ms[ours]:.2f} (CPU)")


if __name__ == "__main__":
    main()
