"""Matplotlib (Agg, no pyplot) drawings of attention views.

One row per image: the model input, then one panel per depth d = 1..L showing the image at the
resolution each region was processed at after d levels, the attended cells of levels 2..d (one
colour per level), and the level-d prediction (top class, probability, attended cells).
"""
import io
import os

import numpy as np
from matplotlib import patches as mpatches
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LEVEL_COLORS = ("#ffffff", "#ff3b30", "#ffcc00", "#34c759", "#0a84ff", "#bf5af2", "#ff9f0a")
DPI = 100


def figure_shape(num_images, levels, panel_px=192):
    """(height, width) in pixels of the picture `attention_figure` draws."""
    return num_images * panel_px, (levels + 1) * panel_px


def _display(image, value_range):
    low, high = value_range
    picture = np.clip((np.asarray(image, np.float32) - low) / (high - low), 0.0, 1.0)
    if picture.shape[-1] == 1:
        return picture[..., 0], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    return picture, {}


def _class_name(index, class_names):
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return str(int(index))


def attention_figure(views, value_range, class_names=None, panel_px=192, font_size=None):
    """A `Figure` of `ImageView`s; see the module doc. Size: `figure_shape(...)` pixels."""
    levels = len(views[0].seen)
    height, width = figure_shape(len(views), levels, panel_px)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    font_size = font_size or max(6, panel_px // 24)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.16 / len(views) - 0.01,
                        wspace=0.06, hspace=0.22)
    axes = fig.subplots(len(views), levels + 1, squeeze=False)
    for row, view in enumerate(views):
        image, kwargs = _display(view.image, value_range)
        axes[row, 0].imshow(image, interpolation="nearest", **kwargs)
        axes[row, 0].set_title("input", fontsize=font_size)
        for depth in range(1, levels + 1):
            ax = axes[row, depth]
            picture, kwargs = _display(view.seen[depth - 1], value_range)
            ax.imshow(picture, interpolation="nearest", **kwargs)
            for level in range(1, depth):
                color = LEVEL_COLORS[level % len(LEVEL_COLORS)]
                for top, left, side in view.patches[level]:
                    ax.add_patch(mpatches.Rectangle(
                        (left - 0.5, top - 0.5), side, side, fill=False, edgecolor=color,
                        linewidth=max(0.8, panel_px / 160)))
            name = _class_name(view.classes[depth - 1], class_names)
            ax.set_title(f"L{depth}: {name} ({view.probabilities[depth - 1]:.2f}), "
                         f"{int(view.num_locations[depth - 1])} cells", fontsize=font_size)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def figure_to_array(fig):
    """RGB uint8 [H, W, 3] of a figure (for TensorBoard)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig, path):
    """Writes a PNG of exactly the figure's size (no tight bbox)."""
    import tensorflow as tf

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path
