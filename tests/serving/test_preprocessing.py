"""The in-graph serving preprocessing agrees with the evaluation pipelines of tf_pyramid.data."""
import numpy as np
import pytest
import tensorflow as tf

from tf_pyramid.serving import preprocessing


def test_conventions():
    assert preprocessing.value_range_for(1) == (0.0, 1.0)
    assert preprocessing.value_range_for(3) == (-1.0, 1.0)
    assert preprocessing.value_range_for(3, "mnist_textured") == (0.0, 1.0)
    assert preprocessing.value_range_for(1, "imagenet2012") == (-1.0, 1.0)
    assert preprocessing.resize_method_for(1) == "area"
    assert preprocessing.resize_method_for(3, "imagenet2012") == "bilinear"
    assert preprocessing.parse_value_range("-1, 1") == (-1.0, 1.0)
    with pytest.raises(ValueError):
        preprocessing.parse_value_range("1,0")


def test_imagenet_matches_the_evaluation_pipeline():
    image_ops = pytest.importorskip("tf_pyramid.data.image_ops")
    image = np.random.default_rng(0).integers(0, 256, [75, 120, 3]).astype(np.uint8)
    expected = image_ops.value_range(image_ops.resize_antialiased(image, size=64))
    got = preprocessing.prepare_images(image[None].astype(np.float32), 64, 3, (-1.0, 1.0),
                                       "bilinear")[0]
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_mnist_matches_the_evaluation_pipeline():
    mnist = pytest.importorskip("tf_pyramid.data.mnist")
    image = np.random.default_rng(1).integers(0, 256, [56, 56, 1]).astype(np.float32)
    expected = mnist.area_resize(tf.constant(image / 255.0), size=28)
    got = preprocessing.prepare_images(image[None], 28, 1, (0.0, 1.0), "area")[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    same = preprocessing.prepare_images(image[None], 56, 1, (0.0, 1.0), "area")[0]
    np.testing.assert_array_equal(same, image / np.float32(255.0))


def test_decoded_bytes_equal_the_float_path():
    image = np.random.default_rng(2).integers(0, 256, [33, 47, 3]).astype(np.uint8)
    encoded = tf.io.encode_png(image)
    decoded = preprocessing.decode_images(tf.stack([encoded, encoded]), 32, 3, "bilinear")
    floats = preprocessing.resize_images(image[None].astype(np.float32), 32, "bilinear")
    np.testing.assert_array_equal(decoded, tf.concat([floats, floats], 0))
    gray = preprocessing.decode_images(encoded[None], 32, 1, "area")
    assert gray.shape == (1, 32, 32, 1)


# ------------------------------------------------------------------------ every documented format
SIDE = 24  # images are made at the model side, so that the resize is an identity


def _smooth(seed, channels):
    """Smooth 0-255 uint8 [SIDE, SIDE, channels] (JPEG keeps it within a few levels)."""
    small = np.random.default_rng(seed).uniform(0, 255, [6, 6, channels]).astype(np.float32)
    return np.round(tf.image.resize(small, [SIDE, SIDE], "bicubic").numpy().clip(0, 255)).astype(
        np.uint8)


def _pil_bytes(image, fmt, mode=None, **options):
    import io

    from PIL import Image
    picture = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    if mode:
        picture = picture.convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


def _pil_pixels(data, channels):
    """Independent reference: PIL's decode, RGB or (BT.601) grayscale, alpha dropped."""
    import io

    from PIL import Image
    picture = Image.open(io.BytesIO(data))
    if channels == 1 and picture.mode not in ("L", "LA"):
        picture = picture.convert("RGB")
    picture = picture.convert("L" if channels == 1 else "RGB")
    return np.asarray(picture, np.float32).reshape(SIDE, SIDE, channels)


def encoded_files():
    """name -> encoded bytes, for every format the serving docs list (TF and PIL encoders)."""
    rgb, gray, rgba = _smooth(3, 3), _smooth(4, 1), _smooth(5, 4)
    return {
        "png_gray": tf.io.encode_png(gray).numpy(),
        "png_rgb": tf.io.encode_png(rgb).numpy(),
        "png_rgba": tf.io.encode_png(rgba).numpy(),
        "jpeg_gray": tf.io.encode_jpeg(gray, quality=95).numpy(),
        "jpeg_rgb": tf.io.encode_jpeg(rgb, quality=95).numpy(),
        "jpeg_cmyk": _pil_bytes(rgb, "JPEG", mode="CMYK", quality=95),
        "gif": _pil_bytes(rgb, "GIF"),
        "bmp": _pil_bytes(rgb, "BMP"),
        "webp": _pil_bytes(rgb, "WEBP", lossless=True),
    }


# Largest and mean pixel difference to PIL. Lossless formats agree up to the rounding of the
# grayscale conversion. TF's JPEG decoder uses the fast integer IDCT (as the training pipelines),
# some pixels a few levels off; a wrong colour conversion (CMYK, channel order) is off by far more.
TOLERANCE = {"jpeg_gray": (16, 4), "jpeg_rgb": (16, 4), "jpeg_cmyk": (16, 4)}
@pytest.mark.parametrize("channels", [1, 3])
def test_every_documented_format_decodes_for_1_and_3_channels(channels):
    files = encoded_files()
    decode = tf.function(lambda data: preprocessing.decode_images(data, SIDE, channels, "area"),
                         input_signature=[tf.TensorSpec([None], tf.string)])
    decoded = decode(tf.constant(list(files.values()))).numpy()
    assert decoded.shape == (len(files), SIDE, SIDE, channels)
    for (name, data), got in zip(files.items(), decoded):
        expected = _pil_pixels(data, channels)
        largest, mean = TOLERANCE.get(name, (1, 1))
        np.testing.assert_allclose(got, expected, atol=largest, err_msg=name)
        assert np.abs(got - expected).mean() <= mean, name
        assert np.array_equal(got, np.round(got)), name  # 8-bit values, as the decoders give
    # The alpha channel is dropped, not composited.
    rgba = _smooth(5, 4)
    if channels == 3:
        np.testing.assert_array_equal(decoded[2], rgba[..., :3])


def test_webp_and_gif_are_recognised_by_their_headers():
    formats = preprocessing._image_formats(tf.constant([
        encoded_files()["webp"], b"RIFF\x10\x00\x00\x00WAVEfmt ", encoded_files()["gif"],
        b"GIF", b"", b"\x89PNG\r\n\x1a\n", b"BM"])).numpy()
    assert [preprocessing._FORMATS[i] if i >= 0 else None for i in formats] == [
        "WebP", None, "GIF", None, None, "PNG", "BMP"]


@pytest.mark.parametrize("bad,index,match", [
    (b"not an image", 3, "is not an encoded JPEG or PNG image"),
    ("truncated_jpeg", 2, r"could not be decoded \(Invalid JPEG data"),
    ("truncated_png", 1, r"could not be decoded \(Invalid PNG data"),
    # Right header and end marker, broken entropy data: only the decoder can tell.
    (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2 + b"\xff\xd9", 0, r"Invalid JPEG data"),
    ("truncated_webp", 3, r"Invalid WebP data"),
])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_error_for_a_bad_image_names_its_index(bad, index, match, channels):
    files = encoded_files()
    batch = [files["png_gray"], files["gif"], files["jpeg_cmyk"], files["webp"], files["bmp"]]
    if bad == "truncated_jpeg":
        bad = files["jpeg_rgb"][:len(files["jpeg_rgb"]) // 2]
    elif bad == "truncated_png":
        bad = files["png_rgb"][:60]
    elif bad == "truncated_webp":
        bad = files["webp"][:40]
    batch[index] = bad
    decode = tf.function(lambda data: preprocessing.decode_images(data, SIDE, channels),
                         input_signature=[tf.TensorSpec([None], tf.string)])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"image_bytes: element\] \[{index}\] \[.*{match}"):
        decode(tf.constant(batch))
    del batch[index]
    assert decode(tf.constant(batch)).shape == (4, SIDE, SIDE, channels)


@pytest.mark.parametrize("channels", [1, 3])
def test_an_animated_gif_gives_its_first_frame(channels):
    import io

    from PIL import Image
    first, second = _smooth(6, 3), 255 - _smooth(6, 3)
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, "GIF", save_all=True,
                                append_images=[Image.fromarray(second)], duration=100)
    frames = tf.io.decode_gif(buffer.getvalue()).numpy()
    assert frames.shape[0] == 2
    decoded = preprocessing.decode_images(tf.constant([buffer.getvalue()]), SIDE, channels)[0]
    if channels == 3:
        np.testing.assert_array_equal(decoded, frames[0])
    # PIL opens the first frame.
    np.testing.assert_allclose(decoded, _pil_pixels(buffer.getvalue(), channels), atol=1)
