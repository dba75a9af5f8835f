"""ImageNet-style augmentation ops (paper A.6.2): each eagerly and in Dataset.map, statistics of
the random choices, ranges and shapes."""
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import CHI2_999, SEED, chi_square_uniform, map_over_seeds, run_both_ways
from tf_pyramid.data import OPS, image_ops

NUM_DRAWS = 400


@pytest.fixture(scope="module")
def small_photo():
    from skimage import data
    return data.chelsea()[::4, ::4]  # 75 x 113 x 3: fast, still a real photograph


def test_registry_lists_every_op_and_rejects_unknown_names():
    expected = {"decode", "decode_for_size", "inception_crop", "decode_and_inception_crop",
                "to_float", "random_resize", "resize_antialiased", "random_flip",
                "distort_color", "value_range", "mnist_canvas", "salt_and_pepper",
                "textured_background", "area_resize"}
    assert expected <= set(OPS.names())
    with pytest.raises(ValueError, match="Unknown preprocessing op 'no_such_op'.*random_flip"):
        OPS.get("no_such_op")
    with pytest.raises(ValueError, match="already registered"):
        OPS.register("random_flip")(lambda image, seed=None: image)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("inception_crop", {"seed": SEED}, None),
    ("to_float", {}, (75, 113, 3)),
    ("random_resize", {"seed": SEED, "size": 32}, (32, 32, 3)),
    ("resize_antialiased", {"size": 48}, (48, 48, 3)),
    ("random_flip", {"seed": SEED}, (75, 113, 3)),
    ("value_range", {}, (75, 113, 3)),
    ("distort_color", {"seed": SEED}, (75, 113, 3)),
])
def test_op_runs_eagerly_and_in_dataset_map(small_photo, name, kwargs, shape):
    image = small_photo if name in ("inception_crop", "to_float", "random_resize",
                                    "resize_antialiased") else small_photo / np.float32(255)
    out = run_both_ways(OPS.get(name), image, **kwargs).numpy()
    if shape is not None:
        assert out.shape == shape
    if name in ("to_float", "random_resize", "resize_antialiased", "random_flip",
                "distort_color"):
        assert out.dtype == np.float32 and out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    if name == "value_range":
        np.testing.assert_allclose(out, image * 2 - 1, atol=1e-6)


def test_decode_ops_on_bytes_eagerly_and_in_dataset_map(image_files):
    for name in ("colour.jpg", "photo.png", "gray.jpg", "cmyk.jpg", "png_named.jpg"):
        encoded = image_files[name][0]
        full = run_both_ways(image_ops.decode_image, encoded).numpy()
        assert full.ndim == 3 and full.shape[-1] == 3 and full.dtype == np.uint8
        crop = run_both_ways(image_ops.decode_and_inception_crop, encoded, seed=SEED).numpy()
        assert crop.shape[-1] == 3
        assert crop.shape[0] * crop.shape[1] >= 0.85 * full.shape[0] * full.shape[1] - 1


def test_gray_and_cmyk_are_converted_to_rgb(image_files):
    gray = image_ops.decode_image(image_files["gray.jpg"][0]).numpy().astype(int)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    colour = image_ops.decode_image(image_files["colour.jpg"][0]).numpy().astype(float)
    cmyk = image_ops.decode_image(image_files["cmyk.jpg"][0]).numpy().astype(float)
    assert np.abs(colour - cmyk).mean() < 8  # same photo: CMYK decoded to the right colours


def test_decode_and_crop_is_decode_then_crop(image_files):
    encoded = image_files["colour.jpg"][0]
    fused = image_ops.decode_and_inception_crop(encoded, seed=SEED).numpy()
    plain = image_ops.inception_crop(image_ops.decode_image(encoded), seed=SEED).numpy()
    np.testing.assert_array_equal(fused, plain)


@pytest.mark.parametrize("with_box", [False, True])
def test_crop_windows_respect_area_and_aspect_ranges(with_box):
    height, width = 375, 500
    boxes = tf.constant([[0.2, 0.1, 0.9, 0.7]]) if with_box else None
    windows = map_over_seeds(
        lambda seed: image_ops.sample_crop_window([height, width], seed, boxes), NUM_DRAWS)
    y, x, h, w = windows.T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= height).all() and (x + w <= width).all()
    area = h * w / (height * width)
    aspect = w / h
    assert area.min() >= 0.85 - 0.01 and area.max() <= 1.0
    assert aspect.min() >= 0.5 - 0.01 and aspect.max() <= 2.0 + 0.01
    assert (area < 0.95).mean() > 0.2, "crops should spread over the area range, not stay whole"
    assert len({tuple(row) for row in windows}) > NUM_DRAWS // 2


def test_resize_method_is_uniform_and_the_drawn_method_is_the_one_applied(small_photo):
    image = tf.constant(small_photo)

    def draw(seed):
        return image_ops.random_resize_with_choice(image, seed=seed, size=24)

    resized, choices = map_over_seeds(draw, NUM_DRAWS)
    counts = np.bincount(choices, minlength=len(image_ops.RESIZE_METHODS))
    assert len(counts) == 4 and counts.min() > 0
    assert chi_square_uniform(counts) < CHI2_999[3], counts
    # The trap of the original TF1 code: a selector whose branches ignore their input returns whichever
    # method finishes first. Here every output must be exactly the drawn method's resize.
    references = [np.clip(tf.image.resize(tf.image.convert_image_dtype(image, tf.float32),
                                          [24, 24], method=m).numpy(), 0, 1)
                  for m in image_ops.RESIZE_METHODS]  # plain kernels: no antialiasing
    distinct = {(i, j) for i in range(4) for j in range(i + 1, 4)
                if np.abs(references[i] - references[j]).max() > 1e-3}
    assert len(distinct) == 6, "the four methods must give different images on a photo"
    for out, choice in zip(resized, choices):
        np.testing.assert_allclose(out, references[choice], atol=1e-5)


def test_colour_ordering_is_uniform_and_the_drawn_ordering_is_applied(small_photo):
    image = tf.constant(small_photo / np.float32(255))

    def draw(seed):
        return image_ops.distort_color_with_choice(image, seed=seed) + (seed,)

    out, orderings, seeds = map_over_seeds(draw, NUM_DRAWS)
    counts = np.bincount(orderings, minlength=len(image_ops.COLOR_ORDERINGS))
    assert len(counts) == 4 and counts.min() > 0
    assert chi_square_uniform(counts) < CHI2_999[3], counts
    assert out.min() >= 0.0 and out.max() <= 1.0
    order_matters = 0
    for i in range(12):  # each output equals its ordering applied by hand
        op_seeds = image_ops.split_seed(seeds[i], 5)[1:]
        by_hand = [image_ops.apply_color_ordering(image, k, op_seeds).numpy() for k in range(4)]
        np.testing.assert_allclose(out[i], by_hand[orderings[i]], atol=1e-5)
        order_matters += max(np.abs(out[i] - by_hand[k]).max() for k in range(4)) > 1e-2
    # Brightness/contrast and hue/saturation commute, mixed pairs do not: the order shows,
    # except when all four factors happen to be drawn near identity.
    assert order_matters >= 6


def test_flip_is_a_fair_coin(small_photo):
    image = tf.constant(small_photo)
    outputs = map_over_seeds(lambda seed: image_ops.random_flip(image, seed=seed), 8)
    for out in outputs:  # every output is the image or its mirror
        assert np.array_equal(out, small_photo) or np.array_equal(out, small_photo[:, ::-1])
    flipped = map_over_seeds(
        lambda seed: tf.reduce_any(image_ops.random_flip(image, seed=seed) != image), NUM_DRAWS)
    assert 0.4 < flipped.mean() < 0.6


def test_same_seed_same_result_other_seed_other_result(small_photo):
    image = tf.constant(small_photo / np.float32(255))
    a = image_ops.distort_color(image, seed=SEED).numpy()
    b = image_ops.distort_color(image, seed=SEED).numpy()
    c = image_ops.distort_color(image, seed=SEED + 1).numpy()
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_eval_resize_is_antialiased_and_keeps_flat_images_flat():
    stripes = np.zeros([256, 256, 3], np.uint8)
    stripes[:, ::2] = 255  # 1-px stripes: aliasing would give 0 or 255, antialiasing ~127
    out = image_ops.resize_antialiased(stripes, size=32).numpy()
    assert np.abs(out - 0.5).max() < 0.05
    flat = image_ops.resize_antialiased(np.full([90, 70, 3], 51, np.uint8), size=40).numpy()
    np.testing.assert_allclose(flat, 0.2, atol=1e-5)


@pytest.mark.parametrize("shape,size,halvings", [
    ((375, 500), 256, 0), ((375, 500), 128, 1), ((500, 375), 64, 2), ((300, 451), 32, 3),
    ((60, 90), 128, 0), ((7, 300), 16, 4), ((256, 256), 32, 2), ((512, 384), 64, 2)])
def test_eval_resize_is_bilinear_then_exact_block_averages(rng, shape, size, halvings):
    """resize_antialiased = bilinear to size * 2**k (shrinking <= 2x), then 2**k x 2**k block
    means (computed here in numpy); eagerly, in Dataset.map and on a batch alike."""
    image = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
    assert int(image_ops.antialias_halvings(*shape, size)) == halvings
    factor = 2 ** halvings
    bilinear = tf.image.resize(image.astype(np.float32) / 255, [size * factor] * 2).numpy()
    expected = bilinear.reshape(size, factor, size, factor, 3).mean(axis=(1, 3))
    out = run_both_ways(image_ops.resize_antialiased, image, size=size).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    batch = image_ops.resize_antialiased(tf.constant(np.stack([image, image[::-1]]),
                                                     tf.float32), size=size).numpy()
    np.testing.assert_allclose(batch[0] / 255, expected, atol=1e-5)  # float keeps its scale
    np.testing.assert_allclose(batch[1] / 255, run_both_ways(
        image_ops.resize_antialiased, image[::-1], size=size).numpy(), atol=1e-5)


@pytest.mark.parametrize("shape,size", [((375, 500), 256), ((188, 250), 128), ((375, 500), 128),
                                        ((60, 90), 128), ((40, 30), 40)])
def test_eval_resize_maps_to_the_value_range_as_value_range_does(rng, shape, size):
    """`resize_antialiased(..., value_range=(-1, 1))` (the evaluation pipeline's one op) equals
    `value_range(resize_antialiased(...))` value for value: with no halvings (one pass of the
    compiled kernel where it is used) and with some, on uint8 and float, eagerly and in
    Dataset.map."""
    image = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
    for pixels in (image, image.astype(np.float32) / 255):
        fused = run_both_ways(image_ops.resize_antialiased, pixels, size=size,
                              value_range=(-1.0, 1.0)).numpy()
        separate = image_ops.value_range(image_ops.resize_antialiased(pixels, size=size))
        np.testing.assert_array_equal(fused, separate.numpy())
        assert fused.min() >= -1 and fused.max() <= 1


def test_eval_resize_is_close_to_tf_antialiasing_and_an_identity_at_its_size(small_photo):
    """On a photo, shrinking 3-5x: within ~2/255 of TF's (4x dearer) antialiased resize on
    average, less than half the error of a plain bilinear resize, which aliases."""
    from skimage import data
    photo = tf.image.resize(data.astronaut(), [375, 500], antialias=True) / 255
    for size in (128, 96):
        tf_aa = tf.image.resize(photo, [size, size], antialias=True).numpy()
        plain = tf.image.resize(photo, [size, size]).numpy()
        ours = image_ops.resize_antialiased(photo, size=size).numpy()
        ours_error, plain_error = np.abs(ours - tf_aa).mean(), np.abs(plain - tf_aa).mean()
        assert ours_error < 2.5 / 255 and ours_error < 0.5 * plain_error, (ours_error,
                                                                           plain_error)
    same = image_ops.resize_antialiased(small_photo[:64, :64], size=64).numpy()
    np.testing.assert_allclose(same, small_photo[:64, :64] / np.float32(255), atol=1e-7)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_nearest_gather_is_tf_nearest_bit_for_bit(dtype, rng):
    for height, width in ((75, 113), (375, 500), (500, 375), (7, 300), (256, 256), (1, 1)):
        image = rng.integers(0, 256, [height, width, 3]).astype(dtype)
        for size in (1, 14, 64, 224, 256, 299):
            expected = tf.image.resize(image, [size, size], method="nearest").numpy()
            eager = image_ops._nearest(tf.constant(image), size).numpy()
            mapped = next(iter(tf.data.Dataset.from_tensors(image).map(
                lambda x, size=size: image_ops._nearest(x, size))))
            assert eager.dtype == dtype
            np.testing.assert_array_equal(eager, expected.astype(dtype))
            np.testing.assert_array_equal(mapped.numpy(), eager)


@pytest.mark.parametrize("size", [24, 64, 150])
def test_every_resize_branch_matches_tf_resize(small_photo, size):
    """Each method of random_resize against tf.image.resize on [0, 1] floats, no antialiasing
    (as the paper and its code), shrinking 4.7x and 1.8x, and enlarging."""
    image = tf.constant(small_photo)
    resized, choices = map_over_seeds(
        lambda seed: image_ops.random_resize_with_choice(image, seed=seed, size=size), 64)
    assert set(choices) == {0, 1, 2, 3}
    as_float = tf.image.convert_image_dtype(image, tf.float32)
    for out, choice in zip(resized, choices):
        method = image_ops.RESIZE_METHODS[choice]
        expected = np.clip(tf.image.resize(as_float, [size, size], method=method).numpy(),
                           0, 1)
        np.testing.assert_allclose(out, expected, atol=1e-5)
        assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_distort_color_without_clip_then_value_range_equals_clipped(small_photo):
    """The training chain leaves distort_color's clip to value_range: same images."""
    image = small_photo / np.float32(255)
    for i in range(8):
        seed = tf.constant([5, i], tf.int64)
        clipped = run_both_ways(image_ops.distort_color, image, seed=seed).numpy()
        raw = run_both_ways(image_ops.distort_color, image, seed=seed, clip=False).numpy()
        np.testing.assert_allclose(np.clip(raw, 0, 1), clipped, atol=1e-6)
        np.testing.assert_allclose(image_ops.value_range(raw).numpy(),
                                   image_ops.value_range(clipped).numpy(), atol=1e-6)
    # Unclipped outputs do leave [0, 1] (brightness, contrast), so the clip is not a no-op.
    raws = map_over_seeds(lambda seed: image_ops.distort_color(
        tf.constant(image), seed=seed, clip=False), 32)
    assert raws.min() < 0 or raws.max() > 1


@pytest.fixture(scope="module")
def jpeg_500x375():
    from skimage import data
    photo = tf.image.resize(data.astronaut(), [375, 500], antialias=True)
    return tf.io.encode_jpeg(tf.cast(tf.round(photo), tf.uint8), quality=90).numpy()


@pytest.mark.parametrize("size,ratio", [(200, 1), (188, 1), (187, 2), (128, 2), (94, 2),
                                        (93, 4), (64, 4), (46, 8), (16, 8)])
def test_decode_for_size_takes_the_smallest_jpeg_scale_that_keeps_size(jpeg_500x375, size,
                                                                      ratio):
    """Short side 375: scale 1/r while 375 >= r * size (r <= 8); bit for bit libjpeg's scaled
    decode, eagerly and in Dataset.map."""
    out = run_both_ways(image_ops.decode_for_size, jpeg_500x375, size=size).numpy()
    expected = tf.io.decode_jpeg(jpeg_500x375, channels=3, ratio=ratio).numpy()
    assert out.dtype == np.uint8 and out.shape == expected.shape
    assert min(out.shape[:2]) >= size
    np.testing.assert_array_equal(out, expected)


def test_decode_for_size_decodes_other_formats_and_odd_jpegs_whole(image_files):
    for name in ("photo.png", "png_named.jpg", "gray.jpg", "cmyk.jpg"):
        encoded = image_files[name][0]
        whole = image_ops.decode_image(encoded).numpy()
        out = run_both_ways(image_ops.decode_for_size, encoded, size=8).numpy()
        assert out.shape[-1] == 3 and out.dtype == np.uint8
        if name.endswith(".png") or name == "png_named.jpg":
            np.testing.assert_array_equal(out, whole)
        else:  # grayscale and CMYK JPEGs: RGB at 1/8 scale, as close to the whole as it gets
            assert out.shape[:2] == tuple(-(-np.array(whole.shape[:2]) // 8))
            shrunk = tf.image.resize(whole, out.shape[:2], antialias=True).numpy()
            assert np.abs(out - shrunk).mean() < 6, name
    with pytest.raises(tf.errors.InvalidArgumentError):
        image_ops.decode_for_size(image_files["zz_garbled.jpg"][0], size=8)


@pytest.mark.parametrize("size", [128, 96, 64])
def test_reduced_jpeg_decode_then_resize_is_antialiased(jpeg_500x375, size):
    """The evaluation path (`decode_for_size`, then `resize_antialiased`) against TF's
    antialiased resize of the whole decoded image: closer than a plain bilinear resize, which
    aliases (at 96 and 64 px, less than 0.6x its error), and within 3.5/255 of the whole-image
    mip-map path on average (libjpeg's scaled inverse DCT is a sharper low-pass than TF's tent
    filter)."""
    whole = tf.io.decode_jpeg(jpeg_500x375, channels=3)
    reference = tf.image.resize(tf.cast(whole, tf.float32) / 255, [size, size],
                                antialias=True).numpy()
    reduced = image_ops.resize_antialiased(
        image_ops.decode_for_size(jpeg_500x375, size=size), size=size).numpy()
    mipmap = image_ops.resize_antialiased(whole, size=size).numpy()
    plain = tf.image.resize(tf.cast(whole, tf.float32) / 255, [size, size]).numpy()
    reduced_error, plain_error = (np.abs(x - reference).mean() for x in (reduced, plain))
    assert reduced_error < 5 / 255 and reduced_error < plain_error, (reduced_error,
                                                                       plain_error)
    if size < 128:
        assert reduced_error < 0.6 * plain_error, (reduced_error, plain_error)
    assert np.abs(reduced - mipmap).mean() < 3.5 / 255


def test_reduced_jpeg_decode_averages_stripes_away():
    """1-px stripes (0 / 255) shrunk 3x: decoded at 1/2 scale, then resized, they come out
    mid-grey (aliasing would show stripes of 0 and 255)."""
    stripes = np.zeros([384, 512, 3], np.uint8)
    stripes[:, ::2] = 255
    encoded = tf.io.encode_jpeg(stripes, quality=100)
    assert image_ops.decode_for_size(encoded, size=128).shape[:2] == (192, 256)
    out = image_ops.resize_antialiased(image_ops.decode_for_size(encoded, size=128),
                                       size=128).numpy()
    assert np.abs(out - 0.5).max() < 0.06, np.abs(out - 0.5).max()
