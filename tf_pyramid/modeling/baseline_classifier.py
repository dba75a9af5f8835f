"""Fully convolutional baselines BL1-BL3 (paper Tables 1-5)."""
import keras
import tensorflow as tf

from tf_pyramid.modeling import input_checks
from tf_pyramid.modeling.anytime_classifier import NUM_CELLS, AnytimeClassifier, exit_outputs
from tf_pyramid.modeling.layers import specs
from tf_pyramid.modeling.layers.classification_module import ClassificationModule
from tf_pyramid.modeling.layers.feature_extraction import FeatureExtraction


@keras.saving.register_keras_serializable(package="tf_pyramid")
class BaselineClassifier(AnytimeClassifier):
    """The FE layers applied to the whole image, GAP, FC f->f, FC f->f (leaky ReLU), linear.

    One exit level: calling it returns the same dict as a one-level pyramid model
    (`anytime_classifier.OUTPUT_KEYS`, with no attended cells), so that training, evaluation,
    serving and cost/accuracy plots treat both alike.

    Args:
        layer_specs: FE layer specs (see `FeatureExtraction`).
        input_size: side of the input images.
        num_classes, channels, input_convention: as for the pyramid model.
    """

    def __init__(self, layer_specs, input_size, num_classes, channels=3,
                 negative_slope=specs.NEGATIVE_SLOPE, input_convention=None, **kwargs):
        super().__init__(input_convention=input_convention, **kwargs)
        self.layer_specs = specs.validate_layer_specs(layer_specs)
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.negative_slope = float(negative_slope)
        policy = self.dtype_policy  # every layer runs under the model's dtype policy
        self.feature_extraction = FeatureExtraction(
            self.layer_specs, negative_slope=negative_slope, dtype=policy,
            name="feature_extraction")
        self.features = self.feature_extraction.features
        # Attributes, not a list: `tf.train.Checkpoint` does not track layers in Python lists.
        self.fc1, self.fc2 = (
            keras.layers.Dense(self.features, kernel_initializer="glorot_uniform",
                               bias_initializer="zeros", dtype=policy, name=f"fc{i}")
            for i in (1, 2))
        self.classification_module = ClassificationModule(self.num_classes, dtype=policy,
                                                          name="classification")
        self.build((None, self.input_size, self.input_size, self.channels))

    @property
    def exit_levels(self):
        return 1

    @property
    def hidden(self):
        """The two hidden fully connected layers."""
        return [self.fc1, self.fc2]

    def build(self, input_shape=None):
        if self.built:
            return
        self.feature_extraction.build((None, self.input_size, self.input_size, self.channels))
        for layer in self.hidden:
            layer.build((None, self.features))
        self.classification_module.build((None, self.features))
        self.built = True

    def modules(self):
        return {"feature_extraction": [self.feature_extraction],
                "fully_connected": self.hidden,
                "classification": [self.classification_module]}

    def module_costs(self):
        """MACs per image at `input_size` of the trunk and of the head."""
        n, f = self.input_size, self.features
        return {
            "feature_extraction": self.feature_extraction.macs(n, n, self.channels),
            "fully_connected": 2 * f * f,
            "classification": self.classification_module.macs(f),
        }

    def call(self, images, training=False, depth=None, policy=None):
        """The `OUTPUT_KEYS` dict with one level; `depth` may only be 1 and `policy` is unused
        (no attention), so that callers need not tell the two model classes apart."""
        del policy
        input_checks.check_depth(depth, 1)
        images = input_checks.check_images(images, self.input_size, self.channels)
        def compute_logits():
            _, x = self.feature_extraction(images, training=training)
            for layer in self.hidden:
                x = keras.ops.leaky_relu(layer(x), negative_slope=self.negative_slope)
            return self.classification_module(x)

        if images.shape[0]:
            logits = compute_logits()
        else:
            # An empty (or possibly empty) batch gives empty outputs, as the pyramid model:
            # the layers do not run on it (TF's conv kernels may return a wrongly shaped result).
            logits = tf.cond(tf.shape(images)[0] > 0, compute_logits,
                             lambda: tf.zeros([0, self.num_classes], tf.float32))
        batch = tf.shape(logits)[:1]
        macs = tf.fill(batch, tf.constant(sum(self.module_costs().values()), tf.int64))
        zeros = tf.zeros(tf.concat([batch, [1]], 0))
        no_cells = tf.zeros(tf.concat([batch, [1]], 0), tf.int64)
        return {"logits": logits, "level_logits": logits[:, None],
                "num_locations": tf.zeros(batch, tf.int64), "level_num_locations": no_cells,
                "macs": macs, "level_macs": macs[:, None],
                "location_log_prob": zeros, "expected_locations": zeros,
                "cell_prob_sum": tf.zeros(tf.concat([batch, [1, NUM_CELLS]], 0)),
                "location_applications": no_cells, "location_entropy_sum": zeros}

    def anytime(self, images, threshold, policy="threshold"):
        """One exit: the threshold changes nothing, every image uses level 1."""
        del threshold
        return exit_outputs(self(images, training=False, policy=policy), depth=1)

    def get_config(self):
        config = super().get_config()
        config.update(layer_specs=[list(s) for s in self.layer_specs],
                      input_size=self.input_size, num_classes=self.num_classes,
                      channels=self.channels, negative_slope=self.negative_slope)
        return config
