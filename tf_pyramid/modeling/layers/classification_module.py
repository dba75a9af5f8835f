"""Classification module (paper Sec. 3, A.2)."""
import keras

from tf_pyramid.modeling import precision


@keras.saving.register_keras_serializable(package="tf_pyramid")
class ClassificationModule(keras.layers.Layer):
    """A linear layer from the root's `V'` to class logits (softmax is applied by the losses).

    The matmul runs in the policy's compute dtype; the logits are float32 under any policy, as
    the softmax, the losses and the predictions built on them.

    Args:
        num_classes: number of output classes.
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.dense = keras.layers.Dense(
            self.num_classes, kernel_initializer="glorot_uniform", bias_initializer="zeros",
            dtype=self.dtype_policy, name="dense")

    def build(self, input_shape):
        self.dense.build(tuple(input_shape))
        self.built = True

    def call(self, features):
        return keras.ops.cast(self.dense(features), "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def compute_output_spec(self, features):
        return precision.float32_spec(self.compute_output_shape(features.shape))

    def macs(self, in_features):
        return in_features * self.num_classes

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config
