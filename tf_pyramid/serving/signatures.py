"""The serving functions of a trained model, one per SavedModel signature.

Every signature returns the same outputs (N = batch, C = classes):
  probabilities [N, C] float32, classes [N] int64, levels_used [N] int32 (1-based exit level),
  num_locations [N] int64 (attended cells), macs [N] int64 (multiply-accumulates spent).

Pyramid models (L levels): `level_1` ... `level_L` (traversal truncated after that level: only its
work is done), `serving_default` (= level L), `anytime` (per-image early exit at a probability
threshold), `serving_bytes` (encoded JPEG/PNG strings, deepest level).
Baselines (one exit): `serving_default`, `level_1` (the same), `anytime` (the threshold changes
nothing: every image uses level 1) and `serving_bytes`, so clients can send the same requests to
either kind of model.
All signatures use the deterministic `threshold` attention policy.
"""
import tensorflow as tf

from tf_pyramid.modeling import BaselineClassifier, exit_levels
from tf_pyramid.serving import preprocessing
from tf_pyramid.serving.anytime import POLICY, anytime, format_outputs

IMAGES = "images"
IMAGE_BYTES = "image_bytes"
THRESHOLD = "threshold"
OUTPUT_KEYS = ("probabilities", "classes", "levels_used", "num_locations", "macs")


def images_spec():
    # Unknown rank on purpose: a wrong rank or channel count reaches the in-graph checks, which
    # name the problem, instead of failing in the serving layer.
    return tf.TensorSpec(shape=None, dtype=tf.float32, name=IMAGES)


def threshold_spec():
    return tf.TensorSpec(shape=[], dtype=tf.float32, name=THRESHOLD)


def image_bytes_spec():
    return tf.TensorSpec(shape=[None], dtype=tf.string, name=IMAGE_BYTES)


def is_pyramid(model):
    return not isinstance(model, BaselineClassifier)


def signature_names(model):
    levels = [f"level_{d}" for d in range(1, exit_levels(model) + 1)]
    return ["serving_default", *levels, "anytime", "serving_bytes"]


class ServingFunctions:
    """Builds the Python functions behind each signature (also usable eagerly, for tests/tools).

    Args:
        model: `PyramidClassifier` or `BaselineClassifier`.
        value_range: the model's input range, e.g. (0, 1) or (-1, 1) (see `preprocessing`).
        resize_method: "area" or "bilinear" (antialiased); None = by value range ("area" for
            [0, 1] MNIST-type models, "bilinear" otherwise).
    """

    def __init__(self, model, value_range, resize_method=None):
        self.model = model
        self.value_range = tuple(float(v) for v in value_range)
        self.resize_method = resize_method or (
            "area" if self.value_range == preprocessing.MNIST_VALUE_RANGE else "bilinear")
        self.size = int(model.input_size)
        self.channels = int(model.channels)

    def prepare(self, images):
        return preprocessing.prepare_images(images, self.size, self.channels, self.value_range,
                                            self.resize_method)

    def decode(self, image_bytes):
        return preprocessing.decode_images(image_bytes, self.size, self.channels,
                                           self.resize_method)

    def predict(self, model_images, depth=None):
        """Outputs of the traversal truncated after `depth` levels (None = all)."""
        model = self.model
        if not is_pyramid(model):
            return format_outputs(model(model_images, training=False), levels_used=1)
        depth = model.levels if depth is None else depth
        outputs = model(model_images, training=False, depth=depth, policy=POLICY)
        return format_outputs(outputs, levels_used=depth)

    def level_fn(self, depth):
        def level(images):
            return self.predict(self.prepare(images), depth)
        level.__name__ = f"level_{depth}"
        return level

    def serving_default(self, images):
        return self.predict(self.prepare(images))

    def anytime(self, images, threshold):
        threshold = tf.debugging.assert_all_finite(
            tf.convert_to_tensor(threshold, tf.float32),
            "threshold must be a finite number (use a value > 1 to never stop early)")
        return anytime(self.model, self.prepare(images), threshold)

    def serving_bytes(self, image_bytes):
        images = self.decode(image_bytes)
        return self.predict(preprocessing.scale_pixels(images, self.value_range))

    def endpoints(self):
        """[(signature name, function, input signature)] in export order."""
        pairs = [("serving_default", self.serving_default, [images_spec()])]
        pairs += [(f"level_{d}", self.level_fn(d), [images_spec()])
                  for d in range(1, exit_levels(self.model) + 1)]
        pairs += [("anytime", self.anytime, [images_spec(), threshold_spec()]),
                  ("serving_bytes", self.serving_bytes, [image_bytes_spec()])]
        return pairs
