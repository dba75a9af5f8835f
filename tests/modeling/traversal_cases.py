"""The traversal cases pinned by tests/modeling/test_traversal_pinned.py.

`python -m tests.modeling.traversal_cases` (from the repository root) rewrites
tests/modeling/data/traversal_v0_4.npz from the current code. It was written once by the
traversal before the serving-latency rewrite (0.3); rerun it only on purpose.
Weights come from numpy (not the Keras initialisers), so the file pins the traversal, not
the initialisers of a Keras version.
"""
import os
import sys

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "traversal_v0_4.npz")

# (model name, levels, policy or "train" for training=True sampling, depth or None).
CASES = [
    ("mnist_m2", 3, "train", None),
    ("mnist_m2", 3, "sample", None),
    ("mnist_m2", 3, "threshold", None),
    ("mnist_m2", 3, "threshold", 2),
    ("mnist_m2", 3, "topk:2", None),
    ("mnist_m2", 3, "topk:0", None),
    ("mnist_m2", 3, "topk:9", None),
    ("mnist_m3", 4, "train", None),
    ("mnist_m3", 4, "threshold", None),
    ("mnist_m3", 4, "topk:3", None),
    ("imagenet_m2", 3, "train", None),
    ("imagenet_m2", 3, "topk:2", None),
    ("imagenet_m2", 3, "threshold", None),
]
ANYTIME_CASES = [("mnist_m2", 3, 0.1585), ("mnist_m3", 4, 0.137), ("imagenet_m2", 3, 0.0424)]
BATCH = 5


def case_key(name, levels, policy, depth):
    return f"{name}/L{levels}/{policy}/d{depth or levels}"


def build(name, levels, seed=11):
    """The model with numpy-drawn weights (uniform Glorot-like kernels, non-zero biases)."""
    import tf_pyramid
    # 50 ImageNet classes: the file stays small, and the classifier is one matmul either way.
    classes = {"num_classes": 50} if name.startswith("imagenet") else {}
    model = tf_pyramid.build_model(name, levels=levels, seed=seed, **classes)
    rng = np.random.default_rng(sum(map(ord, name)) + levels)
    weights = []
    for weight in model.get_weights():
        if weight.ndim == 1 and weight.dtype.kind == "f":
            weights.append(rng.normal(0, 0.1, weight.shape).astype(weight.dtype))
        elif weight.dtype.kind == "f":
            fan_in, fan_out = np.prod(weight.shape[:-1]), weight.shape[-1]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights.append(rng.uniform(-limit, limit, weight.shape).astype(weight.dtype))
        else:
            weights.append(weight)  # the seed generator's state
    model.set_weights(weights)
    return model


def images(model, seed=3):
    rng = np.random.default_rng(seed)
    side = model.input_size
    return rng.uniform(-1, 1, (BATCH, side, side, model.channels)).astype("float32")


def run_case(name, levels, policy, depth):
    """Outputs of a fresh model; sampling twice (the seed stream advances between calls)."""
    model = build(name, levels)
    x = images(model)
    out = {}
    for call in range(2 if policy in ("train", "sample") else 1):
        if policy == "train":
            result = model(x, training=True, depth=depth)
        else:
            result = model(x, depth=depth, policy=policy)
        out.update({f"{call}/{key}": np.asarray(value) for key, value in result.items()})
    return out


def run_anytime(name, levels, threshold):
    model = build(name, levels)
    result = model.anytime(images(model), threshold)
    return {key: np.asarray(value) for key, value in result.items()}


def compute():
    values = {}
    for case in CASES:
        for key, value in run_case(*case).items():
            values[f"{case_key(*case)}/{key}"] = value
    for name, levels, threshold in ANYTIME_CASES:
        for key, value in run_anytime(name, levels, threshold).items():
            values[f"{name}/L{levels}/anytime{threshold}/{key}"] = value
    return values


if __name__ == "__main__":
    np.savez_compressed(DATA, **compute())
    print(f"wrote {DATA}")
    sys.exit(0)
