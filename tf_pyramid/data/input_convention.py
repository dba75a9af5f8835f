"""`InputConvention`: how images are prepared for a model, saved with the model."""
import dataclasses
from typing import Tuple

import tensorflow as tf

from tf_pyramid.data import image_ops
from tf_pyramid.data import mnist

RESIZE_METHODS = ("area", "bilinear")


@dataclasses.dataclass(frozen=True)
class InputConvention:
    """What a model expects, and how an image of any size is brought to it at evaluation time.

    The data pipelines produce it (`DatasetInfo.input_convention`); the trainer stores it in the
    run's config.json and inside `model.keras` (`model.input_convention`); export, serving, the
    visualisation tools and the attention callback read it instead of guessing from the dataset
    name or the channel count.

    Attributes:
        input_size: side of the square model input.
        channels: 1 (grayscale) or 3 (RGB).
        value_range: (low, high) of the model input: pixel values 0-255 map linearly onto it.
        resize_method: the evaluation resize of an image of another size: "area" (block
            average, as the MNIST pipelines downscale their 56 px canvas) or "bilinear" (with
            antialiasing, as the ImageNet-style evaluation pipeline).
    """

    input_size: int
    channels: int
    value_range: Tuple[float, float]
    resize_method: str

    def __post_init__(self):
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "channels", int(self.channels))
        low, high = (float(v) for v in self.value_range)
        object.__setattr__(self, "value_range", (low, high))
        if self.input_size < 1 or self.channels not in (1, 3):
            raise ValueError(f"InputConvention needs input_size >= 1 and 1 or 3 channels; got "
                             f"{self.input_size} and {self.channels}.")
        if not high > low:
            raise ValueError(f"value_range needs low < high; got {self.value_range!r}.")
        if self.resize_method not in RESIZE_METHODS:
            raise ValueError(f"resize_method must be one of {RESIZE_METHODS}; got "
                             f"{self.resize_method!r}.")

    # Serialisation (a plain dict: JSON in config.json, a Keras config entry in model.keras).
    def get_config(self):
        return {"input_size": self.input_size, "channels": self.channels,
                "value_range": list(self.value_range), "resize_method": self.resize_method}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def of_model(cls, model, value_range=None, resize_method=None):
        """The convention saved with `model`, `value_range` ("low,high" or a pair) and
        `resize_method` overriding it; a model saved without one (built by hand, or by
        tf_pyramid 0.1) needs both, else a ValueError says so."""
        saved = getattr(model, "input_convention", None)
        if not saved and (value_range is None or resize_method is None):
            raise ValueError(
                f"Model {model.name!r} carries no input convention (it was built outside the "
                "trainer, or saved by tf_pyramid 0.1): give its value range and resize method "
                "(--value_range=0,1 --resize_method=area for MNIST-type models, "
                "--value_range=-1,1 --resize_method=bilinear for ImageNet-type ones), or set "
                "model.input_convention = InputConvention(...).get_config().")
        config = dict(saved or {"input_size": model.input_size, "channels": model.channels})
        if value_range is not None:
            if isinstance(value_range, str):
                value_range = [v for v in value_range.replace(" ", "").split(",") if v]
            if len(value_range) != 2:
                raise ValueError(f"value_range takes 'low,high'; got {value_range!r}.")
            config["value_range"] = [float(v) for v in value_range]
        if resize_method is not None:
            config["resize_method"] = resize_method
        return cls.from_config(config)

    # The evaluation path of 0-255 pixel values: resize, then scale.
    def resize(self, images):
        """float [H, W, C] or [N, H, W, C] of any size -> `input_size` square (an identity when
        the size already fits), with the evaluation resize of the data pipelines."""
        images = tf.convert_to_tensor(images, tf.float32)
        size, channels = self.input_size, images.shape[-1]
        if self.resize_method == "bilinear":  # takes a batch as it is
            return image_ops.resize_antialiased(images, size=size)
        if images.shape.rank == 3:
            return tf.ensure_shape(mnist.area_resize(images, size=size), [size, size, channels])
        resized = tf.map_fn(lambda image: mnist.area_resize(image, size=size), images,
                            fn_output_signature=tf.TensorSpec([size, size, channels]))
        return tf.ensure_shape(resized, [None, size, size, channels])

    def scale(self, images):
        """0-255 pixel values -> `value_range` (clipped to it), as the evaluation pipelines."""
        low, high = self.value_range
        return image_ops.value_range(tf.convert_to_tensor(images, tf.float32) / 255.0,
                                     low=low, high=high)

    def prepare(self, images):
        """0-255 images of any size -> model-ready float32 (`resize`, then `scale`)."""
        return self.scale(self.resize(images))

    def to_pixels(self, images):
        """Model-ready images -> 0-255 float (for display)."""
        low, high = self.value_range
        return (tf.convert_to_tensor(images, tf.float32) - low) / (high - low) * 255.0
