"""A slow, obviously-correct traversal: per image, per patch, plain Python/NumPy recursion.

Used only by the tests to check the batched gather/scatter implementation.
"""
import numpy as np


def area_pyramid(image, base, levels):
    """Level l (1-based) = block average of the input down to side base * 2**(l-1)."""
    side = image.shape[0]
    out = []
    for level in range(1, levels + 1):
        target = base * 2 ** (level - 1)
        factor = side // target
        out.append(image.reshape(target, factor, target, factor, -1).mean(axis=(1, 3)))
    return out


def reference_outputs(model, image, masks, depth):
    """Level-`depth` logits and MACs of one image [S, S, C].

    `masks(level, offset, probabilities)` returns the 0/1 mask (9,) of the patch at `level`
    (0-based) with top-left `offset` (y, x) in that level's pixels.
    """
    base = model.base_resolution
    pyramid = area_pyramid(image.astype(np.float64), base, model.levels)
    costs = model.module_costs()
    spent = {"macs": costs["classification"], "locations": 0}

    def node(level, oy, ox):
        patch = pyramid[level][oy:oy + base, ox:ox + base].astype(np.float32)
        assert patch.shape[:2] == (base, base), (level, oy, ox)
        feature_map, vector = model.feature_extraction(patch[None])
        spent["macs"] += costs["feature_extraction"]
        vector = np.asarray(vector)[0]
        if level == depth - 1:
            return vector
        probabilities = np.asarray(model.location_module(feature_map))[0]
        spent["macs"] += costs["location"]
        mask = masks(level, (oy, ox), probabilities)
        grid = np.zeros((3, 3, vector.shape[0]), np.float32)
        attended = False
        for cell in range(9):
            if mask[cell]:
                row, col = divmod(cell, 3)
                grid[row, col] = node(level + 1, 2 * oy + row * base // 2,
                                      2 * ox + col * base // 2)
                attended = True
                spent["locations"] += 1
        if not attended:
            return vector
        spent["macs"] += costs["aggregation"] + costs["merging"]
        aggregate = np.asarray(model.aggregation_module(grid[None]))
        return np.asarray(model.merging_module([vector[None], aggregate]))[0]

    root = node(0, 0, 0)
    logits = np.asarray(model.classification_module(root[None]))[0]
    return logits, spent["macs"], spent["locations"]
