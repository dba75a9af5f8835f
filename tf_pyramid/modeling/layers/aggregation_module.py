"""Aggregation module (paper Sec. 3, A.2)."""
import keras

from tf_pyramid.modeling.layers import specs


@keras.saving.register_keras_serializable(package="tf_pyramid")
class AggregationModule(keras.layers.Layer):
    """Combines the child vectors of a patch into one vector.

    Input `[N, 3, 3, f]`: the children's `V'` laid out on the grid, zeros for cells that were not
    attended. A 3x3 VALID conv with leaky ReLU gives `[N, f]` (in the policy's compute dtype).

    Args:
        features: f, size of the output vector.
        grid_size: side of the candidate grid (3).
    """

    def __init__(self, features, grid_size=3, negative_slope=specs.NEGATIVE_SLOPE, **kwargs):
        super().__init__(**kwargs)
        self.features = int(features)
        self.grid_size = int(grid_size)
        self.negative_slope = float(negative_slope)
        self.conv = keras.layers.Conv2D(
            self.features, self.grid_size, padding="valid",
            kernel_initializer="glorot_uniform", bias_initializer="zeros",
            dtype=self.dtype_policy, name="conv")

    def build(self, input_shape):
        self.conv.build(tuple(input_shape))
        self.built = True

    def call(self, child_grid):
        # The 3x3 VALID conv on a 3x3 grid is one matmul on the flattened grid (faster).
        kernel = keras.ops.reshape(self.conv.kernel, (-1, self.features))
        flat = keras.ops.reshape(child_grid, (-1, kernel.shape[0]))
        x = keras.ops.matmul(flat, kernel) + self.conv.bias
        return keras.ops.leaky_relu(x, negative_slope=self.negative_slope)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.features)

    def macs(self, in_features):
        """MACs of one application on a `grid x grid x in_features` input."""
        return self.grid_size * self.grid_size * in_features * self.features

    def get_config(self):
        config = super().get_config()
        config.update(features=self.features, grid_size=self.grid_size,
                      negative_slope=self.negative_slope)
        return config
