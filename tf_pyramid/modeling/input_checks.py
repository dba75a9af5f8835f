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
    """Returns `images` as float32 after checking rank 4, `channels`, and a `side x side` size."""
    if not isinstance(images, tf.Tensor) or hasattr(images, "_keras_history"):
        images = tf.convert_to_tensor(images)
    dtype = images.dtype
    if not (dtype.is_floating or dtype.is_integer):
        raise ValueError(f"Expected numeric {name}; got dtype {dtype.name}.")
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
    return tf.cast(images, tf.float32)
