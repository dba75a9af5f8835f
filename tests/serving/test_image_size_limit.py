"""`serving_bytes` refuses an encoded image above its pixel limit from the header, before decoding
(a few hundred KB of PNG can declare 20,000 x 20,000 pixels: seconds and gigabytes to decode)."""
import json
import os
import struct
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tests.helpers import encoded_files, run_python
from tf_pyramid import serving
from tf_pyramid.data import input_convention
from tf_pyramid.serving import export_lib, preprocessing


def _png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def huge_png(side=20_000):
    """A valid 1-bit grayscale PNG of side x side black pixels (a few tens of KB)."""
    row = b"\0" * (1 + (side + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data)
            + _png_chunk(b"IEND", b""))


def _declaring(name, data, height, width):
    """`data` (a small file of format `name`) with a header that declares height x width."""
    data = bytearray(data)
    if name.startswith("png"):
        data[16:24] = struct.pack(">II", width, height)
    elif name.startswith("jpeg"):
        sof = next(i for i in range(2, len(data) - 1)
                   if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
        data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    elif name == "gif":
        data[6:10] = struct.pack("<HH", width, height)
    elif name == "bmp":
        data[18:26] = struct.pack("<ii", width, -height)  # negative: rows top-down
    elif name == "webp":
        assert data[12:16] == b"VP8L"
        bits = (width - 1) | (height - 1) << 14 | (int.from_bytes(data[21:25], "little")
                                                   & ~((1 << 28) - 1))
        data[21:25] = bits.to_bytes(4, "little")
    return bytes(data)


def _functions(max_image_pixels=preprocessing.DEFAULT_MAX_IMAGE_PIXELS):
    keras.utils.set_random_seed(2)
    model = tf_pyramid.build_model("mnist_bl1", levels=1, num_classes=3)
    model.input_convention = input_convention("mnist", model.input_size).get_config()
    return serving.ServingFunctions(model, model.preprocessor,
                                    max_image_pixels=max_image_pixels)


def _serving_bytes(functions):
    """The signature's function as traced for export (its assertion messages as served)."""
    return tf.function(functions.serving_bytes, input_signature=[tf.TensorSpec([None], tf.string)])


def test_header_dimensions_of_every_format():
    """The size read from each format's header equals the decoded size."""
    for name, data in encoded_files().items():
        image_format = preprocessing._image_formats(tf.constant([data]))[0]
        height, width = preprocessing.image_dimensions(tf.constant(data), image_format)
        decoded = tf.io.decode_image(data, expand_animations=False)
        assert (int(height), int(width)) == tuple(decoded.shape[:2]), name
        big = _declaring(name, data, 9_000, 11_000)
        dims = preprocessing.image_dimensions(tf.constant(big), image_format)
        assert [int(d) for d in dims] == [9_000, 11_000], name


@pytest.mark.parametrize("name", ["png_rgb", "jpeg_rgb", "jpeg_cmyk", "gif", "bmp", "webp"])
def test_an_image_above_the_limit_is_refused_by_index_size_and_limit(name):
    functions = _functions()
    files = encoded_files()
    big = _declaring(name, files[name], 10_000, 8_000)  # 80 megapixels
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"element\] \[1\] \[is\] \[8000\] \[x\] \[10000\] \[pixels \(width x "
                             r"height\), more than the 50,000,000 pixels"):
        _serving_bytes(functions)(tf.constant([files["png_gray"], big]))


def test_a_lower_limit_no_limit_and_a_bad_limit():
    with pytest.raises(ValueError, match="max_image_pixels must be a positive number"):
        serving.export_saved_model(_functions().model, "/nonexistent/never", max_image_pixels=0)
    files = encoded_files()
    small_limit = _functions(max_image_pixels=100)  # the model's own 28 x 28 is 784
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"more than the 100 pixels"):
        _serving_bytes(small_limit)(tf.constant([files["png_gray"]]))
    unlimited = _functions(max_image_pixels=None)
    huge = huge_png(3_000)  # 9 megapixels: decoded when there is no limit
    assert _serving_bytes(unlimited)(tf.constant([huge]))["classes"].shape == (1,)


_CHILD = """
import json, sys, time
import numpy as np, tensorflow as tf
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_bytes"]
small, medium, huge = (open(p, "rb").read() for p in sys.argv[2:5])
ok = signature(image_bytes=tf.constant([small]))["probabilities"].shape.as_list()
def refusal(data):
    start = time.monotonic()
    try:
        signature(image_bytes=tf.constant([small, data]))
        return None, time.monotonic() - start
    except tf.errors.InvalidArgumentError as error:
        return error.message, time.monotonic() - start
print(json.dumps({"ok": ok, "huge": refusal(huge), "medium": refusal(medium)}))
"""


def test_the_exported_model_refuses_a_huge_png_fast_in_a_fresh_process(tmp_path):
    """`python -m tf_pyramid.export --max_image_pixels=1000`, then a fresh process: a valid
    20,000 x 20,000 PNG (decoding it took 8.5 s and 2 GB) is refused in well under a second, a
    40 x 40 image is above this limit, the model's own 28 x 28 is decoded."""
    keras.utils.set_random_seed(3)
    model = tf_pyramid.build_model("mnist_bl1", levels=1, num_classes=3)
    model.input_convention = input_convention("mnist", model.input_size).get_config()
    model.save(tmp_path / "model.keras")
    result = run_python(["-m", "tf_pyramid.export", f"--model={tmp_path / 'model.keras'}",
                         f"--export_dir={tmp_path / 'serving'}", "--max_image_pixels=1000"])
    version_dir = result.stdout.strip().splitlines()[-1]
    info = json.loads(open(os.path.join(version_dir, export_lib.INFO_FILE)).read())
    assert info["max_image_pixels"] == 1000
    rng = np.random.default_rng(0)
    paths = [tmp_path / name for name in ("small.png", "medium.png", "huge.png")]
    paths[0].write_bytes(tf.io.encode_png(rng.integers(0, 256, (28, 28, 1), np.uint8)).numpy())
    paths[1].write_bytes(tf.io.encode_png(rng.integers(0, 256, (40, 40, 1), np.uint8)).numpy())
    paths[2].write_bytes(huge_png())
    report = json.loads(run_python(["-c", _CHILD, version_dir, *map(str, paths)],
                                   timeout=120).stdout.strip().splitlines()[-1])
    assert report["ok"] == [1, 3]
    message, seconds = report["huge"]
    assert message is not None and "[is] [20000] [x] [20000] [pixels" in message, message
    assert "more than the 1,000 pixels" in message and seconds < 0.5, (message, seconds)
    assert "[is] [40] [x] [40] [pixels" in report["medium"][0]
