"""Location module (paper Sec. 3, A.2)."""
import math

import keras

from tf_pyramid.modeling import precision


@keras.saving.register_keras_serializable(package="tf_pyramid")
class LocationModule(keras.layers.Layer):
    """Maps a patch's feature map `F` to one attention probability per grid cell.

    A single conv whose kernel covers the whole of `F` (VALID) followed by the logistic function,
    so the output is `[N, num_cells]`. Callers put `tf.stop_gradient` on `F` first (see docs/model.md).
    The conv runs in the policy's compute dtype; logits and probabilities are float32 under any
    policy (the masks, their log-probabilities and the learning rule's statistics use them).

    Args:
        num_cells: g, the number of candidate locations (9 for the 3x3 grid).
    """

    def __init__(self, num_cells=9, **kwargs):
        super().__init__(**kwargs)
        self.num_cells = int(num_cells)
        self.conv = None

    def build(self, input_shape):
        height, width = int(input_shape[1]), int(input_shape[2])
        self.conv = keras.layers.Conv2D(
            self.num_cells, (height, width), padding="valid",
            kernel_initializer="glorot_uniform", bias_initializer="zeros",
            dtype=self.dtype_policy, name="conv")
        self.conv.build(tuple(input_shape))
        self.built = True

    def call(self, feature_map, return_logits=False):
        """Probabilities `[N, g]`; their logits instead with `return_logits=True` (for stable
        log-probabilities in eq. 8a)."""
        # A VALID conv whose kernel covers the whole input is one matmul on the flattened map;
        # computing it as such is several times faster than the conv kernel on small batches.
        kernel = keras.ops.reshape(self.conv.kernel, (-1, self.num_cells))
        flat = keras.ops.reshape(feature_map, (-1, kernel.shape[0]))
        logits = keras.ops.cast(keras.ops.matmul(flat, kernel) + self.conv.bias, "float32")
        return logits if return_logits else keras.ops.sigmoid(logits)

    def initialize_uniform_policy(self, cell_probability):
        """Makes the module attend every cell with probability `cell_probability`, whatever the
        image: kernel zeros, bias logit(q). The gradient still reaches the kernel (it is the
        feature map), so the module learns from there.

        Training runs start here with q = c_r (docs/training.md, "Where the attention starts").
        The default initialisation gives every cell p ~ 0.5, far more cells than c_t asks for
        (~25 against 6 for a 3-level MNIST model); R_t's large error and Adam's normalised steps
        then push p to ~0 within a few dozen steps, where the logistic function's gradient
        vanishes and the module can stop attending for good.
        """
        q = float(cell_probability)
        if not 0.0 < q < 1.0:
            raise ValueError(f"cell_probability must lie strictly between 0 and 1; got {q!r}.")
        if self.conv is None:
            raise ValueError("The location module is not built yet: call it (or build the "
                             "model) before initialising its policy.")
        self.conv.kernel.assign(keras.ops.zeros_like(self.conv.kernel))
        self.conv.bias.assign(keras.ops.full_like(self.conv.bias, math.log(q / (1.0 - q))))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_cells)

    def compute_output_spec(self, feature_map, return_logits=False):
        return precision.float32_spec(self.compute_output_shape(feature_map.shape))

    def macs(self, feature_map_shape):
        """MACs of one application on an `(h, w, c)` feature map."""
        h, w, c = feature_map_shape
        return h * w * c * self.num_cells

    def get_config(self):
        config = super().get_config()
        config.update(num_cells=self.num_cells)
        return config
