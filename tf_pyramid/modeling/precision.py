"""Mixed precision: the dtype policies a model may be built with, and what stays float32.

A model built with `dtype="mixed_bfloat16"` (or "mixed_float16") hands that Keras dtype policy to
every module layer: convolutions, matmuls and the feature vectors between them run in the
policy's compute dtype, variables stay float32. What feeds a probability, a loss or a statistic
is float32 whatever the policy: the class logits and the location logits (the module layers cast
their outputs), hence the Bernoulli masks and their log-probabilities, the rewards, the reward
baselines and the location statistics of the learning rule (see docs/model.md, "Mixed
precision").
"""
import keras

DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def check_dtype_policy(policy):
    """The policy's name when it is one of `DTYPE_POLICIES` (a name or a `keras.DTypePolicy`),
    else a ValueError naming the choices."""
    name = getattr(policy, "name", policy)
    if name not in DTYPE_POLICIES:
        raise ValueError(f"Unknown dtype policy {name!r}; expected one of "
                         f"{', '.join(DTYPE_POLICIES)}.")
    return name


def float32_spec(shape):
    """The symbolic output of a layer whose outputs are float32 under any policy."""
    return keras.KerasTensor(shape, dtype="float32")
