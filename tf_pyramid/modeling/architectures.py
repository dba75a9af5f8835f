"""The paper's architectures (Tables 1-5) and `build_model`."""
from tf_pyramid.modeling import input_checks
from tf_pyramid.modeling.baseline_classifier import BaselineClassifier
from tf_pyramid.modeling.pyramid_classifier import PyramidClassifier

_MNIST = {"base_resolution": 14, "channels": 1, "num_classes": 10, "default_levels": 3}
_IMAGENET = {"base_resolution": 32, "channels": 3, "num_classes": 1000, "default_levels": 4}

FEATURE_EXTRACTORS = {
    "mnist_3": [["conv", 32], ["pool", 2, 2], ["conv", 64], ["pool", 3, 2], ["conv", 64]],
    "mnist_2": [["conv", 32], ["pool", 2, 2], ["conv", 64]],
    "mnist_1": [["conv", 64], ["pool", 2, 2]],
    "imagenet_2": [["conv", 64], ["pool", 2, 2], ["conv", 128], ["pool", 2, 2], ["conv", 256],
                   ["pool", 2, 2], ["conv", 256]],
    "imagenet_1": [["conv", 64], ["pool", 2, 2], ["conv", 128], ["pool", 2, 2], ["conv", 256]],
}

ARCHITECTURES = {}
for _dataset, _defaults, _indices in (("mnist", _MNIST, (1, 2, 3)), ("imagenet", _IMAGENET, (1, 2))):
    for _i in _indices:
        for _kind, _prefix in (("pyramid", "m"), ("baseline", "bl")):
            ARCHITECTURES[f"{_dataset}_{_prefix}{_i}"] = dict(
                _defaults, kind=_kind, layer_specs=FEATURE_EXTRACTORS[f"{_dataset}_{_i}"])

MODEL_NAMES = tuple(sorted(ARCHITECTURES))


def architecture(name):
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown model name {name!r}; expected one of {', '.join(MODEL_NAMES)}.")
    return ARCHITECTURES[name]


def is_pyramid(name):
    """Whether model `name` is a pyramid model (else a fully convolutional baseline)."""
    return architecture(name)["kind"] == "pyramid"


def levels_for_resolution(name, resolution):
    """The `levels` L whose input side `b * 2**(L-1)` equals `resolution`, or a ValueError."""
    base = architecture(name)["base_resolution"]
    levels, side = 1, base
    while side < resolution:
        levels, side = levels + 1, side * 2
    if side != resolution:
        sides = ", ".join(str(base * 2 ** i) for i in range(5))
        raise ValueError(
            f"{name} takes inputs of side base_resolution * 2**(levels-1) ({sides}, ...); got "
            f"resolution {resolution}.")
    return levels


def build_model(name, *, levels=None, num_classes=None, policy="threshold", **overrides):
    """Builds one of the paper's models.

    Args:
        name: one of `MODEL_NAMES` (mnist_m1..3, mnist_bl1..3, imagenet_m1..2, imagenet_bl1..2).
        levels: number of processing levels L; the input side is `b * 2**(L-1)` (b = 14 for
            MNIST models, 32 for ImageNet models). Baselines take the same input side.
        num_classes: defaults to 10 (MNIST) or 1000 (ImageNet).
        policy: inference attention policy of pyramid models: "threshold", "sample", "topk:K".
        **overrides: other constructor arguments (`channels`, `seed`, `input_convention`,
            `dtype`: "float32", "mixed_bfloat16" or "mixed_float16", ...).
    The learning rule is not part of the architecture: pass it to `model.compile`.
    """
    spec = dict(architecture(name))
    default_levels = spec.pop("default_levels")
    levels = default_levels if levels is None else levels
    input_checks.check_levels(levels)
    kind = spec.pop("kind")
    base = spec.pop("base_resolution")
    if num_classes is not None:
        spec["num_classes"] = num_classes
    spec.update(overrides)
    spec.setdefault("name", name)
    if kind == "baseline":
        if policy != "threshold":
            raise ValueError(f"{name} is a baseline and has no attention policy; got {policy!r}.")
        return BaselineClassifier(input_size=base * 2 ** (levels - 1), **spec)
    return PyramidClassifier(base_resolution=base, levels=levels, policy=policy, **spec)
