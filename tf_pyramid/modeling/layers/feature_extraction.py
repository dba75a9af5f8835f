"""Feature extraction module (paper Sec. 3, Tables 1-5)."""
import keras

from tf_pyramid.modeling.layers import specs


@keras.saving.register_keras_serializable(package="tf_pyramid")
class FeatureExtraction(keras.layers.Layer):
    """A small CNN that returns its last feature map `F` and the global average `V` of it.

    Both outputs are in the compute dtype of the layer's dtype policy (bfloat16 under
    "mixed_bfloat16"), which its conv and pool layers share.

    The same instance (shared weights) processes every patch at every pyramid level, and, applied
    fully convolutionally to a whole image, it is also the trunk of the baselines.

    Args:
        layer_specs: list of `["conv", filters]` (3x3, stride 1, SAME, leaky ReLU) and
            `["pool", size, stride]` (max pool, VALID) entries, in order.
        negative_slope: slope of the leaky ReLUs.
    """

    def __init__(self, layer_specs, negative_slope=specs.NEGATIVE_SLOPE, **kwargs):
        super().__init__(**kwargs)
        self.layer_specs = specs.validate_layer_specs(layer_specs)
        self.negative_slope = float(negative_slope)
        # One attribute per sub-layer, not a list: `tf.train.Checkpoint` does not track layers
        # held in a Python list (their weights would silently be missing from checkpoints).
        for index, spec in enumerate(self.layer_specs):
            if spec[0] == "conv":
                layer = keras.layers.Conv2D(
                    spec[1], 3, padding="same", activation=None,
                    kernel_initializer="glorot_uniform", bias_initializer="zeros",
                    dtype=self.dtype_policy, name=f"conv{index}")
            else:
                layer = keras.layers.MaxPooling2D(spec[1], strides=spec[2], padding="valid",
                                                  dtype=self.dtype_policy, name=f"pool{index}")
            setattr(self, layer.name, layer)

    @property
    def stack(self):
        """The conv and pool layers, in order."""
        return [getattr(self, f"{spec[0]}{index}") for index, spec in enumerate(self.layer_specs)]

    @property
    def features(self):
        """Size f of `V` (channels of the last conv)."""
        return [s[1] for s in self.layer_specs if s[0] == "conv"][-1]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.stack:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        self.built = True

    def call(self, images):
        x = images
        for layer in self.stack:
            x = layer(x)
            if isinstance(layer, keras.layers.Conv2D):
                x = keras.ops.leaky_relu(x, negative_slope=self.negative_slope)
        return x, keras.ops.mean(x, axis=(1, 2))

    def compute_output_shape(self, input_shape):
        shape = specs.feature_map_shape(self.layer_specs, input_shape[1:3])
        return (input_shape[0], *shape), (input_shape[0], self.features)

    def macs(self, height, width, channels):
        """Multiply-accumulates (no biases) of one `height x width x channels` input."""
        return specs.feature_extraction_macs(self.layer_specs, height, width, channels)

    def get_config(self):
        config = super().get_config()
        config.update(layer_specs=[list(s) for s in self.layer_specs],
                      negative_slope=self.negative_slope)
        return config
