"""The colour-distortion kernel: brightness, saturation and hue in one SIMD pass (docs/data.md).

TensorFlow's saturation and hue ops convert every pixel to HSV and back in scalar, branchy code,
and were the most expensive steps of the training input pipeline. `adjust_color` applies a run of
those steps with the op in `kernels/adjust_color.cc` instead, which gives the same float32 values.
The op is compiled on first use (about 10 s, once per machine, TensorFlow version and source),
cached, and checked against TensorFlow's ops, value for value, on a set of test images before it
is used; where there is no compiler, the build or the check fails, or `TF_PYRAMID_COLOR_KERNEL=0`,
`adjust_color` runs TensorFlow's ops (one warning says why). Either way the images are the same.

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
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "adjust_color.cc")
ENABLE_VARIABLE = "TF_PYRAMID_COLOR_KERNEL"  # "0": use TensorFlow's ops
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
    """The cached library's path: keyed to the source, TensorFlow, compiler, flags and CPU."""
    with open(SOURCE, "rb") as f:
        source = f.read()
    key = hashlib.sha256(b"\0".join([
        source, tf.__version__.encode(), tf.sysconfig.get_include().encode(),
        _compiler().encode(), repr(COMPILE_FLAGS).encode(), _cpu_fingerprint().encode(),
        platform.python_version().encode()])).hexdigest()[:16]
    return os.path.join(cache_dir(), f"adjust_color_{key}.so")


def _build(path):
    """Compiles SOURCE into `path` (via a temporary file and a rename). Returns None or why not."""
    tf_flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    errors = []
    for flags in COMPILE_FLAGS:
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=os.path.dirname(path))
        os.close(fd)
        command = [_compiler(), "-shared", "-fPIC", "-w", *flags, SOURCE, "-o", tmp, *tf_flags]
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


def _reference(images, steps, brightness_delta, saturation_factor, hue_delta):
    """TensorFlow's ops for the same steps: what the kernel must equal."""
    for step in steps:
        if step == "brightness":
            images = tf.image.adjust_brightness(images, brightness_delta)
        elif step == "saturation":
            images = tf.image.adjust_saturation(images, saturation_factor)
        else:
            images = tf.image.adjust_hue(images, hue_delta)
    return images


def check_images(size=48, seed=0):
    """Test images for the kernel: random colours (also out of [0, 1], as after a brightness
    step), quantised ones (ties between channels, greys, zeros, negatives), a smooth ramp."""
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


def _self_check(module):
    """None if the kernel equals TensorFlow's ops on `check_images`, else what differed."""
    images = tf.constant(check_images())
    for steps in CHECK_STEPS:
        for brightness, saturation, hue in CHECK_PARAMETERS:
            ours = module.tf_pyramid_adjust_color(images, brightness, saturation, hue,
                                                  steps=list(steps)).numpy()
            theirs = _reference(images, steps, brightness, saturation, hue).numpy()
            if not np.array_equal(ours, theirs):
                worst = float(np.max(np.abs(ours - theirs)))
                return (f"it differs from TensorFlow's ops (steps {steps}, parameters "
                        f"{(brightness, saturation, hue)}: max difference {worst:.3g})")
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
                logging.info("Compiling the colour-distortion kernel into %s (once, ~10 s).",
                             path)
                start = time.monotonic()
                reason = _build(path)
                if reason:
                    return None, reason
                logging.info("Compiled the colour-distortion kernel in %.1f s.",
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
def kernel():
    """The loaded op library (building it on first use), or None: then see `why_not()`."""
    with _lock:
        if "module" not in _state:
            _state["module"], _state["reason"] = _load()
            if _state["module"] is None:
                logging.warning("Colour distortion runs on TensorFlow's ops (same images, "
                                "slower input pipeline): the colour kernel is not used, as %s.",
                                _state["reason"])
        return _state["module"]


@contextlib.contextmanager
def tensorflow_ops_only():
    """Pipelines built (traced) inside this context use TensorFlow's ops: a side-by-side of the
    same pipeline with and without the kernel, in one process (tools/benchmark_input.py)."""
    _forced_off.active = True
    try:
        yield
    finally:
        _forced_off.active = False


def why_not():
    """Why the kernel is not used (None while it is, or before `kernel()` was first called)."""
    return _state.get("reason")


def adjust_color(images, steps, *, brightness_delta, saturation_factor, hue_delta):
    """`steps` (names in STEPS, each at most once) applied in order to float32 RGB `images`
    [..., 3]: brightness + delta, saturation x factor, hue + delta (a fraction of a turn, in
    [-1, 1]); equal, value for value, to tf.image.adjust_brightness / _saturation / _hue."""
    steps = tuple(steps)
    if not steps or any(s not in STEPS for s in steps) or len(set(steps)) != len(steps):
        raise ValueError(f"steps must be distinct names among {STEPS}; got {steps!r}.")
    module = None if getattr(_forced_off, "active", False) else kernel()
    if module is None:
        return _reference(images, steps, brightness_delta, saturation_factor, hue_delta)
    return module.tf_pyramid_adjust_color(
        images, tf.cast(brightness_delta, tf.float32), tf.cast(saturation_factor, tf.float32),
        tf.cast(hue_delta, tf.float32), steps=list(steps))
