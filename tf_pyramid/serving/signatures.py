"""The serving functions of a trained model, one per SavedModel signature.

Every signature returns the same outputs (N = batch, C = classes, K = top_k):
  probabilities [N, C] float32, classes [N] int64, levels_used [N] int32 (1-based exit level),
  num_locations [N] int64 (attended cells), macs [N] int64 (multiply-accumulates spent),
  top_k_classes [N, K] int64 and top_k_probabilities [N, K] float32 (most probable first);
  with class names (a run with a class index, or MNIST's digits) also class_names [N] string
  (the name of `classes`) and top_k_class_names [N, K] string.

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
TOP_K_KEYS = ("top_k_classes", "top_k_probabilities")
NAME_KEYS = ("class_names", "top_k_class_names")
POLICY = "threshold"
DEFAULT_TOP_K = 5


def output_keys(class_names=None):
    """The outputs every signature of an export returns (with or without class names)."""
    return [*OUTPUT_KEYS, *TOP_K_KEYS, *(NAME_KEYS if class_names else ())]


def check_class_names(class_names, num_classes):
    """`class_names` as a list of strings, one per class (None stays None)."""
    if class_names is None:
        return None
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(f"The class names ({len(names)}) do not match the model's "
                         f"{num_classes} classes: the run's class index must name every class "
                         "in label order.")
    if not all(names):
        raise ValueError("A class name is empty: the run's class index must name every class.")
    return names


def images_spec():
    # Unknown rank on purpose: a wrong rank or channel count reaches the in-graph checks, which
    # name the problem, instead of failing in the serving layer.
    return tf.TensorSpec(shape=None, dtype=tf.float32, name=IMAGES)


def threshold_spec():
    # A scalar (one threshold for the request) or [N] (one per image): TF Serving's batching
    # layer concatenates every input along a batch dimension and refuses scalars, so batched
    # clients send one threshold per image.
    return tf.TensorSpec(shape=None, dtype=tf.float32, name=THRESHOLD)


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
        class_names: the name of each class in label order (the run's class index), or None:
            then no name outputs.
        top_k: how many of the most probable classes `top_k_*` list (at most C).
    """

    def __init__(self, model, preprocessor=None,
                 max_image_pixels=preprocessing.DEFAULT_MAX_IMAGE_PIXELS, class_names=None,
                 top_k=DEFAULT_TOP_K):
        self.model = model
        self.class_names = check_class_names(class_names, int(model.num_classes))
        if int(top_k) < 1:
            raise ValueError(f"top_k must be at least 1; got {top_k}.")
        self.top_k = min(int(top_k), int(model.num_classes))
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
        return self.with_top_k_and_names(exit_outputs(outputs, depth))

    def with_top_k_and_names(self, outputs):
        """Adds the top-k classes and, where the export has class names, the names."""
        outputs = dict(outputs)
        # top_k lists equal probabilities lowest index first, as arg max does: the first of the
        # top k is always `classes`.
        top = tf.math.top_k(outputs["probabilities"], k=self.top_k, sorted=True)
        outputs["top_k_classes"] = tf.cast(top.indices, tf.int64)
        outputs["top_k_probabilities"] = top.values
        if self.class_names:
            names = tf.constant(self.class_names, tf.string)
            outputs["class_names"] = tf.gather(names, outputs["classes"])
            outputs["top_k_class_names"] = tf.gather(names, outputs["top_k_classes"])
        return outputs

    def level_fn(self, depth):
        def level(images):
            return self.predict(self.prepare(images), depth)
        level.__name__ = f"level_{depth}"
        return level

    def serving_default(self, images):
        return self.predict(self.prepare(images))

    def anytime(self, images, threshold):
        model_images = self.prepare(images)
        thresholds = self.image_thresholds(threshold, tf.shape(model_images)[0])
        return self.with_top_k_and_names(self.model.anytime(model_images, thresholds,
                                                            policy=POLICY))

    @staticmethod
    def image_thresholds(threshold, batch):
        """float32 [N]: a scalar (or [1]) threshold for every image, or one per image."""
        threshold = tf.debugging.assert_all_finite(
            tf.convert_to_tensor(threshold, tf.float32),
            "threshold must be a finite number (use a value > 1 to never stop early)")
        flat = tf.reshape(threshold, [-1])
        size_ok = tf.debugging.assert_equal(
            tf.logical_and(tf.rank(threshold) <= 1,
                           tf.logical_or(tf.size(flat) == 1, tf.size(flat) == batch)), True,
            message="threshold must be a scalar or hold one value per image ([N])")
        with tf.control_dependencies([size_ok]):
            return tf.broadcast_to(flat, [batch])

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
