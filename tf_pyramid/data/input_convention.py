"""`InputConvention`: how images are prepared for a model, saved with the model."""
import dataclasses
from typing import Tuple

RESIZE_METHODS = ("area", "bilinear")


@dataclasses.dataclass(frozen=True)
class InputConvention:
    """What a model expects, and how an image of any size is brought to it at evaluation time.

    Plain data. The data pipelines produce it (`DatasetInfo.input_convention`); the trainer
    stores it in the run's config.json and builds the model with it, which turns it into the
    model's own preprocessing layer (`model.preprocessor`, a `modeling.ImagePreprocessor`, saved
    in `model.keras`): predict, evaluate, serving, the visualisation tools and the attention
    callback prepare raw pixels with that layer, one implementation.

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
