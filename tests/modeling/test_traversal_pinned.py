"""The traversal gives the outputs it gave before the serving-latency rewrite (0.3).

tests/modeling/data/traversal_v0_4.npz holds the outputs of the traversal as it was before
(written by `python -m tests.modeling.traversal_cases`): training=True sampling with a seed
(same masks, two calls so the seed stream is pinned too), the sample / threshold / topk
policies, a truncated depth, and the per-image early exit; every output key, to 1e-5.
"""
import numpy as np
import pytest

from tests.modeling import traversal_cases as cases


@pytest.fixture(scope="module")
def saved():
    return np.load(cases.DATA)


def _compare(saved, prefix, outputs):
    expected_keys = sorted(k[len(prefix):] for k in saved.files if k.startswith(prefix))
    assert sorted(outputs) == expected_keys, f"output keys of {prefix} changed"
    for key, value in outputs.items():
        want = saved[prefix + key]
        assert value.shape == want.shape, f"{prefix}{key}: shape {value.shape}, saved {want.shape}"
        if want.dtype.kind in "iu":
            np.testing.assert_array_equal(value, want, err_msg=prefix + key)
        else:
            np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-5, err_msg=prefix + key)


@pytest.mark.parametrize("case", cases.CASES, ids=[cases.case_key(*c) for c in cases.CASES])
def test_outputs_equal_the_saved_traversal(saved, case):
    _compare(saved, cases.case_key(*case) + "/", cases.run_case(*case))


@pytest.mark.parametrize("name,levels,threshold", cases.ANYTIME_CASES)
def test_anytime_equals_the_saved_early_exit(saved, name, levels, threshold):
    _compare(saved, f"{name}/L{levels}/anytime{threshold}/",
             cases.run_anytime(name, levels, threshold))


def test_each_level_adds_few_ops_to_the_traced_graph():
    """At one image per request the many small ops of a level cost as much as its compute: the
    traced graph (function bodies included, constants not) grows by at most 150 ops per level.
    The traversal before that rewrite added 174-180; a rewrite that brings per-level shape
    arithmetic back fails here."""
    import tensorflow as tf

    import tf_pyramid
    model = tf_pyramid.build_model("mnist_m3", levels=4, seed=0)
    counts = []
    for depth in range(1, 5):
        fn = tf.function(lambda x, depth=depth: model(x, depth=depth),
                         input_signature=[tf.TensorSpec([None, 112, 112, 1], tf.float32)])
        graph = fn.get_concrete_function().graph.as_graph_def()
        nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
        counts.append(sum(1 for node in nodes if node.op != "Const"))
    growth = [deeper - shallower for shallower, deeper in zip(counts, counts[1:])]
    assert max(growth) <= 150, f"ops added per level {growth} (graph sizes {counts})"
