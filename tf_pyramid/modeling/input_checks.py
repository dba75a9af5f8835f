"""Validation of model inputs and arguments, with errors that say what was expected."""
import tensorflow as tf

MAX_LEVELS = 12


def check_levels(levels):
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"levels must be an integer between 1 and {MAX_LEVELS}; got {levels!r}.")
    return levels


def check_depth(depth, levels):
    """`depth` (levels to run, None = all) must lie in [1, levels]."""
    if depth is None:
        return levels
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= levels:
        raise ValueError(
            f"depth must be an integer between 1 and the model's levels ({levels}); got {depth!r}.")
    return depth


def check_images(images, side, channels, name="images"):
    """Returns float `images` as float32 after checking rank 4, `channels` and a `side x side` size.

    Known dimensions are checked here (ValueError); unknown ones (a `tf.function` traced for any
    image size) get assertions that run with the model, so that a wrong size fails instead of
    giving predictions. Integer images are refused rather than cast: the model expects values in
    its input range, not 0-255 pixels.
    """
    if not isinstance(images, tf.Tensor) or hasattr(images, "_keras_history"):
        images = tf.convert_to_tensor(images)
    dtype = images.dtype
    if not (dtype.is_floating or dtype.is_integer):
        raise ValueError(f"Expected numeric {name}; got dtype {dtype.name}.")
    if dtype.is_integer:
        raise TypeError(
            f"Expected float32 {name} in the model's input range (`model.input_convention`; "
            f"[-1, 1] for the models the trainer writes); got dtype {dtype.name}. Calling the "
            "model does not rescale 0-255 pixels: use `model.predict(images)` (raw pixels of "
            "any size, through `model.preprocessor`), or `model(model.preprocessor(images))`, "
            "or convert them first, e.g. `tf.cast(images, tf.float32) / 127.5 - 1` for [-1, 1] "
            "or `tf.cast(images, tf.float32) / 255` for [0, 1].")
    shape = images.shape
    if shape.rank is not None and shape.rank != 4:
        raise ValueError(
            f"Expected {name} of rank 4 [batch, {side}, {side}, {channels}]; got shape "
            f"{shape.as_list()}.")
    if shape.rank == 4:
        if shape[3] is not None and shape[3] != channels:
            raise ValueError(
                f"Expected {name} with {channels} channel(s) [batch, {side}, {side}, {channels}];"
                f" got shape {shape.as_list()}.")
        for axis in (1, 2):
            if shape[axis] is not None and shape[axis] != side:
                raise ValueError(
                    f"Expected {name} of side {side} (= base_resolution * 2**(levels-1)) "
                    f"[batch, {side}, {side}, {channels}]; got shape {shape.as_list()}. Resize "
                    "the images or build the model with other `levels`.")
    if shape.rank is None or None in shape.as_list()[1:]:
        images = _assert_image_shape(images, side, channels, name)
    return tf.cast(images, tf.float32)


def _assert_image_shape(images, side, channels, name):
    """Runtime form of the checks above, for a graph traced with unknown dimensions.

    Returns `images` behind the assertions, with the static shape they guarantee, so that no
    op downstream can fail (or succeed on a wrong size) before they report.
    """
    expected = f"[batch, {side}, {side}, {channels}]"
    rank_ok = tf.debugging.assert_equal(
        tf.rank(images), 4,
        message=f"Expected {name} of rank 4 {expected}; got another rank (shown as x)")
    # [height, width, channels], or the expected ones under a wrong rank, so that only the rank
    # assertion reports it (assertions run in no fixed order).
    wanted = tf.constant([side, side, channels])
    shape = tf.where(tf.equal(tf.rank(images), 4),
                     tf.concat([tf.shape(images), tf.ones([4], tf.int32)], axis=0)[1:4], wanted)
    size_ok = tf.debugging.assert_equal(
        shape, wanted,
        message=f"Expected {name} of side {side} (= base_resolution * 2**(levels-1)) with "
                f"{channels} channel(s) {expected}; got [height, width, channels] shown as x. "
                "Resize the images or build the model with other `levels`")
    with tf.control_dependencies([rank_ok, size_ok]):
        # The data path only ever sees a valid shape, so no later op fails first. A cond, not an
        # identity: Grappler takes the static shape set below on an identity as the input's own
        # and folds the rank/shape checks away.
        images = tf.cond(tf.reduce_all(tf.equal(shape, wanted)), lambda: tf.identity(images),
                         lambda: tf.zeros([1, side, side, channels], images.dtype))
    images.set_shape([None, side, side, channels])
    return images
