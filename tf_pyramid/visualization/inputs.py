"""Loading images for the tools: image files and .npy/.npz arrays, pixel values 0-255."""
import glob
import os

import numpy as np
import tensorflow as tf



def expand_paths(specs):
    """Comma-separated paths or globs (a list of such strings) -> sorted existing files."""
    if isinstance(specs, str):
        specs = [specs]
    paths = []
    for spec in specs:
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            matches = sorted(glob.glob(item))
            if not matches:
                raise FileNotFoundError(f"No image file matches {item!r}.")
            paths.extend(matches)
    return paths


def _from_array(array, channels, name):
    array = np.asarray(array)
    if array.dtype.kind not in "uif":
        raise ValueError(f"{name}: expected a numeric image array; got dtype {array.dtype}.")
    if array.ndim == 2:                       # one grayscale image
        array = array[None, ..., None]
    elif array.ndim == 3:                     # [H, W, C] with C in 1/3/4, else [N, H, W]
        array = array[None] if array.shape[-1] in (1, 3, 4) else array[..., None]
    if array.ndim != 4:
        raise ValueError(f"{name}: expected [N, H, W(, C)] images; got shape {array.shape}.")
    array = array.astype(np.float32)
    return [_convert_channels(image, channels) for image in array]


def _convert_channels(image, channels):
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape[-1] == 4:
        image = image[..., :3]
    if image.shape[-1] == channels:
        return image.numpy()
    if channels == 1:
        return tf.image.rgb_to_grayscale(image).numpy()
    return tf.image.grayscale_to_rgb(image[..., :1]).numpy()


def load_images(specs, channels):
    """Images as float32 arrays [H, W, channels] with values 0-255 (sizes may differ).

    Files: PNG/JPEG/GIF/BMP, converted to `channels`. Arrays (`.npy`, or the first array of a
    `.npz`): [H, W], [H, W, C] or [N, H, W(, C)] with values 0-255.
    """
    images = []
    for path in expand_paths(specs):
        extension = os.path.splitext(path)[1].lower()
        if extension in (".npy", ".npz"):
            data = np.load(path)
            if extension == ".npz":
                data = data[data.files[0]]
            images.extend(_from_array(data, channels, path))
        else:
            with tf.io.gfile.GFile(path, "rb") as f:
                encoded = f.read()
            try:
                image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
            except tf.errors.InvalidArgumentError as error:
                raise ValueError(f"{path}: not a readable image ({error.message}).") from None
            images.append(tf.cast(image, tf.float32).numpy())
    if not images:
        raise ValueError("No images given.")
    return images


def model_inputs(images, preprocessor):
    """List of 0-255 images of any size -> model-ready float32 [N, size, size, C], through the
    model's preprocessing layer (`model.preprocessor`, or `ImagePreprocessor.of_model` with
    overrides), as `model.predict` and the serving signatures prepare them."""
    return tf.stack([preprocessor(tf.convert_to_tensor(image, tf.float32)) for image in images])
