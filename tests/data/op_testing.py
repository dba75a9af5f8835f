"""Runs a preprocessing op eagerly and inside `tf.data.Dataset.map` (they can differ: shapes,
Python control flow, captured state) and checks that both give the same result."""
import numpy as np
import tensorflow as tf

SEED = tf.constant([7, 11], tf.int64)


def run_both_ways(op, image, **kwargs):
    """`op(image, **kwargs)` eagerly and in a Dataset.map; asserts equality; returns the result."""
    eager = op(tf.convert_to_tensor(image), **kwargs)
    dataset = tf.data.Dataset.from_tensors(tf.convert_to_tensor(image)).map(
        lambda x: op(x, **kwargs))
    mapped = next(iter(dataset))
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a.numpy(), b.numpy(),
                                                                  rtol=1e-6, atol=1e-6),
                          eager, mapped)
    return eager


def map_over_seeds(fn, num_seeds, base_seed=0):
    """Results of `fn(seed)` for `num_seeds` different stateless seeds, computed in one
    Dataset.map pass (fast, and in-graph like the real pipeline); numpy, stacked."""
    seeds = tf.data.Dataset.range(num_seeds).map(
        lambda i: tf.stack([tf.constant(base_seed, tf.int64), i]))
    batches = list(seeds.map(fn).batch(num_seeds))
    assert len(batches) == 1
    return tf.nest.map_structure(lambda t: t.numpy(), batches[0])


def chi_square_uniform(counts):
    """Pearson chi-square statistic of `counts` against the uniform distribution."""
    counts = np.asarray(counts, np.float64)
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


# Upper 0.1% points of chi-square (a correct uniform draw fails 1 run in 1000).
CHI2_999 = {3: 16.27, 28: 56.89}
