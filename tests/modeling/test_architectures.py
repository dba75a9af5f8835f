"""Parameter and MAC counts against paper Tables 1-5 (with the tables' typos corrected, see docs/model.md)."""

import pytest

import tf_pyramid
from tf_pyramid.modeling import module_table

# Per module: (params, MACs per application), from the paper's tables. Corrections: 56,448 not
# 56,488 (Tables 1-2); the ImageNet classifier has 256,000 weights + 1,000 biases.
MNIST_HEAD = {"aggregation": (36_928, 36_864), "merging": (8_256, 8_192),
              "classification": (650, 640)}
IMAGENET_HEAD = {"aggregation": (590_080, 589_824), "merging": (131_328, 131_072),
                 "classification": (257_000, 256_000)}
PYRAMID_TABLES = {
    "mnist_m3": dict(MNIST_HEAD, feature_extraction=(320 + 18_496 + 36_928,
                                                      56_448 + 903_168 + 331_776),
                     location=(5_193, 5_184)),
    "mnist_m2": dict(MNIST_HEAD, feature_extraction=(320 + 18_496, 56_448 + 903_168),
                     location=(28_233, 28_224)),
    "mnist_m1": dict(MNIST_HEAD, feature_extraction=(640, 112_896), location=(28_233, 28_224)),
    "imagenet_m2": dict(IMAGENET_HEAD, feature_extraction=(
        1_792 + 73_856 + 295_168 + 590_080,
        1_769_472 + 18_874_368 + 18_874_368 + 9_437_184), location=(36_873, 36_864)),
    "imagenet_m1": dict(IMAGENET_HEAD, feature_extraction=(
        1_792 + 73_856 + 295_168, 1_769_472 + 18_874_368 + 18_874_368),
        location=(147_465, 147_456)),
}
# Baselines: FE params, FC params (2 layers), classifier params; MACs at side N from the tables'
# per-N^2 factors, with the exact feature-map sides after VALID pooling.
BASELINE_TABLES = {
    "mnist_bl3": (55_744, 8_320, 650, lambda n: 288 * n * n + 4_608 * n * n
                  + ((n // 2 - 3) // 2 + 1) ** 2 * 36_864 + 8_192 + 640),
    "mnist_bl2": (18_816, 8_320, 650, lambda n: 288 * n * n + 4_608 * n * n + 8_192 + 640),
    "mnist_bl1": (640, 8_320, 650, lambda n: 576 * n * n + 8_192 + 640),
    "imagenet_bl2": (960_896, 131_584, 257_000, lambda n: 1_728 * n * n + 18_432 * n * n
                     + 18_432 * n * n + 9_216 * n * n + 131_072 + 256_000),
    "imagenet_bl1": (370_816, 131_584, 257_000, lambda n: 1_728 * n * n + 18_432 * n * n
                     + 18_432 * n * n + 131_072 + 256_000),
}


@pytest.mark.parametrize("name", sorted(PYRAMID_TABLES))
def test_pyramid_modules_match_the_paper(name):
    table = module_table.module_table(name, levels=2)
    for module, (params, macs) in PYRAMID_TABLES[name].items():
        assert table["modules"][module] == {"params": params, "macs": macs}, module
    assert table["total"]["params"] == sum(p for p, _ in PYRAMID_TABLES[name].values())


@pytest.mark.parametrize("name", sorted(BASELINE_TABLES))
@pytest.mark.parametrize("levels", [1, 3])
def test_baselines_match_the_paper(name, levels):
    fe, fc, cls, macs = BASELINE_TABLES[name]
    table = module_table.module_table(name, levels=levels)
    side = table["input_size"]
    assert side == (14 if name.startswith("mnist") else 32) * 2 ** (levels - 1)
    assert [table["modules"][m]["params"] for m in
            ("feature_extraction", "fully_connected", "classification")] == [fe, fc, cls]
    assert table["total"]["macs"] == macs(side)


def test_model_names_cover_the_paper():
    assert set(tf_pyramid.MODEL_NAMES) == set(PYRAMID_TABLES) | set(BASELINE_TABLES)


def test_levels_set_the_input_side():
    assert tf_pyramid.build_model("imagenet_m2", levels=4).input_size == 256
    assert tf_pyramid.build_model("mnist_m3", levels=1).input_size == 14
    assert tf_pyramid.modeling.levels_for_resolution("mnist_m1", 56) == 3
    with pytest.raises(ValueError, match="inputs of side"):
        tf_pyramid.modeling.levels_for_resolution("imagenet_m1", 100)
