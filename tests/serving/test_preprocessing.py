"""The in-graph serving preprocessing agrees with the evaluation pipelines of tf_pyramid.data."""
import numpy as np
import pytest
import tensorflow as tf

import tf_pyramid
from tf_pyramid.data import InputConvention, input_convention
from tf_pyramid.modeling import ImagePreprocessor
from tests.helpers import IMAGE_SIDE as SIDE
from tests.helpers import encoded_files, pil_pixels, smooth_image
from tf_pyramid.serving import preprocessing

MNIST_28 = input_convention("mnist", 28, mnist_input="symmetric")  # [-1, 1]: easy to check
MNIST_56 = input_convention("mnist", 56, mnist_input="symmetric")
IMAGENET_32 = input_convention("imagenet2012", 32)
IMAGENET_64 = input_convention("imagenet2012", 64)



def _convention(channels, method="area"):
    """Resize to SIDE only (the value range is not used by decode_images)."""
    return InputConvention(SIDE, channels, (0.0, 1.0), method)

def test_conventions():
    assert MNIST_28 == InputConvention(28, 1, (-1.0, 1.0), "area")
    assert IMAGENET_64 == InputConvention(64, 3, (-1.0, 1.0), "bilinear")
    assert InputConvention.from_config(IMAGENET_64.get_config()) == IMAGENET_64
    model = tf_pyramid.build_model("mnist_bl1", levels=2, input_convention=MNIST_28.get_config())
    assert ImagePreprocessor.of_model(model) is model.preprocessor
    assert InputConvention.from_config(model.input_convention) == MNIST_28
    assert ImagePreprocessor.of_model(model, "0, 1").value_range == (0.0, 1.0)
    assert model.preprocessor.value_range == (-1.0, 1.0)  # an override leaves the model's alone
    with pytest.raises(ValueError, match="low < high"):
        ImagePreprocessor.of_model(model, "1,0")
    with pytest.raises(ValueError, match="no input convention"):
        ImagePreprocessor.of_model(tf_pyramid.build_model("mnist_bl1", levels=2))


def test_imagenet_matches_the_evaluation_pipeline():
    image_ops = pytest.importorskip("tf_pyramid.data.image_ops")
    image = np.random.default_rng(0).integers(0, 256, [75, 120, 3]).astype(np.uint8)
    expected = image_ops.value_range(image_ops.resize_antialiased(image, size=64))
    got = preprocessing.prepare_images(image[None].astype(np.float32), IMAGENET_64)[0]
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_mnist_matches_the_evaluation_pipeline():
    mnist = pytest.importorskip("tf_pyramid.data.mnist")
    image = np.random.default_rng(1).integers(0, 256, [56, 56, 1]).astype(np.float32)
    expected = mnist.area_resize(tf.constant(image / 255.0), size=28) * 2.0 - 1.0  # [-1, 1]
    got = preprocessing.prepare_images(image[None], MNIST_28)[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    same = preprocessing.prepare_images(image[None], MNIST_56)[0]
    np.testing.assert_allclose(same, image / np.float32(255.0) * 2.0 - 1.0, atol=1e-6)


def test_decoded_bytes_equal_the_float_path():
    image = np.random.default_rng(2).integers(0, 256, [33, 47, 3]).astype(np.uint8)
    encoded = tf.io.encode_png(image)
    decoded = preprocessing.decode_images(tf.stack([encoded, encoded]), IMAGENET_32)
    floats = ImagePreprocessor.from_convention(IMAGENET_32).resize(image[None].astype(np.float32))
    np.testing.assert_array_equal(decoded, tf.concat([floats, floats], 0))
    gray = preprocessing.decode_images(encoded[None], input_convention("mnist", 32))
    assert gray.shape == (1, 32, 32, 1)


def test_large_jpeg_bytes_decode_as_the_evaluation_pipeline_does():
    """RGB models: a JPEG at least twice the input size is decoded at a reduced DCT scale, as
    in evaluation (`decode_for_size`): the bytes path equals the evaluation pipeline exactly and
    stays within 3.5/255 of the float path on the fully decoded image on average."""
    from skimage import data
    from tf_pyramid.data import image_ops
    photo = tf.cast(tf.round(tf.image.resize(data.astronaut(), [300, 400], antialias=True)),
                    tf.uint8)
    encoded = tf.io.encode_jpeg(photo, quality=90)
    got = preprocessing.decode_images(encoded[None], IMAGENET_64)[0].numpy()  # 0-255
    evaluation = image_ops.resize_antialiased(
        image_ops.decode_for_size(encoded, size=64), size=64).numpy() * 255
    np.testing.assert_allclose(got, evaluation, atol=1e-3)
    assert image_ops.decode_for_size(encoded, size=64).shape[:2] == (75, 100)  # 1/4 scale
    whole = tf.cast(tf.io.decode_jpeg(encoded, channels=3), tf.float32)[None]
    float_path = ImagePreprocessor.from_convention(IMAGENET_64).resize(whole)[0].numpy()
    assert np.abs(got - float_path).mean() < 3.5, np.abs(got - float_path).mean()


# ------------------------------------------------------------------------ every documented format
TOLERANCE = {"jpeg_gray": (16, 4), "jpeg_rgb": (16, 4), "jpeg_cmyk": (16, 4)}
@pytest.mark.parametrize("channels", [1, 3])
def test_every_documented_format_decodes_for_1_and_3_channels(channels):
    files = encoded_files()
    decode = tf.function(lambda data: preprocessing.decode_images(data, _convention(channels)),
                         input_signature=[tf.TensorSpec([None], tf.string)])
    decoded = decode(tf.constant(list(files.values()))).numpy()
    assert decoded.shape == (len(files), SIDE, SIDE, channels)
    for (name, data), got in zip(files.items(), decoded):
        expected = pil_pixels(data, channels)
        largest, mean = TOLERANCE.get(name, (1, 1))
        np.testing.assert_allclose(got, expected, atol=largest, err_msg=name)
        assert np.abs(got - expected).mean() <= mean, name
        assert np.array_equal(got, np.round(got)), name  # 8-bit values, as the decoders give
    # The alpha channel is dropped, not composited.
    rgba = smooth_image(5, 4)
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
    decode = tf.function(lambda data: preprocessing.decode_images(data, _convention(channels)),
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
    first, second = smooth_image(6, 3), 255 - smooth_image(6, 3)
    buffer = io.BytesIO()
    Image.fromarray(first).save(buffer, "GIF", save_all=True,
                                append_images=[Image.fromarray(second)], duration=100)
    frames = tf.io.decode_gif(buffer.getvalue()).numpy()
    assert frames.shape[0] == 2
    decoded = preprocessing.decode_images(tf.constant([buffer.getvalue()]), _convention(channels))[0]
    if channels == 3:
        np.testing.assert_array_equal(decoded, frames[0])
    # PIL opens the first frame.
    np.testing.assert_allclose(decoded, pil_pixels(buffer.getvalue(), channels), atol=1)
