"""The compiled colour kernel (color_kernel, kernels/adjust_color.cc): it builds where there is a
compiler, equals TensorFlow's ops value for value (every order of its steps, edge-case pixels,
inside tf.data), and everything falls back to TensorFlow's ops, with the same images, when it
cannot be used."""
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, SEED, map_over_seeds, python_env
from tf_pyramid.data import color_kernel, image_ops

HAS_COMPILER = color_kernel.find_compiler() is not None
# Every non-empty ordered choice of distinct steps: 3 + 6 + 6 = 15 orders.
ALL_ORDERS = [order for n in (1, 2, 3) for order in itertools.permutations(color_kernel.STEPS, n)]
# (brightness delta, saturation factor, hue delta): the ranges' ends, identity, inner values.
PARAMETERS = [(-32 / 255, 0.5, -0.2), (32 / 255, 1.5, 0.2), (0.0, 1.0, 0.0), (0.07, 0.81, 0.13),
              (-0.02, 1.33, -0.5), (0.1, 0.0, 1.0), (0.0, 1.2, -1.0)]


@pytest.fixture(scope="module")
def kernel():
    module = color_kernel.kernel()
    if module is None:
        pytest.skip(f"the colour kernel is not used here: {color_kernel.why_not()}")
    return module


@pytest.fixture(scope="module")
def photo_and_edges():
    """A photo (float [0, 1]), the kernel's check images, and a batch of odd size (pixels not a
    multiple of the kernel's block or vector width)."""
    from skimage import data
    photo = data.chelsea()[::3, ::3].astype(np.float32) / 255  # 100 x 151
    return [photo, color_kernel.check_images(size=33, seed=5),
            np.random.default_rng(1).uniform(-0.3, 1.3, (2, 7, 5, 3)).astype(np.float32)]


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on this machine")
def test_the_kernel_builds_loads_and_passes_its_check_where_there_is_a_compiler():
    assert color_kernel.kernel() is not None, color_kernel.why_not()
    assert color_kernel.why_not() is None
    assert os.path.exists(color_kernel.library_path())


def test_kernel_equals_tensorflow_ops_value_for_value(kernel, photo_and_edges):
    for images in photo_and_edges:
        for steps in ALL_ORDERS:
            for brightness, saturation, hue in PARAMETERS:
                ours = color_kernel.adjust_color(images, steps, brightness_delta=brightness,
                                                 saturation_factor=saturation, hue_delta=hue)
                theirs = color_kernel._reference(tf.constant(images), steps, brightness,
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
                color_kernel.adjust_color(pixels, steps, brightness_delta=brightness,
                                          saturation_factor=saturation, hue_delta=hue).numpy(),
                color_kernel._reference(tf.constant(pixels), steps, brightness, saturation,
                                        hue).numpy())


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


def test_bad_arguments_are_named(kernel):
    with pytest.raises(ValueError, match="distinct names among"):
        color_kernel.adjust_color(np.zeros([2, 2, 3], np.float32), ("hue", "hue"),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=0.0)
    with pytest.raises(ValueError, match="distinct names among"):
        color_kernel.adjust_color(np.zeros([2, 2, 3], np.float32), ("contrast",),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=0.0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"RGB \[\.\.\., 3\]; got shape"):
        color_kernel.adjust_color(np.zeros([2, 2, 4], np.float32), ("hue",),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"hue_delta must be in \[-1, 1\]"):
        color_kernel.adjust_color(np.zeros([2, 2, 3], np.float32), ("hue",),
                                  brightness_delta=0.0, saturation_factor=1.0, hue_delta=1.5)


def test_the_check_refuses_a_kernel_that_differs_by_one_rounding():
    class OffByOneUlp:
        @staticmethod
        def tf_pyramid_adjust_color(images, brightness, saturation, hue, steps):
            exact = color_kernel._reference(images, steps, brightness, saturation, hue)
            return tf.constant(np.nextafter(exact.numpy(), np.float32(2)))

    reason = color_kernel._self_check(OffByOneUlp)
    assert reason is not None and "differs from TensorFlow's ops" in reason


def test_a_kernel_that_raises_in_its_check_is_refused_not_fatal(monkeypatch, kernel):
    def raising(module):
        raise tf.errors.InvalidArgumentError(None, None, "broken build")

    monkeypatch.setattr(color_kernel, "_self_check", raising)
    module, reason = color_kernel._load()
    assert module is None and "InvalidArgumentError: broken build" in reason


def test_turned_off_by_the_environment_variable(monkeypatch):
    monkeypatch.setenv(color_kernel.ENABLE_VARIABLE, "0")
    assert color_kernel._load() == (None, f"{color_kernel.ENABLE_VARIABLE}=0")


def test_the_cache_key_follows_the_build(monkeypatch, tmp_path):
    monkeypatch.setenv(color_kernel.CACHE_VARIABLE, str(tmp_path))
    path = color_kernel.library_path()
    assert os.path.dirname(path) == str(tmp_path) and path == color_kernel.library_path()
    monkeypatch.setattr(color_kernel, "COMPILE_FLAGS", (("-O2",),))
    other_flags = color_kernel.library_path()
    monkeypatch.setenv("CXX", "clang++")
    assert len({path, other_flags, color_kernel.library_path()}) == 3


_CHILD = """
import json, sys
import numpy as np, tensorflow as tf
from absl import logging
from tf_pyramid.data import color_kernel, image_ops
logging.set_verbosity("info")
image = tf.constant(np.random.default_rng(0).uniform(0, 1, (20, 30, 3)).astype(np.float32))
out = [image_ops.distort_color(image, seed=[3, i]).numpy() for i in range(8)]
np.save(sys.argv[1], np.stack(out))
print(json.dumps({"used": color_kernel.kernel() is not None, "why_not": color_kernel.why_not()}))
"""


def _child_command(output):
    """A fresh process that distorts 8 images into `output` (.npy) and prints the kernel's use."""
    return [sys.executable, "-c", _CHILD, str(output)]


def _child(tmp_path, name, **env):
    result = subprocess.run(_child_command(tmp_path / f"{name}.npy"), cwd=REPO,
                            env=python_env(**env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on this machine")
def test_first_use_builds_once_for_concurrent_processes_and_without_a_compiler_the_images_are_the_same(tmp_path):  # noqa: E501
    """A fresh cache: two processes start at once, one builds and both use the kernel; a process
    that cannot build (no compiler) warns why and uses TensorFlow's ops: same images."""
    cache = tmp_path / "cache"
    children = [subprocess.Popen(_child_command(tmp_path / f"k{i}.npy"),
                                 cwd=REPO, env=python_env(TF_PYRAMID_CACHE_DIR=str(cache)),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(2)]
    outputs = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], outputs[0][1][-3000:]
    assert [json.loads(out)["used"] for out, _ in outputs] == [True, True]
    assert sum("Compiling the colour-distortion kernel" in err for _, err in outputs) == 1
    assert len(list(cache.glob("adjust_color_*.so"))) == 1
    no_compiler = _child(tmp_path, "fallback", TF_PYRAMID_CACHE_DIR=str(tmp_path / "empty"),
                         CXX=str(tmp_path / "no-such-compiler"))
    report = json.loads(no_compiler.stdout.strip().splitlines()[-1])
    assert not report["used"] and "no-such-compiler" in report["why_not"]
    assert "Colour distortion runs on TensorFlow's ops" in no_compiler.stderr
    kernel_images = np.load(tmp_path / "k0.npy")
    np.testing.assert_array_equal(kernel_images, np.load(tmp_path / "k1.npy"))
    np.testing.assert_array_equal(kernel_images, np.load(tmp_path / "fallback.npy"))


def test_tensorflow_ops_only_builds_without_the_kernel_and_gives_the_same_images(kernel):
    """The benchmark's train_tf_colour row: traced inside the context, no kernel op."""
    image = tf.constant(color_kernel.check_images(size=16)[0])

    def op_types(fn):
        graph = tf.function(fn, autograph=False).get_concrete_function().graph.as_graph_def()
        return {node.op for node in graph.node} | {
            node.op for function in graph.library.function for node in function.node_def}

    def distorted():
        return image_ops.distort_color(image, seed=SEED)

    assert "TfPyramidAdjustColor" in op_types(distorted)
    with color_kernel.tensorflow_ops_only():
        assert "TfPyramidAdjustColor" not in op_types(distorted)
        without = distorted().numpy()
    assert "TfPyramidAdjustColor" in op_types(distorted)  # the context is undone
    np.testing.assert_array_equal(without, distorted().numpy())
