"""Merging module (paper Sec. 3, A.2, eq. 7)."""
import keras

from tf_pyramid.modeling.layers import specs


@keras.saving.register_keras_serializable(package="tf_pyramid")
class MergingModule(keras.layers.Layer):
    """Fuses a patch's own vector `V` with the aggregate of its children: concat (2f) -> FC -> f
    (in the policy's compute dtype).

    Args:
        features: f, size of the output vector.
    """

    def __init__(self, features, negative_slope=specs.NEGATIVE_SLOPE, **kwargs):
        super().__init__(**kwargs)
        self.features = int(features)
        self.negative_slope = float(negative_slope)
        self.dense = keras.layers.Dense(
            self.features, kernel_initializer="glorot_uniform", bias_initializer="zeros",
            dtype=self.dtype_policy, name="dense")

    def build(self, input_shape):
        parent_shape, aggregate_shape = input_shape
        self.dense.build((parent_shape[0], parent_shape[-1] + aggregate_shape[-1]))
        self.built = True

    def call(self, inputs):
        parent, aggregate = inputs
        x = self.dense(keras.ops.concatenate([parent, aggregate], axis=-1))
        return keras.ops.leaky_relu(x, negative_slope=self.negative_slope)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.features)

    def macs(self, in_features):
        """MACs of one application on two vectors of size `in_features`."""
        return 2 * in_features * self.features

    def get_config(self):
        config = super().get_config()
        config.update(features=self.features, negative_slope=self.negative_slope)
        return config
