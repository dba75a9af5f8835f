"""The one helpers module of the test suite: subprocesses with the repo on the path, tiny
training configurations, image files and TFRecords, statistics for random ops, and a slow
reference traversal of the pyramid model."""
import io
import os
import socket
import struct
import subprocess
import sys

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------- subprocesses
def run_python(args, timeout=300, check=True):
    """Runs `python ARGS` in a fresh process (CPU only, quiet TF); returns the CompletedProcess."""
    env = python_env(TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[:2]} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-5000:]}")
    return result


def run_script(source, *args, timeout=300):
    return run_python(["-c", source, *args], timeout=timeout)


# ------------------------------------------------------------------------ tiny training runs
TINY = dict(model="mnist_m1", resolution=28, dataset="mnist", source="bundled", batch_size=16,
            eval_batch_size=250, epochs=2, steps_per_epoch=3, c_t=[2.0], lambda_f=1e-6,
            lambda_t=1e-7, lambda_r=1e-7, mc_samples=2, checkpoint_every=2, seed=3, export=False,
            validation_split="none")


def tiny_config(model_dir, **overrides):
    from tf_pyramid.training import default_config  # noqa: PLC0415
    return default_config(**dict(TINY, model_dir=str(model_dir), **overrides))


def tiny_args(model_dir, **overrides):
    """TINY as command-line flags."""
    args = []
    for key, value in dict(TINY, model_dir=str(model_dir), **overrides).items():
        for item in value if isinstance(value, list) else [value]:
            args.append(f"--{key}={str(item).lower() if isinstance(item, bool) else item}")
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def python_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def run_module(module, args, timeout=240, cwd=REPO, **env):
    """`python -m MODULE ARGS` in a fresh process, from `cwd` (the checkout by default)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=python_env(**env),
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------- image files, TFRecords
def sample_photos():
    """Colour photographs that ship with scikit-image."""
    from skimage import data
    return {"chelsea": data.chelsea(), "coffee": data.coffee(), "astronaut": data.astronaut()}


def encode(image, fmt, mode=None, quality=90):
    """Bytes of `image` (uint8 HxWx3) as JPEG/PNG; mode 'L' for grayscale, 'CMYK' for CMYK."""
    from PIL import Image
    picture = Image.fromarray(image)
    if mode:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _bytes_list(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _int64_list(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _float_list(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def slim_example(encoded, label, filename, boxes=()):
    """One tf.train.Example in the Inception/slim layout (1-based label, optional boxes)."""
    features = {"image/encoded": _bytes_list([encoded]),
                "image/class/label": _int64_list([label]),
                "image/filename": _bytes_list([filename.encode()]),
                "image/format": _bytes_list([b"JPEG"])}
    for i, key in enumerate(("ymin", "xmin", "ymax", "xmax")):
        features[f"image/object/bbox/{key}"] = _float_list([box[i] for box in boxes])
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_tfrecords(directory, split, examples, num_shards):
    for shard in range(num_shards):
        path = os.path.join(directory, f"{split}-{shard:05d}-of-{num_shards:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for example in examples[shard::num_shards]:
                writer.write(example)


def png_size(path):
    """(height, width) from the PNG header."""
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return height, width


IMAGE_SIDE = 24  # encoded_files() are made at this side (the serving tests resize nothing)


def smooth_image(seed, channels):
    """Smooth 0-255 uint8 [IMAGE_SIDE, IMAGE_SIDE, channels] (JPEG keeps it within a few levels)."""
    small = np.random.default_rng(seed).uniform(0, 255, [6, 6, channels]).astype(np.float32)
    return np.round(tf.image.resize(small, [IMAGE_SIDE, IMAGE_SIDE], "bicubic").numpy().clip(0, 255)).astype(
        np.uint8)


def pil_bytes(image, fmt, mode=None, **options):
    import io

    from PIL import Image
    picture = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    if mode:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def pil_pixels(data, channels):
    """Independent reference: PIL's decode, RGB or (BT.601) grayscale, alpha dropped."""
    import io

    from PIL import Image
    picture = Image.open(io.BytesIO(data))
    if channels == 1 and picture.mode not in ("L", "LA"):
        picture = picture.convert("RGB")
    picture = picture.convert("L" if channels == 1 else "RGB")
    return np.asarray(picture, np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE, channels)


def encoded_files():
    """name -> encoded bytes, for every format the serving docs list (TF and PIL encoders)."""
    rgb, gray, rgba = smooth_image(3, 3), smooth_image(4, 1), smooth_image(5, 4)
    return {
        "png_gray": tf.io.encode_png(gray).numpy(),
        "png_rgb": tf.io.encode_png(rgb).numpy(),
        "png_rgba": tf.io.encode_png(rgba).numpy(),
        "jpeg_gray": tf.io.encode_jpeg(gray, quality=95).numpy(),
        "jpeg_rgb": tf.io.encode_jpeg(rgb, quality=95).numpy(),
        "jpeg_cmyk": pil_bytes(rgb, "JPEG", mode="CMYK", quality=95),
        "gif": pil_bytes(rgb, "GIF"),
        "bmp": pil_bytes(rgb, "BMP"),
        "webp": pil_bytes(rgb, "WEBP", lossless=True),
    }


# Largest and mean pixel difference to PIL. Lossless formats agree up to the rounding of the
# grayscale conversion. TF's JPEG decoder uses the fast integer IDCT (as the training pipelines),
# some pixels a few levels off; a wrong colour conversion (CMYK, channel order) is off by far more.


# ---------------------------------------------------------------------- random preprocessing
SEED = np.array([7, 11], np.int64)  # numpy: importing this module creates no TF device


def run_both_ways(op, image, **kwargs):
    """`op(image, **kwargs)` eagerly and in a Dataset.map; asserts equality; returns the result."""
    eager = op(tf.convert_to_tensor(image), **kwargs)
    dataset = tf.data.Dataset.from_tensors(tf.convert_to_tensor(image)).map(
        lambda x: op(x, **kwargs))
    mapped = next(iter(dataset))
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a.numpy(), b.numpy(),
                                                                  rtol=1e-6, atol=1e-6),
                          eager, mapped)
    return eager


def map_over_seeds(fn, num_seeds, base_seed=0):
    """Results of `fn(seed)` for `num_seeds` different stateless seeds, computed in one
    Dataset.map pass (fast, and in-graph like the real pipeline); numpy, stacked."""
    seeds = tf.data.Dataset.range(num_seeds).map(
        lambda i: tf.stack([tf.constant(base_seed, tf.int64), i]))
    batches = list(seeds.map(fn).batch(num_seeds))
    assert len(batches) == 1
    return tf.nest.map_structure(lambda t: t.numpy(), batches[0])


def chi_square_uniform(counts):
    """Pearson chi-square statistic of `counts` against the uniform distribution."""
    counts = np.asarray(counts, np.float64)
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


# Upper 0.1% points of chi-square (a correct uniform draw fails 1 run in 1000).
CHI2_999 = {3: 16.27, 28: 56.89}


# ----------------------------------------------------------------- reference traversal
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
