"""The input pipeline's compiled kernels: TensorFlow's values, faster (docs/data.md).

* `adjust_color` (`kernels/adjust_color.cc`): a run of brightness / saturation / hue steps in one
  SIMD pass. TensorFlow's saturation and hue ops convert every pixel to HSV and back in scalar,
  branchy code, and were the most expensive steps of the training pipeline.
* `resize_bilinear` (`kernels/resize_bilinear.cc`): bilinear resize of uint8 RGB images to float,
  with the scaling and the value-range mapping that follow it in the same pass. TensorFlow's
  uint8 resize converts each source byte to float one at a time, and each following op is another
  pass and another tensor: together they were the most expensive steps of evaluation.

The kernels are compiled into one library on first use (about 20 s, once per machine, TensorFlow
version and source), cached, and checked against TensorFlow's ops, value for value, on test
images before they are used; where there is no compiler, the build or the check fails, or
`TF_PYRAMID_COMPILED_OPS=0`, both functions run TensorFlow's ops (one warning says why). Either way
the images are the same. Exported models never contain these ops (serving preprocessing calls
TensorFlow's ops on float input).

Cache: `$TF_PYRAMID_CACHE_DIR`, else `$XDG_CACHE_HOME/tf_pyramid`, else `~/.cache/tf_pyramid`;
an exclusive file lock makes concurrent first uses (test workers, one machine's tf.distribute
workers) build it once.
"""
import contextlib
import fcntl
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf
from absl import logging

STEPS = ("brightness", "saturation", "hue")
KERNELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
SOURCES = tuple(os.path.join(KERNELS_DIR, name)
                for name in ("adjust_color.cc", "resize_bilinear.cc"))
ENABLE_VARIABLE = "TF_PYRAMID_COMPILED_OPS"  # "0": use TensorFlow's ops
CACHE_VARIABLE = "TF_PYRAMID_CACHE_DIR"
# Tried in order; -ffp-contract=off keeps a * b + c two roundings (no fused multiply-add), as in
# TensorFlow's kernels. -march=native: the library is built on, and keyed to, the machine using it.
COMPILE_FLAGS = (("-O3", "-march=native", "-ffp-contract=off"), ("-O3", "-ffp-contract=off"))
BUILD_TIMEOUT_S = 300

_lock = threading.Lock()
_state = {}  # "module": the loaded op library or None; "reason": why None
_forced_off = threading.local()  # inside `tensorflow_ops_only()`


def cache_dir():
    """Where compiled kernels are kept (see the module docstring)."""
    if os.environ.get(CACHE_VARIABLE):
        return os.path.expanduser(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tf_pyramid")


def find_compiler():
    """The C++ compiler the build uses: `$CXX`, else `c++` or `g++` on the PATH; None if none."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _compiler():
    return find_compiler() or "c++"  # a missing compiler then fails to run, with its name


def _cpu_fingerprint():
    """The CPU's feature flags (Linux) or model: a library built with -march=native is only
    loaded by machines that match (a cache directory may be shared)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def library_path():
    """The cached library's path: keyed to the sources, TensorFlow, compiler, flags and CPU."""
    sources = []
    for source in SOURCES:
        with open(source, "rb") as f:
            sources.append(f.read())
    key = hashlib.sha256(b"\0".join([
        *sources, tf.__version__.encode(), tf.sysconfig.get_include().encode(),
        _compiler().encode(), repr(COMPILE_FLAGS).encode(), _cpu_fingerprint().encode(),
        platform.python_version().encode()])).hexdigest()[:16]
    return os.path.join(cache_dir(), f"tf_pyramid_ops_{key}.so")


def _build(path):
    """Compiles SOURCES into `path` (via a temporary file and a rename). Returns None or why not."""
    tf_flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    errors = []
    for flags in COMPILE_FLAGS:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
        os.close(fd)
        command = [_compiler(), "-shared", "-fPIC", "-w", *flags, *SOURCES, "-o", tmp, *tf_flags]
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            os.unlink(tmp)
            return f"`{shlex.join(command[:1])}` could not run: {error}"
        if done.returncode == 0:
            os.replace(tmp, path)
            return None
        os.unlink(tmp)
        errors.append(f"{shlex.join(command)} -> exit {done.returncode}: "
                      f"{done.stderr.strip()[-500:]}")
    return "the build failed: " + " | ".join(errors)


def _reference_color(images, steps, brightness_delta, saturation_factor, hue_delta):
    """TensorFlow's ops for the same steps: what `tf_pyramid_adjust_color` must equal."""
    for step in steps:
        if step == "brightness":
            images = tf.image.adjust_brightness(images, brightness_delta)
        elif step == "saturation":
            images = tf.image.adjust_saturation(images, saturation_factor)
        else:
            images = tf.image.adjust_hue(images, hue_delta)
    return images


def map_to_range(images, low, high):
    """[0, 1] -> [low, high], clipped to [0, 1] first: the mapping `resize_bilinear` fuses (and
    `image_ops.value_range`)."""
    return tf.clip_by_value(images, 0.0, 1.0) * (high - low) + low


def _reference_resize(images, size, scale, value_range):
    """TensorFlow's ops for the same resize: what `tf_pyramid_resize_bilinear` must equal."""
    resized = tf.image.resize(images, size)
    if scale != 1.0:
        resized = resized * scale
    return resized if value_range is None else map_to_range(resized, *value_range)


def check_images(size=48, seed=0):
    """Test images for the colour kernel: random colours (also out of [0, 1], as after a
    brightness step), quantised ones (ties between channels, greys, zeros, negatives), a ramp."""
    rng = np.random.default_rng(seed)
    random = rng.uniform(-0.2, 1.2, (size, size, 3))
    ties = rng.integers(0, 4, (size, size, 3)) / 3.0 - 0.1
    ramp = np.stack(np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size)), -1)
    ramp = np.concatenate([ramp, ramp[..., :1][::-1]], axis=-1)
    return np.stack([random, ties, ramp]).astype(np.float32)


CHECK_STEPS = (("brightness", "saturation", "hue"), ("saturation", "brightness"), ("hue",),
               ("hue", "brightness", "saturation"), ("hue", "saturation"), ("saturation",))
CHECK_PARAMETERS = ((0.1, 1.3, 0.15), (-32 / 255, 0.5, -0.2), (0.0, 1.0, 0.0),
                    (32 / 255, 1.5, 0.2), (0.05, 0.77, -0.05), (-0.01, 1.2, 0.999))
# (input [N,] H, W, output H, W) for the resize check: shrinks by up to 2x (the vector path) and
# by more, enlargements, the same size, one pixel, widths that are no multiple of the vector.
CHECK_RESIZES = (((75, 100), (64, 64)), ((100, 75), (51, 64)), ((61, 250), (20, 30)),
                 ((7, 5), (16, 23)), ((1, 1), (3, 2)), ((40, 40), (40, 40)),
                 ((2, 33, 47), (32, 32)))
CHECK_RESIZE_PARAMETERS = ((1.0, None), (1.0 / 255.0, (-1.0, 1.0)), (1.0 / 255.0, None),
                           (1.0, (0.0, 255.0)))


def resize_check_image(shape, seed=0):
    """uint8 RGB noise of `shape` [..., H, W] x 3 with 0 and 255 in it."""
    image = np.random.default_rng(seed).integers(0, 256, (*shape, 3))
    image.flat[:2] = (0, 255)
    return image.astype(np.uint8)


def _self_check(module):
    """None if the kernels equal TensorFlow's ops on the check images, else what differed."""
    images = tf.constant(check_images())
    for steps in CHECK_STEPS:
        for brightness, saturation, hue in CHECK_PARAMETERS:
            ours = module.tf_pyramid_adjust_color(images, brightness, saturation, hue,
                                                  steps=list(steps)).numpy()
            theirs = _reference_color(images, steps, brightness, saturation, hue).numpy()
            if not np.array_equal(ours, theirs):
                worst = float(np.max(np.abs(ours - theirs)))
                return (f"the colour kernel differs from TensorFlow's ops (steps {steps}, "
                        f"parameters {(brightness, saturation, hue)}: max difference "
                        f"{worst:.3g})")
    for in_shape, size in CHECK_RESIZES:
        image = tf.constant(resize_check_image(in_shape))
        for scale, value_range in CHECK_RESIZE_PARAMETERS:
            ours = _run_resize(module, image, size, scale, value_range).numpy()
            theirs = _reference_resize(image, size, scale, value_range).numpy()
            if ours.shape != theirs.shape or not np.array_equal(ours, theirs):
                return (f"the resize kernel differs from TensorFlow's ops ({in_shape} -> {size}, "
                        f"scale {scale}, value_range {value_range})")
    return None


def _load():
    """(module or None, reason). Builds the library under the cache lock if it is missing."""
    if os.environ.get(ENABLE_VARIABLE, "1") == "0":
        return None, f"{ENABLE_VARIABLE}=0"
    if not hasattr(fcntl, "flock"):
        return None, "no file locking on this platform"
    path = library_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build per machine; others wait, then load
            if not os.path.exists(path):
                logging.info("Compiling the input pipeline's kernels into %s (once, ~20 s).",
                             path)
                start = time.monotonic()
                reason = _build(path)
                if reason:
                    return None, reason
                logging.info("Compiled the input pipeline's kernels in %.1f s.",
                             time.monotonic() - start)
    except OSError as error:
        return None, f"its cache {os.path.dirname(path)!r} is not usable: {error}"
    # Any failure from here on means "use TensorFlow's ops", never a failed pipeline.
    try:
        module = tf.load_op_library(path)
    except Exception as error:  # noqa: BLE001 (NotFoundError, OSError, ... : all mean "not usable")
        return None, f"{path} does not load: {error}"
    try:
        with tf.init_scope():  # eager, also when first called while a tf.data function is traced
            reason = _self_check(module)
    except Exception as error:  # noqa: BLE001
        reason = f"its check raised {type(error).__name__}: {error}"
    return (None, reason) if reason else (module, None)


@tf.autograph.experimental.do_not_convert  # plain Python, also when called while tracing
def library():
    """The loaded op library (building it on first use), or None: then see `why_not()`."""
    with _lock:
        if "module" not in _state:
            _state["module"], _state["reason"] = _load()
            if _state["module"] is None:
                logging.warning("The input pipeline runs on TensorFlow's ops (same images, "
                                "slower): its compiled kernels are not used, as %s.",
                                _state["reason"])
        return _state["module"]


@contextlib.contextmanager
def tensorflow_ops_only():
    """Pipelines built (traced) inside this context use TensorFlow's ops: a side-by-side of the
    same pipeline with and without the kernels, in one process (tools/benchmark_input.py)."""
    _forced_off.active = True
    try:
        yield
    finally:
        _forced_off.active = False


def why_not():
    """Why the kernels are not used (None while they are, or before `library()` was first
    called)."""
    return _state.get("reason")


def _library_in_use():
    return None if getattr(_forced_off, "active", False) else library()


def in_use():
    """Whether ops built now use the kernels (False inside `tensorflow_ops_only()`)."""
    return _library_in_use() is not None


def adjust_color(images, steps, *, brightness_delta, saturation_factor, hue_delta):
    """`steps` (names in STEPS, each at most once) applied in order to float32 RGB `images`
    [..., 3]: brightness + delta, saturation x factor, hue + delta (a fraction of a turn, in
    [-1, 1]); equal, value for value, to tf.image.adjust_brightness / _saturation / _hue."""
    steps = tuple(steps)
    if not steps or any(s not in STEPS for s in steps) or len(set(steps)) != len(steps):
        raise ValueError(f"steps must be distinct names among {STEPS}; got {steps!r}.")
    module = _library_in_use()
    if module is None:
        return _reference_color(images, steps, brightness_delta, saturation_factor, hue_delta)
    return module.tf_pyramid_adjust_color(
        images, tf.cast(brightness_delta, tf.float32), tf.cast(saturation_factor, tf.float32),
        tf.cast(hue_delta, tf.float32), steps=list(steps))


def resize_bilinear(images, size, *, scale=1.0, value_range=None):
    """`tf.image.resize(images, size)` (bilinear, half-pixel centres) -> float32, times `scale`,
    then, with `value_range=(low, high)`, `map_to_range`; equal, value for value, to those
    TensorFlow ops.

    The kernel takes uint8 RGB [H, W, 3] or [N, H, W, 3]; other input runs TensorFlow's ops.
    """
    images = tf.convert_to_tensor(images)
    size = [int(size[0]), int(size[1])]
    if value_range is not None:
        value_range = (float(value_range[0]), float(value_range[1]))
    supported = (images.dtype == tf.uint8 and images.shape.rank in (3, 4)
                 and images.shape[-1] == 3)
    module = _library_in_use() if supported else None
    if module is None:
        return _reference_resize(images, size, scale, value_range)
    return _run_resize(module, images, size, scale, value_range)


def _run_resize(module, images, size, scale, value_range):
    low, high = value_range or (0.0, 1.0)
    return module.tf_pyramid_resize_bilinear(  # the span as the graph's `(high - low)` constant
        images, size, scale=scale, map_to_range=value_range is not None, range_low=low,
        range_span=high - low)
