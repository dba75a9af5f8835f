"""Mean and spread over K re-drawn evaluation passes (paper Figure 4: K = 20)."""
import numpy as np
import pytest

from tf_pyramid.data import PAPER_NUM_PASSES, build_dataset, evaluate_redrawn


def test_mean_and_spread_of_scalar_and_dict_results():
    values = iter([0.5, 0.7, 0.6, 0.8])
    summary = evaluate_redrawn(lambda ds: next(values), dataset=None, num_passes=4)
    assert summary["num_passes"] == 4 and summary["values"] == [0.5, 0.7, 0.6, 0.8]
    assert summary["mean"] == pytest.approx(0.65)
    assert summary["std"] == pytest.approx(np.std([0.5, 0.7, 0.6, 0.8], ddof=1))
    assert (summary["min"], summary["max"]) == (0.5, 0.8)
    levels = iter([{"level_1": 0.1, "level_2": 0.3}, {"level_1": 0.3, "level_2": 0.5}])
    summary = evaluate_redrawn(lambda ds: next(levels), None, num_passes=2)
    assert summary["mean"] == pytest.approx({"level_1": 0.2, "level_2": 0.4})
    assert PAPER_NUM_PASSES == 20
    with pytest.raises(ValueError, match="num_passes must be a positive integer"):
        evaluate_redrawn(lambda ds: 0.0, None, num_passes=0)


def test_each_pass_sees_re_drawn_images():
    ds, info = build_dataset("mnist", "validation", resolution=56, batch_size=250,
                             training=False, source="bundled", seed=4)
    background = info.input_convention.value_range[0]  # pixel value 0 of the plain canvas

    def mean_row_of_ink(dataset):  # depends on where the digits landed
        rows = np.arange(56)[None, :]
        total = []
        for x, _ in dataset:
            ink = x.numpy() - background
            total.append(float((ink.sum(axis=(2, 3)) * rows).sum() / ink.sum()))
        return float(np.mean(total))

    summary = evaluate_redrawn(mean_row_of_ink, ds, num_passes=3)
    assert len(set(summary["values"])) == 3 and summary["std"] > 0
    assert abs(summary["mean"] - 27.5) < 1.5  # positions are uniform: ink centred on average
