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
All signatures use the deterministic `threshold` attention policy. The model computes; this module
only prepares inputs and names signatures.
"""
import tensorflow as tf

from tf_pyramid.modeling import ANYTIME_KEYS
from tf_pyramid.modeling.anytime_classifier import exit_outputs
from tf_pyramid.serving import preprocessing

IMAGES = "images"
IMAGE_BYTES = "image_bytes"
THRESHOLD = "threshold"
OUTPUT_KEYS = ANYTIME_KEYS
POLICY = "threshold"


def images_spec():
    # Unknown rank on purpose: a wrong rank or channel count reaches the in-graph checks, which
    # name the problem, instead of failing in the serving layer.
    return tf.TensorSpec(shape=None, dtype=tf.float32, name=IMAGES)


def threshold_spec():
    return tf.TensorSpec(shape=[], dtype=tf.float32, name=THRESHOLD)


def image_bytes_spec():
    return tf.TensorSpec(shape=[None], dtype=tf.string, name=IMAGE_BYTES)


def signature_names(model):
    levels = [f"level_{d}" for d in range(1, model.exit_levels + 1)]
    return ["serving_default", *levels, "anytime", "serving_bytes"]


class ServingFunctions:
    """Builds the Python functions behind each signature (also usable eagerly, for tests/tools).

    Args:
        model: a `tf_pyramid` model (`PyramidClassifier` or `BaselineClassifier`).
        preprocessor: the `ImagePreprocessor` of its pixel inputs; None: the model's own
            (`model.preprocessor`); an input convention (`data.InputConvention` or its dict)
            becomes one.
        max_image_pixels: `serving_bytes` refuses encoded images whose header declares more
            pixels (None: no limit).
    """

    def __init__(self, model, preprocessor=None,
                 max_image_pixels=preprocessing.DEFAULT_MAX_IMAGE_PIXELS):
        self.model = model
        if preprocessor is None:
            preprocessor = model.preprocessor
        if preprocessor is None:
            raise ValueError(
                f"Model {model.name!r} has no preprocessor (it was built without an input "
                "convention): pass one, or set model.input_convention first.")
        self.preprocessor = preprocessing.as_preprocessor(preprocessor)
        self.max_image_pixels = max_image_pixels

    def prepare(self, images):
        return preprocessing.prepare_images(images, self.preprocessor)

    def decode(self, image_bytes):
        return preprocessing.decode_images(image_bytes, self.preprocessor,
                                           max_image_pixels=self.max_image_pixels)

    def predict(self, model_images, depth=None):
        """Outputs of the traversal truncated after `depth` levels (None = all)."""
        depth = self.model.exit_levels if depth is None else depth
        outputs = self.model(model_images, training=False, depth=depth, policy=POLICY)
        return exit_outputs(outputs, depth)

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
        return self.model.anytime(self.prepare(images), threshold, policy=POLICY)

    def serving_bytes(self, image_bytes):
        return self.predict(self.preprocessor(self.decode(image_bytes)))

    def endpoints(self):
        """[(signature name, function, input signature)] in export order."""
        pairs = [("serving_default", self.serving_default, [images_spec()])]
        pairs += [(f"level_{d}", self.level_fn(d), [images_spec()])
                  for d in range(1, self.model.exit_levels + 1)]
        pairs += [("anytime", self.anytime, [images_spec(), threshold_spec()]),
                  ("serving_bytes", self.serving_bytes, [image_bytes_spec()])]
        return pairs
