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


_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")


def decode_images(image_bytes, convention, name="image_bytes"):
    """A batch [N] of encoded JPEG/PNG (also GIF, BMP, WebP) strings -> float32 [N, size, size,
    channels], pixel values 0-255, each image decoded, converted to the convention's channels
    (RGB <-> grayscale) and resized like the float path."""
    size, channels = convention.input_size, convention.channels
    image_bytes = tf.convert_to_tensor(image_bytes)
    if image_bytes.dtype != tf.string:
        raise TypeError(f"{name} must be a batch of encoded image strings; got dtype "
                        f"{image_bytes.dtype.name}.")
    rank_ok = tf.debugging.assert_equal(
        tf.rank(image_bytes), 1,
        message=f"{name} must be a 1-D batch [N] of encoded JPEG/PNG strings; got another rank "
                "(shown as x)")
    with tf.control_dependencies([rank_ok]):
        image_bytes = tf.reshape(image_bytes, [-1])
    count = tf.size(image_bytes)
    with tf.control_dependencies([tf.debugging.assert_positive(
            count, message=f"{name}: empty batch (N = 0); send at least one image")]):
        image_bytes = tf.identity(image_bytes)

    def decode_one(args):
        data, index = args
        known = tf.reduce_any([tf.strings.substr(data, 0, len(m)) == m for m in _MAGIC])
        with tf.control_dependencies([tf.debugging.Assert(known, [
                f"{name}: element", index, "is not an encoded JPEG or PNG image (unknown header; "
                "send the raw file bytes, base64-encoded as {\"b64\": ...} over REST)"])]):
            data = tf.identity(data)
        image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8,
                                   expand_animations=False)
        image = tf.cast(tf.ensure_shape(image, [None, None, channels]), tf.float32)
        return convention.resize(image)

    images = tf.map_fn(decode_one, (image_bytes, tf.range(count)),
                       fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))
    return images
