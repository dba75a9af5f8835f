"""`ImagePreprocessor`: raw pixels -> model-ready inputs, a layer saved inside the model."""
import keras
import tensorflow as tf

RESIZE_METHODS = ("area", "bilinear")
# ITU-R BT.601 luma, as libjpeg's, PIL's and `tf.image.rgb_to_grayscale`'s conversions.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def antialias_halvings(height, width, size):
    """How many exact 2x halvings the antialiased bilinear resize ends with: the fewest that leave
    the first (bilinear) resize shrinking by at most 2x along both axes (int32 scalar, >= 0).
    The evaluation pipeline's `image_ops.antialias_halvings` is the same rule."""
    shrink = tf.cast(tf.maximum(height, width), tf.float32) / float(size)
    # The 1e-4 keeps exact powers of two (8.0 -> 3, not 4 from a log rounded up) stable.
    halvings = tf.math.ceil(tf.math.log(tf.maximum(shrink, 1.0)) / tf.math.log(2.0) - 1e-4) - 1.0
    return tf.cast(tf.maximum(halvings, 0.0), tf.int32)


@keras.saving.register_keras_serializable(package="tf_pyramid")
class ImagePreprocessor(keras.layers.Layer):
    """Pixels as a user holds them -> the inputs the model was trained on.

    Images of any height and width (uint8, or float in `input_range`, by default 0-255),
    [H, W, C] or [N, H, W, C]: 4 channels drop alpha, 1 <-> 3 channels convert (grey repeated;
    BT.601 luma), then the evaluation resize of the data pipelines to `input_size` square ("area":
    block average, as the MNIST canvases are downscaled; "bilinear": bilinear with a mip-map
    antialias, as the ImageNet-style evaluation pipeline; an exact identity when the size already
    fits), then a linear map of `input_range` onto `value_range` (clipped to it).

    The model keeps one (`model.preprocessor`, saved in `model.keras`); `predict`, `evaluate` and
    the SavedModel signatures pass raw pixels through it, so a loaded model is right whatever
    value range it was trained on. Calling the model itself takes model-ready inputs.

    Args:
        input_size: side of the square model input.
        channels: 1 (grayscale) or 3 (RGB).
        value_range: (low, high) of the model input.
        resize_method: "area" or "bilinear".
        input_range: (low, high) of the raw pixel values; (0, 255) by default.
    """

    def __init__(self, input_size, channels, value_range, resize_method, input_range=(0, 255),
                 **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "float32")  # pixels stay float32 under a mixed policy
        super().__init__(**kwargs)
        self.input_size = int(input_size)
        self.channels = int(channels)
        self.value_range = tuple(float(v) for v in value_range)
        self.resize_method = str(resize_method)
        self.input_range = tuple(float(v) for v in input_range)
        if self.input_size < 1 or self.channels not in (1, 3):
            raise ValueError(f"ImagePreprocessor needs input_size >= 1 and 1 or 3 channels; got "
                             f"{input_size!r} and {channels!r}.")
        for name, pair in (("value_range", self.value_range), ("input_range", self.input_range)):
            if len(pair) != 2 or not pair[1] > pair[0]:
                raise ValueError(f"{name} needs (low, high) with low < high; got {pair!r}.")
        if self.resize_method not in RESIZE_METHODS:
            raise ValueError(f"resize_method must be one of {RESIZE_METHODS}; got "
                             f"{resize_method!r}.")

    @classmethod
    def from_convention(cls, convention, **kwargs):
        """From an input convention: a dict (`model.input_convention`, config.json's
        `run.input_convention`) or an object with `get_config()` (`data.InputConvention`)."""
        if hasattr(convention, "get_config"):
            convention = convention.get_config()
        keys = ("input_size", "channels", "value_range", "resize_method")
        missing = [key for key in keys if key not in convention]
        if missing:
            raise ValueError(f"An input convention needs {list(keys)}; {missing} missing in "
                             f"{dict(convention)!r}.")
        return cls(**{key: convention[key] for key in keys}, **kwargs)

    @classmethod
    def of_model(cls, model, value_range=None, resize_method=None):
        """`model.preprocessor`, or one like it with `value_range` ("low,high" or a pair) and
        `resize_method` overriding its own; a model without one (built by hand) needs both, else
        a ValueError says so."""
        own = getattr(model, "preprocessor", None)
        if value_range is None and resize_method is None and own is not None:
            return own
        if own is None and (value_range is None or resize_method is None):
            raise ValueError(
                f"Model {model.name!r} carries no input convention (it was built outside the "
                "trainer): give its value range and resize method (--value_range=-1,1 "
                "--resize_method=area for MNIST-type models, --value_range=-1,1 "
                "--resize_method=bilinear for ImageNet-type ones), or set "
                "model.input_convention = InputConvention(...).get_config().")
        config = own.get_config() if own is not None else {
            "input_size": model.input_size, "channels": model.channels}
        if value_range is not None:
            if isinstance(value_range, str):
                value_range = [v for v in value_range.replace(" ", "").split(",") if v]
            if len(value_range) != 2:
                raise ValueError(f"value_range takes 'low,high'; got {value_range!r}.")
            config["value_range"] = [float(v) for v in value_range]
        if resize_method is not None:
            config["resize_method"] = resize_method
        config.pop("name", None)
        return cls(**config)

    def convention(self):
        """The input convention dict this layer applies (`InputConvention.get_config()` form)."""
        return {"input_size": self.input_size, "channels": self.channels,
                "value_range": list(self.value_range), "resize_method": self.resize_method}

    def get_config(self):
        config = super().get_config()
        config.update(self.convention(), input_range=list(self.input_range))
        return config

    @property
    def input_dtype(self):
        """Pixels reach `call` as given (uint8, or float cast to float32), never to a mixed
        policy's compute dtype; the output is float32 under any policy."""
        return "float32"

    # ------------------------------------------------------------------------------------
    # The three steps; `call` runs them in order.
    def convert_channels(self, images):
        """[.., C] with C in 1, 3, 4 -> [.., channels] float32 (alpha dropped, grey <-> RGB)."""
        images = tf.cast(images, tf.float32)
        have = images.shape[-1]
        if have == 4:
            images, have = images[..., :3], 3
        if have is None or have == self.channels:
            return images
        if have == 1 and self.channels == 3:
            return tf.repeat(images, 3, axis=-1)
        if have == 3 and self.channels == 1:
            return tf.tensordot(images, tf.constant(LUMA_WEIGHTS), axes=1)[..., None]
        raise ValueError(f"Expected images with 1, 3 or 4 channels (the model takes "
                         f"{self.channels}); got shape {images.shape.as_list()}.")

    def resize(self, images):
        """Float [N, H, W, C] or [H, W, C] of any size -> `input_size` square, the values' scale
        kept; an identity when the size already fits."""
        images = tf.convert_to_tensor(images)
        size = self.input_size
        spatial = images.shape[-3:-1]
        if spatial[0] == size and spatial[1] == size:
            return tf.cast(images, tf.float32)
        shape = tf.shape(images)
        fits = tf.logical_and(tf.equal(shape[-3], size), tf.equal(shape[-2], size))
        out_shape = images.shape[:-3].concatenate([size, size, images.shape[-1]])
        resized = tf.cond(fits, lambda: tf.cast(images, tf.float32),
                          lambda: self._resize(images, shape))
        return tf.ensure_shape(resized, out_shape)

    def _resize(self, images, shape):
        size = self.input_size
        if self.resize_method == "area":
            return tf.image.resize(images, [size, size], method="area")
        # Bilinear to size * 2**k (shrinking at most 2x, so its two taps per axis touch every
        # source pixel), then an exact 2**k x 2**k block average; plain bilinear when k = 0.
        halvings = antialias_halvings(shape[-3], shape[-2], size)
        side = size * tf.bitwise.left_shift(1, halvings)
        return tf.cond(
            halvings > 0,
            lambda: tf.image.resize(tf.image.resize(images, tf.stack([side, side])),
                                    [size, size], method="area"),
            lambda: tf.image.resize(images, [size, size]))

    def scale(self, images):
        """`input_range` -> `value_range`, linearly, clipped to it."""
        (in_low, in_high), (low, high) = self.input_range, self.value_range
        unit = (tf.cast(images, tf.float32) - in_low) * (1.0 / (in_high - in_low))
        return tf.clip_by_value(unit, 0.0, 1.0) * (high - low) + low

    def call(self, images):
        images = tf.convert_to_tensor(images)
        if not (images.dtype.is_floating or images.dtype.is_integer):
            raise TypeError(f"Expected images of pixel values (uint8 or float); got dtype "
                            f"{images.dtype.name}.")
        if images.shape.rank is None:  # a graph traced without a shape: take it as a batch
            images = tf.ensure_shape(images, [None, None, None, None])
        elif images.shape.rank not in (3, 4):
            raise ValueError(f"Expected images [N, H, W, C] or [H, W, C]; got shape "
                             f"{images.shape.as_list()}.")
        return self.scale(self.resize(self.convert_channels(images)))

    def to_pixels(self, images):
        """Model-ready images -> values in `input_range` (for display)."""
        (in_low, in_high), (low, high) = self.input_range, self.value_range
        return ((tf.convert_to_tensor(images, tf.float32) - low) / (high - low)
                * (in_high - in_low) + in_low)

    # ------------------------------------------------------------------------------------
    def check_pixels(self, images, where="predict"):
        """`images` behind assertions that they look like raw pixels, not model-ready data.

        Values below `input_range` (data already mapped to [-1, 1]), and a float batch whose
        values all lie within the first 1/255 of `input_range` without being all at its low end
        (data in [0, 1]), fail with an InvalidArgumentError that says what to pass instead:
        either would otherwise give silently wrong predictions. Integer batches are taken as
        pixels (a 0/1 uint8 mask is dark pixels, as it is in every image library).
        """
        images = tf.convert_to_tensor(images)
        in_low, in_high = self.input_range
        expected = (f"{where} takes raw pixel values {in_low:g}-{in_high:g} (uint8 or float), "
                    f"which the model's preprocessor maps onto its input range "
                    f"[{self.value_range[0]:g}, {self.value_range[1]:g}]")
        values = tf.cast(images, tf.float32)
        # An empty batch gives +inf / -inf: it passes both checks.
        lowest, highest = tf.reduce_min(values), tf.reduce_max(values)
        checks = [tf.debugging.Assert(
            lowest >= in_low,
            [f"{expected}; this batch has values below {in_low:g} (lowest shown next), as data "
             "already scaled to [-1, 1] would. Pass the pixels themselves, or call the model "
             "directly (`model(images)`) with model-ready inputs.", lowest])]
        if images.dtype.is_floating:
            step = (in_high - in_low) / 255.0
            looks_unit = tf.logical_and(highest > in_low, highest <= in_low + step)
            checks.append(tf.debugging.Assert(
                tf.logical_not(looks_unit),
                [f"{expected}; every value of this batch lies in [{in_low:g}, "
                 f"{in_low + step:g}] (highest shown next), as data scaled to [0, 1] would. "
                 f"Multiply such data by {in_high - in_low:g} first, or call the model "
                 "directly (`model(images)`) with model-ready inputs.", highest]))
        with tf.control_dependencies(checks):
            return tf.identity(images)
