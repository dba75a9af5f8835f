"""`build_dataset`: the one entry point the trainer and evaluation call (docs/data.md).

Pipeline shape: records (in-memory digits, or raw elements from a source) -> per-worker shard ->
shuffle (training) -> zip with a stream of per-example stateless seeds -> one parallel map that
parses, decodes and augments -> batch -> prefetch. Randomness comes only from the seed stream,
which is re-randomized on every pass: positions, crops and colours change every epoch and every
evaluation pass, and a fixed `seed` makes the whole sequence of passes reproducible.
"""
import functools

import tensorflow as tf

from tf_pyramid.data import decoding
from tf_pyramid.data import image_ops
from tf_pyramid.data import sources
from tf_pyramid.data import mnist
from tf_pyramid.data.dataset_info import DatasetInfo
from tf_pyramid.data.input_convention import InputConvention
from tf_pyramid.data.registry import get_op
from tf_pyramid.data.skipped_image_counter import SkippedImageCounter

DATASETS = ("mnist",) + tuple(sources.SOURCES)  # mnist, imagenet2012, tfrecord, folder
SPLITS = sources.SPLITS
IMAGE_VALUE_RANGE = (-1.0, 1.0)
MNIST_SHUFFLE_BUFFER = 60_000  # every digit: they are 784 bytes each
_WORKER_SEED_STRIDE = 1_000_003



def image_ops_after_decode(training, resolution):
    """(registry name, params) of the ops after the decode (and crop, in training); image_ops."""
    if training:
        # distort_color leaves its clip to value_range, which clips to [0, 1] first anyway.
        return (("random_resize", {"size": resolution}), ("random_flip", {}),
                ("distort_color", {"clip": False}), ("value_range", {}))
    return (("resize_antialiased", {"size": resolution, "value_range": IMAGE_VALUE_RANGE}),)


def input_convention(dataset, resolution, variant="plain", mnist_input=mnist.DEFAULT_MNIST_INPUT,
                     texture=None, digits=None):
    """The `InputConvention` of models trained on `dataset` at `resolution`. MNIST: the value
    range of `variant` under `mnist_input` (`mnist.model_value_range`; no data is read, except the
    training `digits` composed with a user's `texture` image)."""
    if dataset == "mnist":
        value_range = mnist.model_value_range(variant, mnist_input, texture, digits)
        return InputConvention(resolution, 1, value_range, "area")
    return InputConvention(resolution, 3, IMAGE_VALUE_RANGE, "bilinear")


class DatasetArgumentError(ValueError):
    """An argument of `build_dataset` that cannot work. `key` names it; `choices` lists the valid
    values of a choice, else `problem` says what is wrong (the trainer names the flag instead)."""

    def __init__(self, key, value, choices=None, problem=None, label=None):
        self.key, self.value, self.choices, self.problem = key, value, choices, problem
        if choices is not None:
            message = f"Unknown {label or key} {value!r}; expected one of {list(choices)}."
        else:
            message = f"{label or key} {problem}; got {value!r}."
        super().__init__(message)


def _check_choice(name, value, choices, label=None):
    if value not in choices:
        raise DatasetArgumentError(name, value, choices=choices, label=label)


def check_arguments(dataset, *, resolution, variant="plain", source="tfds",
                    mnist_input=mnist.DEFAULT_MNIST_INPUT):
    """The checks of `build_dataset`'s arguments that need no data: the one place they live (the
    trainer runs them before any work). Raises `DatasetArgumentError`."""
    _check_choice("dataset", dataset, DATASETS)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise DatasetArgumentError("resolution", resolution, problem="must be a positive int")
    if dataset == "mnist":
        _check_choice("variant", variant, mnist.VARIANTS, label="MNIST variant")
        _check_choice("source", source, mnist.SOURCES, label="MNIST source")
        _check_choice("mnist_input", mnist_input, mnist.MNIST_INPUTS, label="MNIST input")
        if mnist.CANVAS_SIZE % resolution:
            raise DatasetArgumentError(
                "resolution", resolution, label="MNIST resolution",
                problem=f"must divide {mnist.CANVAS_SIZE} (the images are the "
                        f"{mnist.CANVAS_SIZE} px canvas area-downscaled: 56, 28, 14)")


def _example_seeds(seed, input_context):
    """Dataset of int64 seed pairs, different on every pass (and per worker)."""
    if seed is not None and input_context is not None:
        seed = int(seed) + _WORKER_SEED_STRIDE * input_context.input_pipeline_id
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True)


def build_dataset(dataset, split, *, resolution, batch_size, training, variant="plain",
                  source="tfds", data_dir=None, texture=None, seed=None, strict=False,
                  input_context=None, drop_remainder=False, class_names=None,
                  validation_fraction=None, for_service=False,
                  mnist_input=mnist.DEFAULT_MNIST_INPUT):
    """Batches `(images float32 [B, r, r, C], labels int32 [B])` and a `DatasetInfo`.

    dataset: "mnist" (C = 1, values in the range `mnist_input` gives: by default standardised
      per variant, `mnist.model_value_range`; `info.input_convention.value_range`) or
      ImageNet-style "imagenet2012" (tfds),
      "tfrecord" (Inception/slim TFRecords in `data_dir`), "folder" (`data_dir/<split>/<class>/`
      or `data_dir/<class>/`; nothing is written there) (C = 3, values in [-1, 1]).
    training: shuffle and augment (not repeated: the caller counts epochs). Evaluation data keeps
      its order; MNIST evaluation still re-draws positions, noise and texture on every pass.
    seed: None for a fresh random stream; an int for a reproducible one (stateless ops,
      deterministic order).
    strict: raise on the first undecodable image, naming the file, instead of skipping it.
    input_context: `tf.distribute.InputContext`; then `batch_size` is the global batch, each
      worker reads its own shard and batches `get_per_replica_batch_size(batch_size)`.
    class_names: ImageNet-style sources: the class list labels must follow (a resumed run's), else
      the data's own (folder: sorted class folders); a mismatch is an error.
    validation_fraction: folder only: hold out this fraction of the training files (by a hash of
      their paths) as the validation split, when there is no validation folder.
    for_service: the pipeline will run in tf.data service workers (`data/service.py`): no
      TensorFlow variables or Python steps in it, so ImageNet-style pipelines skip undecodable
      images without counting them (`DatasetInfo.skipped_images` is None).
    """
    check_arguments(dataset, resolution=resolution, variant=variant, source=source,
                    mnist_input=mnist_input)
    _check_choice("split", split, SPLITS)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None; got {seed!r}.")
    if dataset == "mnist":
        if validation_fraction is not None or class_names is not None:
            raise ValueError("MNIST has fixed splits and digit classes: class_names and "
                             "validation_fraction apply to ImageNet-style datasets only.")
        examples, info = _mnist_examples(split, resolution, training, variant, source, data_dir,
                                         texture, seed, input_context, mnist_input)
    else:
        examples, info = _image_examples(dataset, split, resolution, training, data_dir, seed,
                                         strict, input_context, for_service,
                                         class_names=class_names,
                                         validation_fraction=validation_fraction)
    per_replica = (input_context.get_per_replica_batch_size(batch_size)
                   if input_context is not None else batch_size)
    examples = examples.batch(per_replica, drop_remainder=drop_remainder,
                              num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()  # for the whole pipeline: no transformation sets its own order
    options.deterministic = (not training) or seed is not None
    options.experimental_optimization.map_parallelization = True
    return examples.prefetch(tf.data.AUTOTUNE).with_options(options), info


def _mnist_examples(split, resolution, training, variant, source, data_dir, texture, seed,
                    input_context, mnist_input):
    texture_image = mnist.load_texture(texture) if variant == "textured" else None
    digits, labels = mnist.load_digits(split, source, data_dir)
    convention = input_convention(
        "mnist", resolution, variant, mnist_input, texture,
        mnist.statistics_digits(variant, mnist_input, texture, source, data_dir))
    records = tf.data.Dataset.from_tensor_slices((digits, labels))
    if input_context is not None and input_context.num_input_pipelines > 1:
        records = records.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    if training:
        records = records.shuffle(MNIST_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    example = mnist.make_example_fn(variant, resolution, texture_image,
                                    convention.value_range)
    examples = tf.data.Dataset.zip((records, _example_seeds(seed, input_context))).map(
        lambda record, example_seed: example(record[0], record[1], example_seed),
        num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(num_classes=mnist.NUM_CLASSES,
                       num_examples=mnist.split_size(split, source), class_names=None,
                       input_convention=convention)
    return examples, info


def make_image_example_fn(training, resolution, strict, counter, parse):
    """(raw element, seed) -> (image float32 [r, r, 3] in [-1, 1], label).

    `parse` (the source's `ImageRecords.parse`) turns the raw element into the record dict; it
    runs here, in the same map as the decode.
    The label is -1 for bytes that fail `decoding.looks_decodable` (then the image is zeros,
    nothing was decoded and the counter keeps the file's name; a filter drops them, with no
    extra map to strip a flag, and without a log line per file); `strict` turns that into an
    error naming the file. `counter` (a `SkippedImageCounter`) counts every record read and
    every image decoded. Training: `decode_image`, `inception_crop`, then
    `image_ops_after_decode`; evaluation: `decode_for_size` (JPEGs at a reduced DCT scale where
    the target is at most half their short side), then `image_ops_after_decode`.
    """
    ops = [(get_op(name), params) for name, params in image_ops_after_decode(training, resolution)]
    decode = (image_ops.decode_image if training else
              functools.partial(image_ops.decode_for_size, size=resolution))

    def example(raw, seed):
        record = parse(counter.count_read(raw))  # counted first: a file that vanished counts
        encoded = record["encoded"]
        valid = decoding.looks_decodable(encoded)
        if strict:
            with tf.control_dependencies([decoding.assert_decodable(valid, record["name"])]):
                valid = tf.identity(valid)
        seeds = image_ops.split_seed(seed, len(ops) + 1)

        def decode_and_augment():
            image = counter.count_decoded(decode(encoded))
            if training:
                image = image_ops.inception_crop(image, seed=seeds[0], bboxes=record["bboxes"])
            for i, (op, params) in enumerate(ops):
                image = op(image, seed=seeds[i + 1], **params)
            return image

        def skip():
            with tf.control_dependencies([counter.count_failed_check(record["name"])]):
                return tf.zeros([resolution, resolution, 3], tf.float32)

        image = tf.cond(valid, decode_and_augment, skip)
        image.set_shape([resolution, resolution, 3])
        return image, tf.where(valid, record["label"], -1)

    return example


class _UncountedImages:
    """`SkippedImageCounter`'s interface, counting nothing (pipelines for the tf.data service,
    whose graphs cannot hold variables or Python calls)."""

    def count_read(self, structure):
        return structure

    def count_decoded(self, tensor):
        return tensor

    def count_failed_check(self, name):  # noqa: ARG002
        return tf.no_op()


def _image_examples(dataset, split, resolution, training, data_dir, seed, strict, input_context,
                    for_service=False, **source_options):
    records = sources.SOURCES[dataset](split, data_dir, training=training, seed=seed,
                                        input_context=input_context, **source_options)
    stream = records.dataset
    if input_context is not None and not records.sharded:
        stream = stream.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    counter = _UncountedImages() if for_service else SkippedImageCounter(f"{dataset}/{split}")
    example = make_image_example_fn(training, resolution, strict, counter, records.parse)
    if training:
        examples = tf.data.Dataset.zip((stream, _example_seeds(seed, input_context))).map(
            example, num_parallel_calls=tf.data.AUTOTUNE)
    else:  # ImageNet-style evaluation draws nothing: no seed stream to zip
        unused_seed = tf.zeros([2], tf.int64)
        examples = stream.map(lambda raw: example(raw, unused_seed),
                              num_parallel_calls=tf.data.AUTOTUNE)
    if not strict:
        # Safety net for files that pass the structural check yet fail to decode; they show in
        # the counter (read, never decoded). Under strict such errors propagate.
        examples = examples.ignore_errors(log_warning=True)
    examples = examples.filter(lambda image, label: label >= 0)
    if not for_service:
        examples = counter.log_after_each_pass(examples)
    if records.lost_records is not None and not for_service:
        examples = records.lost_records.log_after_each_pass(examples)
    info = DatasetInfo(num_classes=records.num_classes,
                       num_examples=records.num_examples, class_names=records.class_names,
                       input_convention=input_convention(dataset, resolution),
                       skipped_images=None if for_service else counter,
                       lost_records=records.lost_records,
                       split=f"{dataset}/{split}")
    return examples, info
