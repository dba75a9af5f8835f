"""tools/benchmark_inference.py: its Keras rows and its rows through the exported SavedModel."""
import json

import pytest

from tests.helpers import run_python


@pytest.mark.slow
def test_tiny_run_prints_keras_and_serving_rows_with_consistent_ratios():
    """A fresh process at a tiny size (mnist_m3, 2 levels, K = 1): every signature at batches 1
    and 2, each with the Keras model, both floors and the baseline timed beside it."""
    result = run_python(["tools/benchmark_inference.py", "--model=mnist_m3",
                         "--baseline=mnist_bl3", "--levels=2", "--k=1", "--batch=2",
                         "--repeats=1", "--serving_batch=1", "--serving_batch=2", "--json"])
    text = result.stdout
    assert "Exported SavedModel" in text, text
    data = json.loads(text[text.index("\n{") + 1:])
    (row,) = data["keras"]
    assert (row["levels"], row["k"], row["patches_per_image"]) == (2, 1, 2)
    assert row["fe_floor_macs"] == 2 * 1_291_392  # two 14 x 14 patches through mnist_m3's FE
    for key in ("pyramid_over_floor", "pyramid_over_levels", "pyramid_over_baseline"):
        assert row[key] > 0
    assert row["pyramid_over_levels"] == pytest.approx(row["pyramid_ms"] / row["fe_levels_ms"])

    serving = data["serving"]
    assert sorted((r["batch"], r["signature"]) for r in serving) == sorted(
        (batch, name) for batch in (1, 2)
        for name in ("serving_default", "anytime", "serving_bytes"))
    for r in serving:
        assert r["over_keras"] == pytest.approx(r["signature_ms"] / r["keras_ms"])
        assert r["over_floor"] == pytest.approx(r["signature_ms"] / r["fe_floor_ms"])
        assert r["over_baseline"] == pytest.approx(r["signature_ms"] / r["baseline_ms"])
        # The signature ran the fixed budget: the same MACs as the Keras model's pyramid.
        assert r["macs_ratio"] == pytest.approx(row["macs_ratio"])
