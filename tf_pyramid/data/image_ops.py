"""Image preprocessing ops for ImageNet-style input (paper A.6.2, docs/data.md).

Every op is registered by name and has the signature `op(image, *, seed=None, **params)`. Random
ops are stateless: `seed` is an int32/int64 pair, so one seed gives one result, eagerly and inside
`tf.data` alike. Images are uint8 straight from the decoder and float32 in [0, 1] after
`to_float`; `value_range` maps [0, 1] to [-1, 1] as the last step.

Training: decode -> inception_crop -> random_resize -> random_flip -> distort_color ->
value_range. Evaluation: decode_for_size -> resize_antialiased (mapping to [-1, 1] in the same op).
"""
import tensorflow as tf

from tf_pyramid.data import decoding
from tf_pyramid.data.registry import register_op



def _compiled_ops():
    """The compiled kernels' module, imported where an input pipeline op first needs it: nothing
    that only imports image_ops (serving, the input convention) loads it."""
    from tf_pyramid.data import compiled_ops  # noqa: PLC0415
    return compiled_ops


def map_to_range(images, low, high):
    """[0, 1] -> [low, high], clipped to [0, 1] first: `value_range`, the mip-map path of
    `resize_antialiased`, and the mapping the compiled resize kernel fuses."""
    return tf.clip_by_value(images, 0.0, 1.0) * (high - low) + low


# Paper A.6.2: a crop covering 85-100% of the image, aspect ratio (width / height) 0.5-2.
CROP_AREA_RANGE = (0.85, 1.0)
CROP_ASPECT_RANGE = (0.5, 2.0)
CROP_MIN_OBJECT_COVERED = 0.1
CROP_MAX_ATTEMPTS = 50

# Resize methods drawn uniformly per image (paper A.6.2; TF1 integer codes 0-3 in this order).
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")

# Howard (2013) photometric distortion: the four orderings of Inception's `distort_color`.
COLOR_ORDERINGS = (
    ("brightness", "saturation", "hue", "contrast"),
    ("saturation", "brightness", "contrast", "hue"),
    ("contrast", "hue", "brightness", "saturation"),
    ("hue", "saturation", "contrast", "brightness"),
)
BRIGHTNESS_MAX_DELTA = 32.0 / 255.0
SATURATION_RANGE = (0.5, 1.5)
HUE_MAX_DELTA = 0.2
CONTRAST_RANGE = (0.5, 1.5)

# The draw of each colour op's factor from its seed, as tf.image.stateless_random_<op> draws it.
_COLOR_FACTOR_RANGES = {
    "brightness": (-BRIGHTNESS_MAX_DELTA, BRIGHTNESS_MAX_DELTA),
    "saturation": SATURATION_RANGE,
    "hue": (-HUE_MAX_DELTA, HUE_MAX_DELTA),
    "contrast": CONTRAST_RANGE,
}


def split_seed(seed, num):
    """`num` independent stateless seeds ([num, 2] int64) from one seed pair."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num)


def _uniform_index(seed, num_cases):
    return tf.random.stateless_uniform([], seed=seed, maxval=num_cases, dtype=tf.int32)


# --------------------------------------------------------------------------------------- decoding
@register_op("decode")
def decode_image(encoded, *, seed=None):
    """JPEG/PNG/GIF/BMP bytes -> uint8 RGB [H, W, 3]; grayscale, CMYK and RGBA become RGB."""
    del seed
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


# libjpeg's DCT-domain downscaling factors (`decode_jpeg(ratio=...)`).
JPEG_SCALES = (1, 2, 4, 8)


@register_op("decode_for_size")
def decode_for_size(encoded, *, seed=None, size):
    """Encoded bytes -> uint8 RGB [H', W', 3] for an evaluation resize to `size` x `size`.

    A JPEG is decoded at the smallest of its DCT-domain scales 1, 1/2, 1/4, 1/8 that keeps both
    sides at least `size` (libjpeg's scaled inverse DCT: the decoder skips the detail the
    antialiased resize would average away, and is itself a low-pass filter); other formats, and
    JPEGs less than twice `size` on their short side, are decoded whole, as `decode_image`.
    """
    del seed
    encoded = tf.convert_to_tensor(encoded)

    def jpeg():
        shape = tf.io.extract_jpeg_shape(encoded)
        short_side = tf.minimum(shape[0], shape[1])
        index = tf.reduce_sum(tf.cast(
            short_side >= tf.constant(JPEG_SCALES[1:], tf.int32) * size, tf.int32))
        return tf.switch_case(index, [
            lambda r=r: tf.io.decode_jpeg(encoded, channels=3, ratio=r) for r in JPEG_SCALES])

    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, len(decoding.JPEG_SIGNATURE)),
                       decoding.JPEG_SIGNATURE)
    image = tf.cond(is_jpeg, jpeg, lambda: decode_image(encoded))
    image.set_shape([None, None, 3])
    return image


# ---------------------------------------------------------------------------------- inception crop
def sample_crop_window(shape, seed, bboxes=None, area_range=CROP_AREA_RANGE,
                       aspect_range=CROP_ASPECT_RANGE):
    """Crop window [offset_y, offset_x, height, width] (int32) for an image of [height, width].

    `tf.image.stateless_sample_distorted_bounding_box` with the paper's ranges; `bboxes` ([N, 4]
    normalised ymin, xmin, ymax, xmax, as stored in Inception TFRecords) are used when present,
    otherwise the whole image is the object. If no window fits in 50 attempts the whole image is
    returned (area 1, the image's own aspect ratio).
    """
    if bboxes is None:
        bboxes = tf.zeros([0, 4], tf.float32)
    bboxes = tf.reshape(tf.cast(bboxes, tf.float32), [1, -1, 4])
    shape = tf.cast(shape, tf.int32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([shape, [3]], axis=0), bounding_boxes=bboxes, seed=seed,
        min_object_covered=CROP_MIN_OBJECT_COVERED, aspect_ratio_range=aspect_range,
        area_range=area_range, max_attempts=CROP_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


@register_op("inception_crop")
def inception_crop(image, *, seed, bboxes=None):
    """Random crop of a decoded image [H, W, C] covering 85-100% of its area (paper A.6.2)."""
    window = sample_crop_window(tf.shape(image)[:2], seed, bboxes)
    return image[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]


@register_op("decode_and_inception_crop")
def decode_and_inception_crop(encoded, *, seed, bboxes=None):
    """`inception_crop` on encoded bytes -> uint8 RGB.

    Decodes the whole image, then crops. `decode_and_crop_jpeg` (decoding only the window) was
    measured slower here: 25-40% more CPU than `decode_jpeg` of the whole image for the paper's
    85-100% windows, and the JPEG/other-format branch it needs costs on top.
    """
    return inception_crop(decode_image(encoded), seed=seed, bboxes=bboxes)


# ---------------------------------------------------------------------------------------- resizing
@register_op("to_float")
def to_float(image, *, seed=None):
    """uint8 [0, 255] -> float32 [0, 1] (float input passes through unchanged)."""
    del seed
    return tf.image.convert_image_dtype(image, tf.float32)


def _nearest(image, size):
    """`tf.image.resize(image, [size, size], "nearest")` (half-pixel centres), bit for bit, as two
    gathers in the input dtype: cheaper than the resize kernel on uint8 crops (~0.4 vs 0.5 ms)."""
    shape = tf.shape(image)

    def source_index(length):  # TF: min(floor((i + 0.5) * (in / out)), in - 1), in float32
        scale = tf.cast(length, tf.float32) / tf.cast(size, tf.float32)
        index = tf.cast(tf.floor((tf.range(size, dtype=tf.float32) + 0.5) * scale), tf.int32)
        return tf.clip_by_value(index, 0, length - 1)

    rows = tf.gather(image, source_index(shape[0]), axis=0)
    return tf.gather(rows, source_index(shape[1]), axis=1)


def _resize(image, size, method):
    """uint8 or float [H, W, C] -> float32 [size, size, C] in [0, 1] (the input dtype's scale).

    uint8 bilinear goes through `compiled_ops.resize_bilinear` where the compiled kernels are
    used. Otherwise uint8 input is cast to float32 before the interpolating kernels (TF's float
    kernels are faster than its uint8 ones, same values) and scaled to [0, 1] after (fewer
    pixels). Only bicubic can overshoot and is clipped; the other methods average their inputs.
    No antialiasing: neither the paper nor its original code has any in training.
    """
    scale = 1.0 / 255.0 if image.dtype == tf.uint8 else 1.0
    if method == "bilinear" and image.dtype == tf.uint8 and _compiled_ops().in_use():
        return _compiled_ops().resize_bilinear(image, [size, size], scale=scale)
    if method == "nearest":
        resized = tf.cast(_nearest(image, size), tf.float32)
    else:
        resized = tf.image.resize(tf.cast(image, tf.float32), [size, size], method=method)
    if scale != 1.0:
        resized = resized * scale
    if method == "bicubic":
        resized = tf.clip_by_value(resized, 0.0, 1.0)
    return resized


def random_resize_with_choice(image, *, seed, size):
    """`random_resize` that also returns the drawn index into RESIZE_METHODS (for tests)."""
    index = _uniform_index(seed, len(RESIZE_METHODS))
    # Every branch resizes *its own* input: only the drawn branch runs (the TF1 switch/merge trap
    # of the original code ran all methods and kept whichever finished first).
    branches = [lambda m=m: _resize(image, size, m) for m in RESIZE_METHODS]
    resized = tf.switch_case(index, branches)
    resized.set_shape([size, size, image.shape[-1]])
    return resized, index


@register_op("random_resize")
def random_resize(image, *, seed, size):
    """Resize to [size, size] with a method drawn uniformly from RESIZE_METHODS -> float32 [0, 1].

    Plain (not antialiased) kernels, as the paper and the original code.
    """
    return random_resize_with_choice(image, seed=seed, size=size)[0]


def antialias_halvings(height, width, size):
    """How many exact 2x halvings `resize_antialiased` ends with: the fewest that leave the first
    (bilinear) resize shrinking by at most 2x along both axes (int32 scalar, >= 0)."""
    shrink = tf.cast(tf.maximum(height, width), tf.float32) / float(size)
    # The 1e-4 keeps exact powers of two (8.0 -> 3, not 4 from a log rounded up) stable.
    halvings = tf.math.ceil(tf.math.log(tf.maximum(shrink, 1.0)) / tf.math.log(2.0) - 1e-4) - 1.0
    return tf.cast(tf.maximum(halvings, 0.0), tf.int32)


@register_op("resize_antialiased")
def resize_antialiased(image, *, seed=None, size, value_range=None):
    """Evaluation (and serving) resize: the whole image [.., H, W, C] to [.., size, size, C],
    bilinear, antialiased when shrinking by more than 2x -> float32 (uint8 -> [0, 1]; float
    keeps its scale); with `value_range=(low, high)`, then clipped to [0, 1] and mapped onto it,
    as `value_range` (one pass less in evaluation).

    A mip-map filter: bilinear to size * 2**k (shrinking at most 2x: the kernel's two taps per
    axis then touch every source pixel), followed by an exact 2**k x 2**k block average (area
    resize at an integer factor), k = `antialias_halvings`. About a third of the cost of TF's
    `antialias=True` (scale_and_translate, ~2x a JPEG decode at 500 x 375 -> 128 px) for a
    comparable filter; an exact identity when the image already has the size. When k = 0 (the
    usual case in evaluation) uint8 RGB input goes through `compiled_ops.resize_bilinear`, which
    resizes, scales and maps in one pass with the same values as TensorFlow's ops.
    """
    del seed
    image = tf.convert_to_tensor(image)
    scale = 1.0 / 255.0 if image.dtype == tf.uint8 else 1.0
    shape = tf.shape(image)
    halvings = antialias_halvings(shape[-3], shape[-2], size)
    out_shape = image.shape[:-3].concatenate([size, size, image.shape[-1]])

    def mip_map():
        side = size * tf.bitwise.left_shift(1, halvings)
        # Bilinear reads uint8 directly (float32 out, same values): no float copy of the image.
        resized = tf.image.resize(tf.image.resize(image, tf.stack([side, side])), [size, size],
                                  method="area")
        resized = resized * scale if scale != 1.0 else resized
        return resized if value_range is None else map_to_range(resized, *value_range)

    def bilinear():
        return _compiled_ops().resize_bilinear(image, [size, size], scale=scale,
                                            value_range=value_range)

    return tf.ensure_shape(tf.cond(halvings > 0, mip_map, bilinear), out_shape)


# ----------------------------------------------------------------------------------------- colour
@register_op("random_flip")
def random_flip(image, *, seed):
    """Horizontal flip with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def apply_color_ordering(image, ordering, seeds, clip=True):
    """The ops of COLOR_ORDERINGS[ordering] in that order; op k uses `seeds[k]` (fixed per op).

    Equal to tf.image.stateless_random_brightness / _saturation / _hue / _contrast in that order,
    value for value: the same factor draws, and each run of brightness / saturation / hue between
    the contrast steps in one `compiled_ops.adjust_color` pass (TensorFlow's ops without it).
    """
    factors = {name: tf.random.stateless_uniform(
        [], seed=seeds[i], minval=low, maxval=high)
        for i, (name, (low, high)) in enumerate(_COLOR_FACTOR_RANGES.items())}
    compiled_ops = _compiled_ops()
    run = []
    for name in COLOR_ORDERINGS[ordering] + (None,):
        if name in compiled_ops.STEPS:
            run.append(name)
            continue
        if run:
            image = compiled_ops.adjust_color(
                image, run, brightness_delta=factors["brightness"],
                saturation_factor=factors["saturation"], hue_delta=factors["hue"])
            run = []
        if name == "contrast":
            image = tf.image.adjust_contrast(image, factors["contrast"])
    return tf.clip_by_value(image, 0.0, 1.0) if clip else image


def distort_color_with_choice(image, *, seed, clip=True):
    """`distort_color` that also returns the drawn ordering index (for tests)."""
    seeds = split_seed(seed, 1 + len(_COLOR_FACTOR_RANGES))
    ordering = _uniform_index(seeds[0], len(COLOR_ORDERINGS))
    branches = [lambda k=k: apply_color_ordering(image, k, seeds[1:], clip)
                for k in range(len(COLOR_ORDERINGS))]
    return tf.switch_case(ordering, branches), ordering


@register_op("distort_color")
def distort_color(image, *, seed, clip=True):
    """Howard (2013) photometric distortion on float [0, 1] images, order drawn per image.

    Brightness +-32/255, saturation x[0.5, 1.5], hue +-0.2, contrast x[0.5, 1.5] in one of the four
    Inception orderings (uniform), clipped to [0, 1]. `clip=False` leaves the clipping to a
    following `value_range` (which clips first; same result, one pass less).
    """
    return distort_color_with_choice(image, seed=seed, clip=clip)[0]


@register_op("value_range")
def value_range(image, *, seed=None, low=-1.0, high=1.0):
    """float [0, 1] -> [low, high] (default [-1, 1], paper A.6.2), clipped to [0, 1] first."""
    del seed
    return map_to_range(image, low, high)
