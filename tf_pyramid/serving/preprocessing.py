"""Evaluation preprocessing inside the serving graph: validate, decode, resize, scale.

Convention: a request carries pixel values 0-255 (float32 images or encoded image files) of any
height and width. Inside the graph each image is brought to the model's input with the model's
own `InputConvention` (saved in model.keras by the trainer): resized to `input_size` x
`input_size` with the evaluation resize of the data pipelines (aspect ratio not kept; an exact
identity when the image already has that size) and scaled to the value range the model was
trained on ([0, 1] for the MNIST models, [-1, 1] for the ImageNet-style ones).

Malformed requests fail with `InvalidArgumentError`s whose messages name the problem (rank,
channels, empty batch, NaN/Inf, undecodable bytes), raised before any model op runs.
"""
import tensorflow as tf

from tf_pyramid.data import image_ops


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


def prepare_images(images, convention):
    """The float path: check, then `convention.prepare` (resize, scale)."""
    return convention.prepare(check_images(images, convention.channels))


# Formats `decode_images` reads (index = format id) and how each file starts.
_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
_JPEG, _PNG = 0, 1
# ITU-R BT.601 luma, as libjpeg's and PIL's RGB -> grayscale conversions.
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


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


def _decode_pixels(data, image_format, convention):
    """One encoded image -> uint8-valued float32 [H, W, channels].

    Every format decodes to RGB (grayscale, palette, CMYK and alpha converted or dropped by the
    decoders). A 1-channel model gets the decoder's own grayscale output where it has one (PNG,
    JPEG other than CMYK), else the rounded BT.601 luma of the RGB image: TF's GIF, BMP and WebP
    decoders and its CMYK JPEG path cannot return one channel. RGB models with the bilinear
    (ImageNet-style) resize decode as the evaluation pipeline does, `image_ops.decode_for_size`
    (large JPEGs at a reduced DCT scale), so that served and evaluated images are the same.
    """
    channels = convention.channels
    if channels == 3 and convention.resize_method == "bilinear":
        return tf.cast(image_ops.decode_for_size(data, size=convention.input_size), tf.float32)

    def decode(decode_channels):
        image = tf.io.decode_image(data, channels=decode_channels, dtype=tf.uint8,
                                   expand_animations=False)
        return tf.cast(tf.ensure_shape(image, [None, None, decode_channels]), tf.float32)

    if channels != 1:
        # 3 channels: every format; another count: where the decoder offers it.
        return decode(channels)

    def luma():
        return tf.round(tf.tensordot(decode(3), tf.constant(_LUMA_WEIGHTS), axes=1))[..., None]

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


def decode_images(image_bytes, convention, name="image_bytes"):
    """A batch [N] of encoded JPEG, PNG, GIF, BMP or WebP strings -> float32 [N, size, size,
    channels], pixel values 0-255: each image decoded, converted to the convention's channels
    (RGB <-> grayscale; CMYK, palette and alpha handled, alpha dropped; a GIF's first frame) and
    resized like the float path (`convention.resize`).

    A string that is not one of these formats, or that does not decode (damaged, truncated),
    fails the batch with an InvalidArgumentError naming its index: the images are decoded in a
    `tf.data` pass that skips failures (TF has no decode op that reports one), then the decoded
    indices are checked.
    """
    size, channels = convention.input_size, convention.channels
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

    def decode_one(index, data, image_format):
        image = _decode_pixels(data, image_format, convention)
        return index, convention.resize(image)

    # Sequential: a parallel map costs more per request (its thread pool) than it saves on the
    # small batches serving sees.
    decoded = (tf.data.Dataset.from_tensor_slices((tf.range(count), image_bytes, formats))
               .map(decode_one).ignore_errors())
    # A last, sentinel element: the batch below exists even when no image decodes.
    sentinel = tf.data.Dataset.from_tensors(
        (tf.constant(-1), tf.zeros([size, size, channels], tf.float32)))
    indices, images = decoded.concatenate(sentinel).batch(
        tf.cast(count, tf.int64) + 1).get_single_element()
    indices, images = indices[:-1], images[:-1]
    ok = tf.scatter_nd(indices[:, None], tf.ones_like(indices), [count]) > 0
    bad = _first_false(ok)
    bad_format = tf.gather(formats, bad)
    failed = [
        tf.debugging.Assert(tf.reduce_all(ok) | tf.not_equal(bad_format, i), [
            f"{name}: element", bad, f"could not be decoded (Invalid {fmt} data: a damaged or "
            "truncated file)"])
        for i, fmt in enumerate(_FORMATS)]
    with tf.control_dependencies(failed):
        images = tf.identity(images)
    return tf.ensure_shape(images, [None, size, size, channels])
