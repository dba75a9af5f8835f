"""The compute estimate of each experiment: MACs against a hand count, totals against their
parts, and the docs table against the tool's output."""
import re

import pytest

from tests.helpers import REPO, run_python
from tf_pyramid.training import compute

# mnist_m1 per application, counted by hand from paper Table 3 (biases excluded):
FE = 3 * 3 * 1 * 64 * 14 * 14      # conv 3x3, 1 -> 64 channels, on 14 x 14
LOCATION = 7 * 7 * 64 * 9          # conv over the whole 7 x 7 x 64 map -> 9 cells
AGGREGATION = 3 * 3 * 64 * 64      # conv 3x3 VALID on the 3 x 3 x 64 grid
MERGING = 2 * 64 * 64              # FC 128 -> 64
CLASSIFICATION = 64 * 10


def test_module_costs_match_a_hand_count():
    assert compute.module_costs("mnist_m1", 2) == {
        "feature_extraction": FE, "location": LOCATION, "aggregation": AGGREGATION,
        "merging": MERGING, "classification": CLASSIFICATION}


def test_expected_macs_of_a_small_model_by_hand():
    """mnist/m1_28: 2 levels, c_t 2. Two attended cells are two more FE patches; one location
    module; the root merges unless all 9 cells (each with probability 2/9) stay off."""
    entry = compute.experiment_compute("mnist/m1_28")
    merge_probability = 1 - (1 - 2 / 9) ** 9
    expected = (3 * FE + LOCATION + merge_probability * (AGGREGATION + MERGING)
                + CLASSIFICATION)
    assert entry["forward_macs"] == pytest.approx(expected, rel=1e-9)
    level_1, level_2 = entry["per_level_macs"]
    assert level_1["min"] == level_1["max"] == FE + CLASSIFICATION
    assert level_2["min"] == FE + LOCATION + CLASSIFICATION          # nothing attended
    assert level_2["max"] == 10 * FE + LOCATION + AGGREGATION + MERGING + CLASSIFICATION
    # training: M = 2 copies, forward + backward = 3 forward, 2 FLOPs per MAC, 429 batches of 128
    assert entry["mc_samples"] == 2 and entry["images_per_epoch"] == 55_000 // 128 * 128
    assert entry["training_flops"] == pytest.approx(
        expected * 2 * 3 * 2 * 54_912 * entry["epochs"], rel=1e-9)


def test_baseline_and_one_level_models_train_one_copy():
    baseline = compute.experiment_compute("imagenet/bl2_64")
    one_level = compute.experiment_compute("imagenet/m2_32")
    assert baseline["mc_samples"] == one_level["mc_samples"] == 1
    # paper Table 4 at N = 64, counted layer by layer (the table's N^2 terms are approximate)
    n = 64
    trunk = 3 * 3 * 3 * 64 * n * n + 3 * 3 * 64 * 128 * (n // 2) ** 2 \
        + 3 * 3 * 128 * 256 * (n // 4) ** 2 + 3 * 3 * 256 * 256 * (n // 8) ** 2
    assert baseline["forward_macs"] == trunk + 2 * 256 * 256 + 256 * 1000


def test_multilevel_targets_give_the_patches_per_level():
    assert compute.multilevel_patches([3.2, 13.5, 40]) == pytest.approx([1, 3.2, 10.3, 26.5])
    entry = compute.experiment_compute("multilevel/imagenet_m2_256")
    fe = compute.module_costs("imagenet_m2", 4)["feature_extraction"]
    # depth 3 of the multi-level model attends 13.5 cells: 14.5 FE patches
    assert entry["per_level_macs"][2]["expected"] == pytest.approx(14.5 * fe, rel=0.03)
    assert entry["per_level_macs"][2]["expected"] > 14.5 * fe


def test_chain_and_study_totals_are_sums_of_stages():
    study = compute.study_compute(["imagenet/m2_256_ct29", "imagenet/m2_256_ct39"])
    first, second = study["experiments"]
    assert first["chain"] == ["imagenet/m2_64_ct4.5", "imagenet/m2_128_ct13.5",
                              "imagenet/m2_256_ct29"]
    stages = [compute.experiment_compute(name) for name in first["chain"]]
    assert first["chain_flops"] == pytest.approx(sum(s["training_flops"] for s in stages))
    assert first["chain_epochs"] == 600
    assert first["chain_accelerator_hours"] == pytest.approx(
        sum(s["accelerator_hours"] for s in stages))
    # the shared 64 and 128 px stages count once in the total
    assert study["total"]["runs"] == 4
    assert study["total"]["training_flops"] == pytest.approx(
        first["chain_flops"] + second["training_flops"])


def test_accelerator_hours_follow_the_stated_throughput():
    slow = compute.experiment_compute("imagenet/bl1_64", compute.Throughput("X", 100.0, 0.5))
    assert slow["accelerator_hours"] == pytest.approx(slow["training_flops"] / 50e12 / 3600)


def test_docs_table_is_the_tools_output():
    printed = run_python(["tools/experiment_compute.py"]).stdout
    with open(f"{REPO}/docs/training.md") as f:
        docs = f.read()
    block = re.search(r"<!-- compute table: .*?-->\n\n(.*?)\n<!-- end of compute table -->",
                      docs, re.S)
    assert block, "docs/training.md lacks the compute table markers"
    assert block.group(1) == printed, ("docs/training.md's compute table differs from "
                                       "`python tools/experiment_compute.py`: paste its output")
    assert "## Compute of each experiment" in docs
