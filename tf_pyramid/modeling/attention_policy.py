"""Attention policies: how a location module's probabilities become a hard mask (see docs/model.md)."""
import tensorflow as tf

POLICY_NAMES = ("sample", "threshold", "topk:K")


def parse_policy(policy, num_cells=9):
    """Returns `(kind, k)` for "sample", "threshold" or "topk:K" (1 <= K <= num_cells)."""
    if isinstance(policy, str):
        text = policy.strip().lower()
        if text in ("sample", "threshold"):
            return text, None
        if text.startswith("topk:"):
            try:
                k = int(text[5:])
            except ValueError:
                k = None
            if k is not None and 0 <= k <= num_cells:
                return "topk", k
            raise ValueError(
                f"Expected 'topk:K' with an integer 0 <= K <= {num_cells}; got {policy!r}.")
    raise ValueError(f"Unknown attention policy {policy!r}; expected one of {POLICY_NAMES}.")


def attention_mask(probabilities, kind, k=None, seed=None):
    """Hard mask (float32 0/1, same shape as `probabilities` [N, g]).

    `sample`: independent Bernoulli draws (stateless, `seed` is an int32/int64 pair);
    `threshold`: p >= 0.5; `topk`: the k most probable cells of every row.
    """
    if kind == "threshold":
        return tf.cast(probabilities >= 0.5, tf.float32)
    if kind == "sample":
        draws = tf.random.stateless_uniform(tf.shape(probabilities), seed=seed)
        return tf.cast(draws < probabilities, tf.float32)
    if kind == "topk":
        if k == 0:
            return tf.zeros_like(probabilities)
        indices = tf.math.top_k(probabilities, k=k).indices
        return tf.reduce_sum(tf.one_hot(indices, tf.shape(probabilities)[-1]), axis=1)
    raise ValueError(f"Unknown attention policy kind {kind!r}.")
