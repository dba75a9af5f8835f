"""Request checks and image decoding inside the serving graph; the model's layer does the rest.

Convention: a request carries pixel values 0-255 (float32 images or encoded image files) of any
height and width. Float images are checked here (`check_images`); encoded files are decoded here
(`decode_images`: format, channels, pixel limit). Everything after that is the model's own
`ImagePreprocessor` (`model.preprocessor`, saved in model.keras; the same layer `model.predict`
uses): the evaluation resize of the data pipelines to `input_size` x `input_size` (aspect ratio
not kept; an exact identity when the image already has that size), then a linear map of 0-255
onto the value range the model was trained on ([-1, 1] for the models the trainer writes since
version 0.2, MNIST and ImageNet-style alike).

Malformed requests fail with `InvalidArgumentError`s whose messages name the problem (rank,
channels, empty batch, NaN/Inf, undecodable bytes, an encoded image above the pixel limit),
raised before any model op runs.
"""
import tensorflow as tf

from tf_pyramid.data import image_ops
from tf_pyramid.modeling import ImagePreprocessor
from tf_pyramid.modeling.image_preprocessor import LUMA_WEIGHTS


def as_preprocessor(convention):
    """An `ImagePreprocessor` as it is, or one built from an input convention (an
    `InputConvention` or its dict)."""
    if isinstance(convention, ImagePreprocessor):
        return convention
    return ImagePreprocessor.from_convention(convention)


def check_images(images, channels, name="images"):
    """Asserts a non-empty, finite float batch [N, H, W, channels]; returns it with static rank 4.

    Works on tensors of unknown rank (the serving signatures declare none, so that a wrong rank
    reaches these checks instead of failing in the serving layer without explanation).
    """
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        raise TypeError(
            f"{name} must be float32 pixel values 0-255; got dtype {images.dtype.name}.")
    images = tf.cast(images, tf.float32)
    expected = f"{name} must be a float32 batch [N, H, W, {channels}] of pixel values 0-255"
    rank_ok = tf.debugging.assert_equal(
        tf.rank(images), 4, message=f"{expected}; got a tensor of another rank (rank shown as x)")
    with tf.control_dependencies([rank_ok]):
        # Padded so that no op can fail on a wrong rank before the assertion reports it.
        shape = tf.concat([tf.shape(images), tf.ones([4], tf.int32)], axis=0)[:4]
    checks = [
        tf.debugging.assert_equal(
            shape[3], channels,
            message=f"{expected}: the model takes {channels} channel(s); got another number "
                    "of channels (shown as x)"),
        tf.debugging.assert_positive(
            shape[0], message=f"{name}: empty batch (N = 0); send at least one image"),
        tf.debugging.assert_positive(
            tf.reduce_min(shape[1:3]), message=f"{name}: height and width must be positive"),
    ]
    valid = tf.logical_and(tf.equal(tf.rank(images), 4),
                           tf.logical_and(tf.equal(shape[3], channels), tf.reduce_min(shape) > 0))
    with tf.control_dependencies(checks):
        # A bad request must fail in the assertions above, never in a later op: Grappler may run
        # shape-dependent ops before the assertions (it ignores their control edges when it
        # specialises the graph to the fed shape), so the data path only ever sees a valid batch.
        images = tf.cond(valid, lambda: tf.identity(images),
                         lambda: tf.zeros([1, 1, 1, channels], tf.float32))
        images = tf.ensure_shape(images, [None, None, None, channels])
        images = tf.debugging.assert_all_finite(
            images, f"{name} contain NaN or Inf values; expected pixel values 0-255")
    return images


def prepare_images(images, preprocessor):
    """The float path: check, then the model's layer (resize, scale). `preprocessor`: an
    `ImagePreprocessor` or an input convention (`as_preprocessor`)."""
    preprocessor = as_preprocessor(preprocessor)
    return preprocessor(check_images(images, preprocessor.channels))


# Formats `decode_images` reads (index = format id) and how each file starts.
_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
_JPEG, _PNG = 0, 1
_GIF, _BMP, _WEBP = 2, 3, 4
# The most pixels (height x width, read from the file's header) an encoded image may have: a
# few hundred KB of PNG can declare 20,000 x 20,000 pixels, gigabytes once decoded. An export
# option (`export_saved_model(max_image_pixels=...)`, `--max_image_pixels`).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


def _image_formats(image_bytes):
    """int32 [N]: the format id of each encoded string from its leading bytes, -1 if unknown."""
    # Padded so that the fixed-offset slices below exist for strings of any length.
    head = tf.strings.join([tf.strings.substr(image_bytes, 0, 12), b"\0" * 12])

    def starts_with(prefix, offset=0):
        return tf.equal(tf.strings.substr(head, offset, len(prefix)), prefix)

    matches = tf.stack([
        starts_with(b"\xff\xd8\xff"),
        starts_with(b"\x89PNG\r\n\x1a\n"),
        starts_with(b"GIF87a") | starts_with(b"GIF89a"),
        starts_with(b"BM"),
        starts_with(b"RIFF") & starts_with(b"WEBP", offset=8),
    ], axis=1)
    return tf.where(tf.reduce_any(matches, axis=1),
                    tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32), -1)


def _header_bytes(data, offset, length):
    """int64 [length]: bytes offset.. of the string `data` (zeros past its end)."""
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 32), b"\0" * 32]),
                             offset, length)
    return tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)


def _unsigned(data, offset, length, big_endian=False):
    values = _header_bytes(data, offset, length)
    shifts = tf.constant([8 * (length - 1 - i) if big_endian else 8 * i for i in range(length)],
                         tf.int64)
    return tf.reduce_sum(tf.bitwise.left_shift(values, shifts))


def image_dimensions(data, image_format):
    """(height, width) int64 of one encoded image, read from its header without decoding:
    JPEG's frame header (`tf.io.extract_jpeg_shape`), PNG's IHDR, GIF's logical screen, BMP's
    info header, WebP's VP8 / VP8L / VP8X header; (0, 0) for an unknown format."""
    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def png():
        return _unsigned(data, 20, 4, big_endian=True), _unsigned(data, 16, 4, big_endian=True)

    def gif():
        return _unsigned(data, 8, 2), _unsigned(data, 6, 2)

    def bmp():
        def signed(value):  # a BMP's int32 height is negative for top-down rows
            return tf.abs(tf.where(value >= 2 ** 31, value - 2 ** 32, value))
        return signed(_unsigned(data, 22, 4)), signed(_unsigned(data, 18, 4))

    def webp():
        chunk = tf.strings.substr(data, 12, 4)
        lossless = _header_bytes(data, 21, 4)  # VP8L: 14-bit width - 1, 14-bit height - 1
        dimensions = tf.stack([
            tf.stack([tf.bitwise.bitwise_and(_unsigned(data, 28, 2), 0x3FFF),
                      tf.bitwise.bitwise_and(_unsigned(data, 26, 2), 0x3FFF)]),
            tf.stack([1 + tf.bitwise.bitwise_or(
                          tf.bitwise.left_shift(tf.bitwise.bitwise_and(lossless[3], 0xF), 10),
                          tf.bitwise.bitwise_or(tf.bitwise.left_shift(lossless[2], 2),
                                                tf.bitwise.right_shift(lossless[1], 6))),
                      1 + tf.bitwise.bitwise_or(
                          tf.bitwise.left_shift(tf.bitwise.bitwise_and(lossless[1], 0x3F), 8),
                          lossless[0])]),
            tf.stack([1 + _unsigned(data, 27, 3), 1 + _unsigned(data, 24, 3)]),
            tf.zeros([2], tf.int64)])
        kind = tf.argmax(tf.cast(tf.stack([tf.equal(chunk, b"VP8 "), tf.equal(chunk, b"VP8L"),
                                           tf.equal(chunk, b"VP8X"), True]), tf.int32))
        return dimensions[kind][0], dimensions[kind][1]

    def unknown():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    branches = {_JPEG: jpeg, _PNG: png, _GIF: gif, _BMP: bmp, _WEBP: webp}
    return tf.switch_case(tf.clip_by_value(image_format, -1, len(_FORMATS)) + 1,
                          [unknown] + [branches[i] for i in range(len(_FORMATS))] + [unknown])


def _decode_pixels(data, image_format, preprocessor):
    """One encoded image -> uint8-valued float32 [H, W, channels].

    Every format decodes to RGB (grayscale, palette, CMYK and alpha converted or dropped by the
    decoders). A 1-channel model gets the decoder's own grayscale output where it has one (PNG,
    JPEG other than CMYK), else the rounded BT.601 luma of the RGB image: TF's GIF, BMP and WebP
    decoders and its CMYK JPEG path cannot return one channel. RGB models with the bilinear
    (ImageNet-style) resize decode as the evaluation pipeline does, `image_ops.decode_for_size`
    (large JPEGs at a reduced DCT scale), so that served and evaluated images are the same.
    """
    channels = preprocessor.channels
    if channels == 3 and preprocessor.resize_method == "bilinear":
        return tf.cast(image_ops.decode_for_size(data, size=preprocessor.input_size), tf.float32)

    def decode(decode_channels):
        image = tf.io.decode_image(data, channels=decode_channels, dtype=tf.uint8,
                                   expand_animations=False)
        return tf.cast(tf.ensure_shape(image, [None, None, decode_channels]), tf.float32)

    if channels != 1:
        # 3 channels: every format; another count: where the decoder offers it.
        return decode(channels)

    def luma():
        return tf.round(tf.tensordot(decode(3), tf.constant(LUMA_WEIGHTS), axes=1))[..., None]

    native_gray = tf.cond(
        tf.equal(image_format, _JPEG),
        lambda: tf.not_equal(tf.io.extract_jpeg_shape(data)[2], 4),  # 4 components: CMYK
        lambda: tf.equal(image_format, _PNG))
    return tf.cond(native_gray, lambda: decode(1), luma)


def _first_false(flags):
    """Index of the first False in a bool vector (0 if none, and for an empty one, whose own
    assertion then reports the empty batch)."""
    return tf.cond(tf.size(flags) > 0,
                   lambda: tf.argmin(tf.cast(flags, tf.int32), output_type=tf.int32),
                   lambda: tf.constant(0, tf.int32))


def decode_images(image_bytes, preprocessor, name="image_bytes",
                  max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """A batch [N] of encoded JPEG, PNG, GIF, BMP or WebP strings -> float32 [N, size, size,
    channels], pixel values 0-255: each image decoded, converted to the model's channels
    (RGB <-> grayscale; CMYK, palette and alpha handled, alpha dropped; a GIF's first frame) and
    resized like the float path (`preprocessor.resize`, the model layer's resize step).
    `preprocessor`: an `ImagePreprocessor` or an input convention (`as_preprocessor`).

    An image whose header declares more than `max_image_pixels` pixels (height x width; None:
    no limit) is not decoded: the batch fails with an InvalidArgumentError naming its index, its
    size and the limit.

    A string that is not one of these formats, or that does not decode (damaged, truncated),
    fails the batch with an InvalidArgumentError naming its index: the images are decoded in a
    `tf.data` pass that skips failures (TF has no decode op that reports one), then the decoded
    indices are checked.
    """
    preprocessor = as_preprocessor(preprocessor)
    size, channels = preprocessor.input_size, preprocessor.channels
    image_bytes = tf.convert_to_tensor(image_bytes)
    if image_bytes.dtype != tf.string:
        raise TypeError(f"{name} must be a batch of encoded image strings; got dtype "
                        f"{image_bytes.dtype.name}.")
    rank_ok = tf.debugging.assert_equal(
        tf.rank(image_bytes), 1,
        message=f"{name} must be a 1-D batch [N] of encoded image strings; got another rank "
                "(shown as x)")
    with tf.control_dependencies([rank_ok]):
        image_bytes = tf.reshape(image_bytes, [-1])
    count = tf.size(image_bytes)
    formats = _image_formats(image_bytes)
    known = formats >= 0
    checks = [
        tf.debugging.assert_positive(
            count, message=f"{name}: empty batch (N = 0); send at least one image"),
        tf.debugging.Assert(tf.reduce_all(known), [
            f"{name}: element", _first_false(known), "is not an encoded JPEG or PNG image (nor "
            "GIF, BMP or WebP: unknown header; send the raw file bytes, base64-encoded as "
            "{\"b64\": ...} over REST)"]),
    ]
    with tf.control_dependencies(checks):
        image_bytes, formats = tf.identity(image_bytes), tf.identity(formats)

    limit = tf.constant(-1 if max_image_pixels is None else int(max_image_pixels), tf.int64)

    def decode_one(index, data, image_format):
        height, width = image_dimensions(data, image_format)
        too_large = (limit >= 0) & (height * width > limit)
        image = tf.cond(  # a too large image is never decoded
            too_large, lambda: tf.zeros([size, size, channels], tf.float32),
            lambda: preprocessor.resize(_decode_pixels(data, image_format, preprocessor)))
        return index, image, tf.stack([tf.cast(too_large, tf.int64), height, width])

    # Sequential: a parallel map costs more per request (its thread pool) than it saves on the
    # small batches serving sees.
    decoded = (tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes, formats))
               .map(decode_one).ignore_errors())
    # A last, sentinel element: the batch below exists even when no image decodes.
    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(-1), tf.zeros([size, size, channels], tf.float32),
         tf.zeros([3], tf.int64)))
    indices, images, sizes = decoded.concatenate(sentinel).batch(
        tf.cast(count, tf.int64) + 1).get_single_element()
    indices, images, sizes = indices[:-1], images[:-1], sizes[:-1]
    ok = tf.scatter_nd(indices[:, None], tf.ones_like(indices), [count]) > 0
    bad = _first_false(ok)
    bad_format = tf.gather(formats, bad)
    failed = [
        tf.debugging.Assert(tf.reduce_all(ok) | tf.not_equal(bad_format, i), [
            f"{name}: element", bad, f"could not be decoded (Invalid {fmt} data: a damaged or "
            "truncated file)"])
        for i, fmt in enumerate(_FORMATS)]
    small = tf.equal(sizes[:, 0], 0)
    first_large = tf.gather(sizes, _first_false(small))
    failed.append(tf.debugging.Assert(tf.reduce_all(small), [
        f"{name}: element", tf.gather(indices, _first_false(small)), "is", first_large[2], "x",
        first_large[1], f"pixels (width x height), more than the {max_image_pixels or 0:,} pixels this "
        "model decodes (export option max_image_pixels); send a smaller image"]))
    with tf.control_dependencies(failed):
        images = tf.identity(images)
    return tf.ensure_shape(images, [None, size, size, channels])
