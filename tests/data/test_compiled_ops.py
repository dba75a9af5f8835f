"""The compiled kernels (compiled_ops; kernels/adjust_color.cc, kernels/resize_bilinear.cc): they
build (`python -m tf_pyramid.build_kernels`, once per session: conftest's `compiled_kernels`)
where there is a compiler, equal TensorFlow's ops value for value (every order of the colour
steps, edge-case pixels, every kind of resize, inside tf.data), and everything falls back to
TensorFlow's ops, with the same images, when they cannot be used."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, SEED, map_over_seeds, python_env
from tf_pyramid.data import compiled_ops, image_ops

HAS_COMPILER = compiled_ops.find_compiler() is not None
# Every non-empty ordered choice of distinct steps: 3 + 6 + 6 = 15 orders.
ALL_ORDERS = [order for n in (1, 2, 3) for order in itertools.permutations(compiled_ops.STEPS, n)]
# (brightness delta, saturation factor, hue delta): the ranges' ends, identity, inner values.
PARAMETERS = [(-32 / 255, 0.5, -0.2), (32 / 255, 1.5, 0.2), (0.0, 1.0, 0.0), (0.07, 0.81, 0.13),
              (-0.02, 1.33, -0.5), (0.1, 0.0, 1.0), (0.0, 1.2, -1.0)]


@pytest.fixture(scope="module")
def kernel(compiled_kernels):
    module = compiled_ops.library()
    if module is None:
        pytest.skip(f"the compiled kernels are not used here: {compiled_ops.why_not()}")
    return module


@pytest.fixture(scope="module")
def photo_and_edges():
    """A photo (float [0, 1]), the kernel's check images, and a batch of odd size (pixels not a
    multiple of the kernel's block or vector width)."""
    from skimage import data
    photo = data.chelsea()[::3, ::3].astype(np.float32) / 255  # 100 x 151
    return [photo, compiled_ops.check_images(size=33, seed=5),
            np.random.default_rng(1).uniform(-0.3, 1.3, (2, 7, 5, 3)).astype(np.float32)]


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on this machine")
def test_the_kernel_builds_loads_and_passes_its_check_where_there_is_a_compiler(
        compiled_kernels):
    assert compiled_ops.library() is not None, compiled_ops.why_not()
    assert compiled_ops.why_not() is None
    assert compiled_kernels == compiled_ops.library_path() and os.path.exists(compiled_kernels)
    manifest = json.loads(open(compiled_ops.manifest_path(compiled_kernels)).read())
    assert manifest["check"] == "passed" and len(manifest["sha256"]) == 64


def test_kernel_equals_tensorflow_ops_value_for_value(kernel, photo_and_edges):
    for images in photo_and_edges:
        for steps in ALL_ORDERS:
            for brightness, saturation, hue in PARAMETERS:
                ours = compiled_ops.adjust_color(images, steps, brightness_delta=brightness,
                                                 saturation_factor=saturation, hue_delta=hue)
                theirs = compiled_ops._reference_color(tf.constant(images), steps, brightness,
                                                 saturation, hue)
                np.testing.assert_array_equal(ours.numpy(), theirs.numpy(),
                                              err_msg=f"{steps} {brightness, saturation, hue}")


def test_the_pixels_where_tensorflow_has_special_cases(kernel):
    """Greys (no hue), pixels whose maximum is <= 0 (saturation makes them grey), ties between
    channels, a hue that rounds to a full turn, values out of [0, 1]."""
    pixels = np.array([[0.5, 0.5, 0.5], [0, 0, 0], [-0.1, -0.2, -0.05], [-0.1, 0.3, 0.3],
                       [0.3, 0.3, 0.1], [0.3, 0.1, 0.3], [0.1, 0.3, 0.3], [1.2, 0.5, -0.1],
                       [1e-8, 0, 0], [0.2, 0.2, 0.2 - 1e-8], [1, 0, 1e-7], [0.7, 0.7, 0.71]],
                      np.float32)[None]
    for steps in ALL_ORDERS:
        for brightness, saturation, hue in PARAMETERS + [(0.0, 1.0, -1e-9), (0.0, 2.0, 1e-9)]:
            np.testing.assert_array_equal(
                compiled_ops.adjust_color(pixels, steps, brightness_delta=brightness,
                                          saturation_factor=saturation, hue_delta=hue).numpy(),
                compiled_ops._reference_color(tf.constant(pixels), steps, brightness,
                                              saturation, hue).numpy())


def test_distort_color_equals_the_tf_image_random_ops_eagerly_and_in_dataset_map(kernel):
    """The training op, kernel inside, against tf.image.stateless_random_* in each ordering."""
    from skimage import data
    image = tf.constant(data.astronaut()[::8, ::8].astype(np.float32) / 255)
    tf_ops = {
        "brightness": lambda x, s: tf.image.stateless_random_brightness(
            x, image_ops.BRIGHTNESS_MAX_DELTA, s),
        "saturation": lambda x, s: tf.image.stateless_random_saturation(
            x, *image_ops.SATURATION_RANGE, s),
        "hue": lambda x, s: tf.image.stateless_random_hue(x, image_ops.HUE_MAX_DELTA, s),
        "contrast": lambda x, s: tf.image.stateless_random_contrast(
            x, *image_ops.CONTRAST_RANGE, s),
    }

    def both(seed):
        out, ordering = image_ops.distort_color_with_choice(image, seed=seed)
        seeds = image_ops.split_seed(seed, 5)
        by_tf = [image for _ in range(4)]
        for k, order in enumerate(image_ops.COLOR_ORDERINGS):
            for name in order:
                by_tf[k] = tf_ops[name](by_tf[k], seeds[1 + list(tf_ops).index(name)])
        return out, tf.clip_by_value(tf.gather(tf.stack(by_tf), ordering), 0.0, 1.0), ordering

    mapped, by_tf, orderings = map_over_seeds(both, 40)
    assert set(orderings) == {0, 1, 2, 3}
    np.testing.assert_array_equal(mapped, by_tf)
    eager = image_ops.distort_color(image, seed=SEED).numpy()
    in_map = next(iter(tf.data.Dataset.from_tensors(image).map(
        lambda x: image_ops.distort_color(x, seed=SEED)))).numpy()
    np.testing.assert_array_equal(eager, in_map)


# (input [N,] H, W; output size): shrinks by up to 2x (the vector path) and by more (value by
# value), enlargements, the same size, one pixel, a batch, widths no multiple of 8 values.
RESIZES = [((375, 500), (256, 256)), ((500, 375), (256, 256)), ((188, 250), (128, 128)),
           ((375, 500), (128, 96)), ((61, 250), (20, 30)), ((7, 5), (16, 23)), ((1, 1), (3, 2)),
           ((40, 40), (40, 40)), ((3, 33, 47), (32, 32)), ((5, 1000), (5, 100)), ((2, 3), (1, 1))]
# (scale, value_range): as TensorFlow's resize alone, as in training, as in evaluation, with the
# clip doing something, with a range whose float32 span is not exact.
RESIZE_PARAMETERS = [(1.0, None), (1 / 255, None), (1 / 255, (-1.0, 1.0)), (1.0, (0.0, 255.0)),
                     (1 / 255, (0.1, 0.7))]


def test_resize_kernel_equals_tensorflow_ops_value_for_value(kernel):
    rng = np.random.default_rng(3)
    for shape, size in RESIZES:
        images = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
        for scale, value_range in RESIZE_PARAMETERS:
            ours = compiled_ops.resize_bilinear(images, size, scale=scale,
                                                value_range=value_range).numpy()
            theirs = tf.image.resize(images, size) * scale
            if value_range is not None:
                theirs = image_ops.value_range(theirs, low=value_range[0], high=value_range[1])
            assert ours.shape == theirs.shape == (*shape[:-2], *size, 3)
            np.testing.assert_array_equal(ours, theirs.numpy(),
                                          err_msg=f"{shape} -> {size}, {scale}, {value_range}")


def test_resize_kernel_in_dataset_map_and_its_static_shape(kernel):
    """Inside tf.data (a graph, an unknown input size) the op gives the eager values, and its
    output shape is static where the size is a constant."""
    from skimage import data
    photo = tf.constant(data.chelsea())  # 300 x 451

    def resize(image):
        return compiled_ops.resize_bilinear(image, [96, 128], scale=1 / 255,
                                            value_range=(-1.0, 1.0))

    dataset = tf.data.Dataset.from_tensors(photo).map(resize)
    assert dataset.element_spec.shape == (96, 128, 3)
    np.testing.assert_array_equal(next(iter(dataset)).numpy(), resize(photo).numpy())
    expected = image_ops.value_range(tf.image.resize(photo, [96, 128]) * (1 / 255))
    np.testing.assert_array_equal(resize(photo).numpy(), expected.numpy())


def test_resize_input_the_kernel_does_not_take_runs_tensorflow_ops(kernel):
    """Float, 4-channel and grey input: TensorFlow's ops (no kernel op in the graph), same
    values; the op itself names what it takes."""
    rng = np.random.default_rng(4)
    for image in (rng.uniform(0, 255, (20, 30, 3)).astype(np.float32),
                  rng.integers(0, 256, (20, 30, 4)).astype(np.uint8),
                  rng.integers(0, 256, (20, 30, 1)).astype(np.uint8)):
        graph = tf.function(lambda: compiled_ops.resize_bilinear(image, [9, 11], scale=0.5),
                            autograph=False).get_concrete_function().graph.as_graph_def()
        assert "TfPyramidResizeBilinear" not in {node.op for node in graph.node}
        np.testing.assert_array_equal(
            compiled_ops.resize_bilinear(image, [9, 11], scale=0.5).numpy(),
            (tf.image.resize(image, [9, 11]) * 0.5).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"uint8 RGB \[H, W, 3\]"):
        kernel.tf_pyramid_resize_bilinear(np.zeros([4, 4, 4], np.uint8), [2, 2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="size must be positive"):
        kernel.tf_pyramid_resize_bilinear(np.zeros([4, 4, 3], np.uint8), [0, 2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="must not be empty"):
        kernel.tf_pyramid_resize_bilinear(np.zeros([0, 4, 3], np.uint8), [2, 2])


def test_bad_arguments_are_named(kernel):
    with pytest.raises(ValueError, match="distinct names among"):
        compiled_ops.adjust_color(np.zeros([2, 2, 3], np.float32), ("hue", "hue"),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=0.0)
    with pytest.raises(ValueError, match="distinct names among"):
        compiled_ops.adjust_color(np.zeros([2, 2, 3], np.float32), ("contrast",),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=0.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"RGB \[\.\.\., 3\]; got shape"):
        compiled_ops.adjust_color(np.zeros([2, 2, 4], np.float32), ("hue",),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"hue_delta must be in \[-1, 1\]"):
        compiled_ops.adjust_color(np.zeros([2, 2, 3], np.float32), ("hue",),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=1.5)


def _one_ulp_up(values):
    return tf.constant(np.nextafter(values.numpy(), np.float32(2)))


@pytest.mark.parametrize("wrong", ["colour", "resize"])
def test_the_check_refuses_a_kernel_that_differs_by_one_rounding(wrong):
    class OffByOneUlp:
        @staticmethod
        def tf_pyramid_adjust_color(images, brightness, saturation, hue, steps):
            exact = compiled_ops._reference_color(images, steps, brightness, saturation, hue)
            return _one_ulp_up(exact) if wrong == "colour" else exact

        @staticmethod
        def tf_pyramid_resize_bilinear(images, size, scale, map_to_range, range_low,
                                       range_span):
            exact = compiled_ops._reference_resize(
                images, size, scale, (range_low, range_low + range_span) if map_to_range else None)
            return _one_ulp_up(exact) if wrong == "resize" else exact

    reason = compiled_ops._self_check(OffByOneUlp)
    assert reason is not None and f"the {wrong} kernel differs from TensorFlow's ops" in reason


def test_a_kernel_that_raises_in_its_check_is_refused_not_fatal(monkeypatch, kernel):
    def raising(module):
        raise tf.errors.InvalidArgumentError(None, None, "broken build")

    monkeypatch.setattr(compiled_ops, "_self_check", raising)
    module, reason = compiled_ops._load()
    assert module is None and "InvalidArgumentError: broken build" in reason


def test_turned_off_by_the_environment_variable(monkeypatch):
    monkeypatch.setenv(compiled_ops.ENABLE_VARIABLE, "0")
    assert compiled_ops._load() == (None, f"{compiled_ops.ENABLE_VARIABLE}=0")


def test_the_cache_key_follows_the_build(monkeypatch, tmp_path):
    monkeypatch.setenv(compiled_ops.CACHE_VARIABLE, str(tmp_path))
    path = compiled_ops.library_path()
    assert os.path.dirname(path) == str(tmp_path) and path == compiled_ops.library_path()
    monkeypatch.setattr(compiled_ops, "COMPILE_FLAGS", (("-O2",),))
    other_flags = compiled_ops.library_path()
    monkeypatch.setenv("CXX", "clang++")
    assert len({path, other_flags, compiled_ops.library_path()}) == 3


_CHILD = """
import json, sys
import numpy as np, tensorflow as tf
from absl import logging
from tf_pyramid.data import compiled_ops, image_ops
logging.set_verbosity("info")
image = tf.constant(np.random.default_rng(0).uniform(0, 1, (20, 30, 3)).astype(np.float32))
pixels = tf.constant(np.random.default_rng(1).integers(0, 256, (45, 61, 3)).astype(np.uint8))
out = [image_ops.distort_color(image, seed=[3, i]).numpy() for i in range(8)]
resized = [image_ops.resize_antialiased(pixels, size=s, value_range=(-1, 1)).numpy()
           for s in (24, 40)]
np.savez(sys.argv[1], colour=np.stack(out), resized_24=resized[0], resized_40=resized[1])
print(json.dumps({"used": compiled_ops.library() is not None, "why_not": compiled_ops.why_not()}))
"""


def _child_command(output):
    """A fresh process that distorts 8 images and resizes one twice into `output` (.npz) and
    prints whether the kernels were used."""
    return [sys.executable, "-c", _CHILD, str(output)]


def _child(tmp_path, name, **env):
    result = subprocess.run(_child_command(tmp_path / f"{name}.npz"), cwd=REPO,
                            env=python_env(**env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on this machine")
def test_pipelines_load_the_built_kernels_never_compile_and_without_them_give_the_same_images(
        tmp_path, compiled_kernels):
    """A process with the built library uses it; one whose cache holds none uses TensorFlow's
    ops, says in one warning how to build the kernels, writes nothing (no compiler runs, no
    cache folder appears): same images."""
    with_kernels = _child(tmp_path, "kernels")
    assert json.loads(with_kernels.stdout.strip().splitlines()[-1]) == {"used": True,
                                                                         "why_not": None}
    empty = tmp_path / "empty"
    without = _child(tmp_path, "fallback", TF_PYRAMID_CACHE_DIR=str(empty))
    report = json.loads(without.stdout.strip().splitlines()[-1])
    assert not report["used"] and "python -m tf_pyramid.build_kernels" in report["why_not"]
    warnings = [line for line in without.stderr.splitlines()
                if "The input pipeline runs on TensorFlow's ops" in line]
    assert len(warnings) == 1 and "tf_pyramid.build_kernels" in warnings[0]
    assert "Compiling" not in without.stderr and not empty.exists()
    kernel_images = np.load(tmp_path / "kernels.npz")
    for name in ("colour", "resized_24", "resized_40"):
        np.testing.assert_array_equal(kernel_images[name],
                                      np.load(tmp_path / "fallback.npz")[name])


_PORTABLE_CHILD = """
import json
from tf_pyramid.data import compiled_ops
compiled_ops.COMPILE_FLAGS = (compiled_ops.COMPILE_FLAGS[-1],)  # the fallback: no -march=native
compiled_ops.build()  # compiles, checks, and keeps the checked library for this process
print(json.dumps({"used": compiled_ops.library() is not None, "why_not": compiled_ops.why_not()}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on this machine")
def test_the_portable_build_passes_the_check_too(tmp_path):
    """The build without -march=native (SSE2 on x86-64: the colour kernel's 4-float vectors, the
    resize kernel's value-by-value path), which machines without AVX2 run, equals TensorFlow's
    ops on the check images as well."""
    result = subprocess.run([sys.executable, "-c", _PORTABLE_CHILD], cwd=REPO,
                            env=python_env(TF_PYRAMID_CACHE_DIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"used": True, "why_not": None}
    assert len(list(tmp_path.glob("tf_pyramid_ops_*.so"))) == 1


def test_tensorflow_ops_only_builds_without_the_kernel_and_gives_the_same_images(kernel):
    """The benchmark's *_tf_ops rows: traced inside the context, no kernel op."""
    image = tf.constant(compiled_ops.check_images(size=16)[0])
    pixels = tf.constant(compiled_ops.resize_check_image((30, 41)))
    kernel_ops = {"TfPyramidAdjustColor", "TfPyramidResizeBilinear"}

    def op_types(fn):
        graph = tf.function(fn, autograph=False).get_concrete_function().graph.as_graph_def()
        return {node.op for node in graph.node} | {
            node.op for function in graph.library.function for node in function.node_def}

    def augmented():
        return (image_ops.distort_color(image, seed=SEED),
                image_ops.resize_antialiased(pixels, size=20, value_range=(-1.0, 1.0)),
                image_ops.random_resize(pixels, seed=[0, 6], size=24))  # draws bilinear

    assert image_ops.random_resize_with_choice(pixels, seed=[0, 6], size=24)[1] == 0
    assert op_types(augmented) >= kernel_ops
    with compiled_ops.tensorflow_ops_only():
        assert not op_types(augmented) & kernel_ops
        without = [x.numpy() for x in augmented()]
    assert op_types(augmented) >= kernel_ops  # the context is undone
    for theirs, ours in zip(without, augmented()):
        np.testing.assert_array_equal(theirs, ours.numpy())
