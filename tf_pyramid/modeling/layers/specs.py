"""Shape and cost arithmetic for the layer specs of the feature extraction module.

Kept apart from the Keras layers so that `tools/model_table.py` and the traversal's per-image MAC
accounting use one set of formulas (docs/model.md: MACs = multiply-accumulates of conv/FC layers,
biases excluded).
"""

NEGATIVE_SLOPE = 0.2


def validate_layer_specs(layer_specs):
    """Normalises `[["conv", 32], ["pool", 2, 2], ...]` to a tuple of tuples, or raises."""
    out = []
    for spec in layer_specs:
        spec = tuple(spec)
        if spec and spec[0] == "conv" and len(spec) == 2 and int(spec[1]) > 0:
            out.append(("conv", int(spec[1])))
        elif spec and spec[0] == "pool" and len(spec) == 3 and int(spec[1]) > 0 and int(spec[2]) > 0:
            out.append(("pool", int(spec[1]), int(spec[2])))
        else:
            raise ValueError(
                "Expected layer specs like ['conv', filters] or ['pool', size, stride]; "
                f"got {spec!r}.")
    if not any(s[0] == "conv" for s in out):
        raise ValueError(f"The feature extraction module needs at least one conv; got {out!r}.")
    return tuple(out)


def feature_map_shape(layer_specs, spatial):
    """(h, w, c) of the last feature map for an input of spatial size `spatial` = (h, w)."""
    h, w = spatial
    c = None
    for spec in layer_specs:
        if spec[0] == "conv":
            c = spec[1]
        else:
            size, stride = spec[1], spec[2]
            h = None if h is None else (h - size) // stride + 1
            w = None if w is None else (w - size) // stride + 1
    return h, w, c


def feature_extraction_macs(layer_specs, height, width, channels):
    """MACs of the convs: out_h * out_w * 3 * 3 * c_in * c_out each (SAME, stride 1)."""
    h, w, c = height, width, channels
    total = 0
    for spec in layer_specs:
        if spec[0] == "conv":
            total += h * w * 9 * c * spec[1]
            c = spec[1]
        else:
            h = (h - spec[1]) // spec[2] + 1
            w = (w - spec[1]) // spec[2] + 1
    return total
