"""Fully convolutional baselines BL1-BL3 (paper Tables 1-5)."""
import keras
import tensorflow as tf

from tf_pyramid.modeling import input_checks
from tf_pyramid.modeling.layers import specs
from tf_pyramid.modeling.layers.classification_module import ClassificationModule
from tf_pyramid.modeling.layers.feature_extraction import FeatureExtraction


@keras.saving.register_keras_serializable(package="tf_pyramid")
class BaselineClassifier(keras.Model):
    """The FE layers applied to the whole image, GAP, FC f->f, FC f->f (leaky ReLU), linear.

    Returns `{"logits": [B, C], "macs": [B]}` like the pyramid model, so that evaluation and
    cost/accuracy plots treat both alike.

    Args:
        layer_specs: FE layer specs (see `FeatureExtraction`).
        input_size: side of the input images.
        num_classes, channels: as for the pyramid model.
    """

    def __init__(self, layer_specs, input_size, num_classes, channels=3,
                 negative_slope=specs.NEGATIVE_SLOPE, **kwargs):
        super().__init__(**kwargs)
        self.layer_specs = specs.validate_layer_specs(layer_specs)
        self.input_size = int(input_size)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.negative_slope = float(negative_slope)
        self.feature_extraction = FeatureExtraction(
            self.layer_specs, negative_slope=negative_slope, name="feature_extraction")
        self.features = self.feature_extraction.features
        # Attributes, not a list: `tf.train.Checkpoint` does not track layers in Python lists.
        self.fc1, self.fc2 = (
            keras.layers.Dense(self.features, kernel_initializer="glorot_uniform",
                               bias_initializer="zeros", name=f"fc{i}") for i in (1, 2))
        self.classification_module = ClassificationModule(self.num_classes, name="classification")
        self._trackers = {"loss": keras.metrics.Mean(name="loss"),
                          "cross_entropy": keras.metrics.Mean(name="cross_entropy"),
                          "level_1_accuracy": keras.metrics.SparseCategoricalAccuracy(
                              name="level_1_accuracy")}
        self.build((None, self.input_size, self.input_size, self.channels))

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

    def module_costs(self):
        """MACs per image at `input_size` of the trunk and of the head."""
        n, f = self.input_size, self.features
        return {
            "feature_extraction": self.feature_extraction.macs(n, n, self.channels),
            "fully_connected": 2 * f * f,
            "classification": self.classification_module.macs(f),
        }

    def call(self, images, training=False):
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
                             lambda: tf.zeros([0, self.num_classes],
                                              self.classification_module.compute_dtype))
        macs = tf.fill(tf.shape(logits)[:1], tf.constant(sum(self.module_costs().values()),
                                                         tf.int64))
        return {"logits": logits, "macs": macs}

    # Cross-entropy training with the same step/metric names as the pyramid model, so that the
    # trainer and `fit` drive both alike.
    @property
    def metrics(self):
        return list(self._trackers.values())

    def _step(self, data, training):
        images, labels = data[0], tf.reshape(tf.cast(data[1], tf.int32), [-1])
        with tf.GradientTape() as tape:
            logits = self(images, training=training)["logits"]
            loss = tf.nn.compute_average_loss(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        if training:
            variables = self.trainable_variables
            self.optimizer.apply(tape.gradient(loss, variables), variables)
        replicas = tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32)
        self._trackers["loss"].update_state(loss * replicas)
        self._trackers["cross_entropy"].update_state(loss * replicas)
        self._trackers["level_1_accuracy"].update_state(labels, logits)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)

    def get_config(self):
        config = super().get_config()
        config.update(layer_specs=[list(s) for s in self.layer_specs],
                      input_size=self.input_size, num_classes=self.num_classes,
                      channels=self.channels, negative_slope=self.negative_slope)
        return config
