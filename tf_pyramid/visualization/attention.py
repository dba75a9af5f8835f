"""What a pyramid model looked at: per-level attended cells and the resolution of every region.

`attention_views(model, images)` runs the deterministic traversal and returns, for every image and
depth d = 1..L, the image as the model saw it after d levels (each region shown at the resolution
it was processed at: regions only seen at level 1 are the level-1 pyramid image upsampled, regions
attended at level 2 the level-2 image, ...; paper Fig. 3 and 7), the attended patches, and the
level-d prediction.
"""
import dataclasses

import numpy as np
import tensorflow as tf



@dataclasses.dataclass
class ImageView:
    """Attention of the model on one image (pixel coordinates of the model input, side S)."""
    image: np.ndarray            # [S, S, C] model input
    seen: list                   # per depth d: [S, S, C] the image at the resolution it was seen
    patches: list                # per level l (0-based): [P, 3] (top, left, side) in input pixels
    classes: np.ndarray          # [L] top class of the prediction after each level
    probabilities: np.ndarray    # [L] its softmax probability
    num_locations: np.ndarray    # [L] attended cells of a traversal stopping after each level
    macs: np.ndarray             # [L]


def deterministic_policy(model, policy=None):
    """`policy`, else the model's own policy unless it samples (then "threshold")."""
    if policy:
        return policy
    return "threshold" if model.policy == "sample" else model.policy


def attention_views(model, images, policy=None, upsample="bilinear"):
    """Per-image `ImageView`s of `model` on model-ready `images` [B, S, S, C].

    `policy`: attention policy; None = the model's own unless it is "sample" (then "threshold").

    `upsample`: how lower-resolution regions are blown up for display ("bilinear" looks blurred,
    "nearest" shows the exact pixels the model saw).
    """
    if not model.has_attention:
        raise ValueError("Attention pictures need a pyramid model; baselines have no attention.")
    images = tf.convert_to_tensor(images, tf.float32)
    trace = model.traverse(images, training=False, policy=deterministic_policy(model, policy))
    summary = model.summarize(trace, tf.shape(images)[0])
    size, levels, base = model.input_size, model.levels, model.base_resolution
    upsampled = [tf.image.resize(level, [size, size], method=upsample).numpy()
                 for level in model.image_pyramid(images)]
    probabilities = tf.nn.softmax(summary["level_logits"]).numpy()          # [B, L, C]
    level_classes = probabilities.argmax(-1)
    level_probs = probabilities.max(-1)
    level_num_locations = summary["level_num_locations"].numpy()
    level_macs = summary["level_macs"].numpy()
    image_index = [index.numpy() for index in trace["image_index"]]
    offsets = [offset.numpy() for offset in trace["offset"]]
    batch = images.shape[0]
    views = []
    for i in range(batch):
        patches, seen = [], []
        picture = upsampled[0][i]
        for level in range(levels):
            scale = 2 ** (levels - 1 - level)
            corners = offsets[level][image_index[level] == i] * scale
            side = base * scale
            boxes = np.concatenate([corners, np.full([len(corners), 1], side)], axis=1)
            patches.append(boxes.astype(np.int64))
            # Deeper levels paint over shallower ones: each region at its finest resolution.
            picture = picture.copy()
            for top, left, _ in boxes:
                region = np.s_[top:top + side, left:left + side]
                picture[region] = upsampled[level][i][region]
            seen.append(picture)
        views.append(ImageView(
            image=images[i].numpy(), seen=seen, patches=patches, classes=level_classes[i],
            probabilities=level_probs[i], num_locations=level_num_locations[i],
            macs=level_macs[i]))
    return views
