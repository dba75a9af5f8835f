"""Attention quality (share of the digit's ink in the attended cells) on hand-made cases."""
import itertools

import numpy as np
import pytest

import tf_pyramid
from tf_pyramid.analysis import attention_quality as aq

SIDE = 56  # mnist_m1 with 3 levels: b = 14; level 2 cells are 28 input px, level 3 cells 14


def _forced_model(cell):
    """mnist_m1 at 56 px whose location module attends exactly `cell` of every patch."""
    model = tf_pyramid.build_model("mnist_m1", levels=3, policy="threshold")
    conv = model.location_module.conv
    bias = np.full([aq.NUM_CELLS], -30.0, np.float32)
    bias[cell] = 30.0
    conv.set_weights([np.zeros_like(conv.kernel.numpy()), bias])
    return model


def _bar_ink():
    """A bar of uniform ink, rows 2..6 and columns 10..17 of a 56 px canvas (top-left)."""
    ink = np.zeros([1, SIDE, SIDE, 1], np.float32)
    ink[0, 2:7, 10:18] = 1.0
    return ink


def test_attention_forced_onto_and_off_the_digit():
    ink = _bar_ink()
    images = 2.0 * ink - 1.0  # the model input range; the forced module ignores the image
    onto = aq.level_shares(_forced_model(0), images, ink)
    # Level 2: cell 0 is input [0, 28)^2 and holds the bar; random single cells: cell (0, 0)
    # holds all of it, (0, 1) = columns [14, 42) half of it, the rest nothing: (1 + 0.5) / 9.
    # Level 3: cell 0 of that cell is [0, 14)^2: columns 10..13, half; random cells of the same
    # parent (columns [0, 14), [7, 21), [14, 28) of row 0): (0.5 + 1 + 0.5) / 9.
    np.testing.assert_allclose([level["attended"][0] for level in onto], [1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose([level["random"][0] for level in onto], [1.5 / 9, 2.0 / 9],
                               atol=1e-6)
    np.testing.assert_array_equal([level["cells"][0] for level in onto], [1, 1])
    off = aq.level_shares(_forced_model(8), images, ink)  # the bottom-right cell, twice
    np.testing.assert_allclose([level["attended"][0] for level in off], [0.0, 0.0], atol=1e-6)
    # Same parent (the whole image) at level 2; at level 3 the parent [28, 56)^2 has no ink.
    np.testing.assert_allclose([level["random"][0] for level in off], [1.5 / 9, 0.0], atol=1e-6)
    result = aq.measure_shares(_forced_model(0), [(images, None, ink), (images, None, ink)])
    assert result["images"] == 2 and [e["level"] for e in result["levels"]] == [2, 3]
    np.testing.assert_allclose(result["levels"][1]["margin"], 0.5 - 2.0 / 9, atol=1e-6)


def _slow_random_share(ink, parents, cell_size):
    """Every combination of k-of-9 cell subsets, one per parent, enumerated and averaged."""
    step, shares = cell_size // 2, []
    choices = [list(itertools.combinations(range(9), k)) for _, _, k in parents]
    for chosen in itertools.product(*choices):
        covered = np.zeros(ink.shape, bool)
        for (y, x), cells in zip([p[:2] for p in parents], chosen):
            for cell in cells:
                top, left = y + (cell // 3) * step, x + (cell % 3) * step
                covered[top:top + cell_size, left:left + cell_size] = True
        shares.append(ink[covered].sum() / ink.sum())
    return np.mean(shares)


def test_random_share_is_the_exact_expectation():
    rng = np.random.default_rng(3)
    ink = rng.uniform(size=[2, 28, 28]) * (rng.uniform(size=[2, 28, 28]) < 0.3)
    # Image 0: two overlapping parents (2 and 3 children); image 1: 4 children, and a parent
    # with none (it adds nothing).
    parent_image = np.array([0, 0, 1, 1])
    parent_offset = np.array([[0, 0], [4, 6], [12, 0], [0, 12]])  # parents are 16 px
    counts = np.array([2, 3, 4, 0])
    got = aq.random_share(ink, parent_image, parent_offset, counts, cell_size=8)
    expected = [_slow_random_share(ink[0], [(0, 0, 2), (4, 6, 3)], 8),
                _slow_random_share(ink[1], [(12, 0, 4)], 8)]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert 0.0 < got[1] < got[0] < 1.0  # more cells, more ink, all of it never
    full = aq.random_share(ink, [0, 1], [[0, 0], [0, 0]], [9, 9], cell_size=14)
    np.testing.assert_allclose(full, [1.0, 1.0])  # all 9 cells of the whole image: all ink


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"child_counts must lie in \[0, 9\]"):
        aq.random_share(np.ones([1, 8, 8]), [0], [[0, 0]], [10], cell_size=4)
    with pytest.raises(ValueError, match="Ink maps must be 56 px"):
        aq.level_shares(_forced_model(0), np.zeros([1, SIDE, SIDE, 1], np.float32),
                        np.zeros([1, 28, 28, 1]))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        aq.measure_run(str(tmp_path))
    assert aq.run_checkpoints(str(tmp_path)) == []
