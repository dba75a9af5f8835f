"""The input pipeline's compiled kernels: TensorFlow's values, faster (docs/data.md).

* `adjust_color` (`kernels/adjust_color.cc`): a run of brightness / saturation / hue steps in one
  SIMD pass. TensorFlow's saturation and hue ops convert every pixel to HSV and back in scalar,
  branchy code, and were the most expensive steps of the training pipeline.
* `resize_bilinear` (`kernels/resize_bilinear.cc`): bilinear resize of uint8 RGB images to float,
  with the scaling and the value-range mapping that follow it in the same pass. TensorFlow's
  uint8 resize converts each source byte to float one at a time, and each following op is another
  pass and another tensor: together they were the most expensive steps of evaluation.

The kernels are an explicit build: `python -m tf_pyramid.build_kernels` compiles them into one
library (about 20 s, once per machine, TensorFlow version and source), checks it against
TensorFlow's ops value for value, and records its SHA-256 in a manifest beside it. An input
pipeline only loads such a library, never compiles: where it is missing, refused (see below), its
check fails, or `TF_PYRAMID_COMPILED_OPS=0`, both functions run TensorFlow's ops (one warning says
why and how to build). Either way the images are the same. Exported models never contain these
ops, and nothing outside the input pipeline imports this module.

Cache: `$TF_PYRAMID_CACHE_DIR`, else `$XDG_CACHE_HOME/tf_pyramid`, else `~/.cache/tf_pyramid`,
created 0700. Loading runs the library's code in the process, so a library is loaded only if the
cache folder and its ancestors can be written by no other user (ancestors: unless sticky, like
/tmp), the library and its manifest are regular files of this user (or root) that no other user
can write, the manifest says the build passed its check, and the file's SHA-256 equals the
recorded one (a truncated or replaced file is refused before it is mapped). A shared cache that
other users can write is opt-in (`TF_PYRAMID_SHARED_KERNEL_CACHE=1`): then only the hash is
checked, which protects against damage, not against those users.
"""
import contextlib
import datetime
import fcntl
import glob
import hashlib
import json
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf
from absl import logging

from tf_pyramid.data.image_ops import map_to_range

STEPS = ("brightness", "saturation", "hue")
KERNELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
SOURCES = tuple(os.path.join(KERNELS_DIR, name)
                for name in ("adjust_color.cc", "resize_bilinear.cc"))
ENABLE_VARIABLE = "TF_PYRAMID_COMPILED_OPS"  # "0": use TensorFlow's ops
CACHE_VARIABLE = "TF_PYRAMID_CACHE_DIR"
SHARED_VARIABLE = "TF_PYRAMID_SHARED_KERNEL_CACHE"  # "1": accept a cache others can write
BUILD_COMMAND = "python -m tf_pyramid.build_kernels"
# Tried in order; -ffp-contract=off keeps a * b + c two roundings (no fused multiply-add), as in
# TensorFlow's kernels. -march=native: the library is built on, and keyed to, the machine using it.
COMPILE_FLAGS = (("-O3", "-march=native", "-ffp-contract=off"), ("-O3", "-ffp-contract=off"))
BUILD_TIMEOUT_S = 300
TEMP_PREFIX = "tmp-"  # temporary files of a build: `tmp-<key>-*` (older versions: `tmp*.so`)

_lock = threading.Lock()
_state = {}  # "module": the loaded op library or None; "reason": why None
_forced_off = threading.local()  # inside `tensorflow_ops_only()`


class BuildError(Exception):
    """The kernels could not be built (or the cache is not safe to build into)."""


def cache_dir():
    """Where compiled kernels are kept (see the module docstring)."""
    if os.environ.get(CACHE_VARIABLE):
        return os.path.expanduser(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tf_pyramid")


def shared_cache_allowed():
    return os.environ.get(SHARED_VARIABLE) == "1"


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


def _key():
    sources = []
    for source in SOURCES:
        with open(source, "rb") as f:
            sources.append(f.read())
    return hashlib.sha256(b"\0".join([
        *sources, tf.__version__.encode(), tf.sysconfig.get_include().encode(),
        _compiler().encode(), repr(COMPILE_FLAGS).encode(), _cpu_fingerprint().encode(),
        platform.python_version().encode()])).hexdigest()[:16]


def library_path():
    """The cached library's path: keyed to the sources, TensorFlow, compiler, flags and CPU (a
    name, not a protection: see `refusal`)."""
    return os.path.join(cache_dir(), f"tf_pyramid_ops_{_key()}.so")


def manifest_path(path):
    """The manifest beside library `path`: its SHA-256 and how the build ended."""
    return path[:-len(".so")] + ".json"


# ------------------------------------------------------------------------------ cache safety
def _owner_ok(st):
    return st.st_uid in (os.geteuid(), 0)  # root can replace any file anyway


def _describe_mode(st):
    return f"mode {stat.filemode(st.st_mode)}"


def unsafe_directory(directory):
    """None if no other user can write `directory` or replace it (its ancestors: owned by this
    user or root, and writable by others only with the sticky bit, like /tmp); else what is
    wrong. A shared cache (`TF_PYRAMID_SHARED_KERNEL_CACHE=1`) skips the check."""
    if shared_cache_allowed():
        return None
    real = os.path.realpath(directory)
    path = real
    while True:
        try:
            st = os.stat(path)
        except OSError as error:
            return f"{path} cannot be examined: {error.strerror}"
        if not stat.S_ISDIR(st.st_mode):
            return f"{path} is not a folder"
        if not _owner_ok(st):
            return (f"the folder {path} belongs to user id {st.st_uid}, not to this user "
                    f"({os.geteuid()})")
        others_write = st.st_mode & stat.S_IWOTH
        group_write = st.st_mode & stat.S_IWGRP and st.st_gid != os.getegid()
        if path == real:
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return (f"the folder {path} can be written by other users "
                        f"({_describe_mode(st)}; expected drwx------)")
        elif (others_write or group_write) and not st.st_mode & stat.S_ISVTX:
            return (f"its parent folder {path} can be written by other users "
                    f"({_describe_mode(st)}, no sticky bit)")
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def _unsafe_file_stat(path, st):
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if shared_cache_allowed():
        return None
    if not _owner_ok(st):
        return f"{path} belongs to user id {st.st_uid}, not to this user ({os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} can be written by other users ({_describe_mode(st)})"
    return None


def _read_checked(path):
    """(bytes, None) of a regular file only this user can write, opened without following a
    symbolic link; (None, what is wrong) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        if os.path.islink(path):
            return None, f"{path} is a symbolic link"
        return None, f"{path} cannot be read: {error.strerror}"
    with os.fdopen(fd, "rb") as f:
        reason = _unsafe_file_stat(path, os.fstat(f.fileno()))
        return (None, reason) if reason else (f.read(), None)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def refusal(path):
    """None if the library at `path` may be loaded (checked without loading it: see the module
    docstring), else why not."""
    directory = os.path.dirname(path)
    manifest_file = manifest_path(path)
    if not os.path.lexists(path) and not os.path.lexists(manifest_file):
        return (f"they are not built for this machine and TensorFlow version (run "
                f"`{BUILD_COMMAND}` once, where a C++ compiler is installed, for faster input)")
    reason = unsafe_directory(directory)
    if reason:
        return f"refusing the kernel cache {directory}: {reason}"
    data, reason = _read_checked(manifest_file)
    if reason:
        return (f"refusing {path}: its manifest {reason} (`{BUILD_COMMAND}` writes it; "
                "run it to rebuild)")
    try:
        manifest = json.loads(data)
        recorded, check = manifest.get("sha256"), manifest.get("check")
    except (ValueError, AttributeError):
        return f"refusing {path}: its manifest {manifest_file} is damaged (run `{BUILD_COMMAND}`)"
    if check != "passed":
        return (f"their last build failed ({manifest.get('error', 'no reason recorded')}); "
                f"`{BUILD_COMMAND}` retries it")
    data, reason = _read_checked(path)
    if reason:
        return f"refusing the library: {reason}"
    if _sha256(data) != recorded:
        return (f"refusing {path}: its SHA-256 differs from the one recorded when it was built "
                f"(a truncated, damaged or replaced file; {len(data)} bytes, built with "
                f"{manifest.get('bytes')}); `{BUILD_COMMAND}` rebuilds it")
    return None


# ----------------------------------------------------------------------------------- the build
def _compile(directory, key):
    """Compiles SOURCES into a temporary file in `directory`; returns its path. Raises
    BuildError."""
    tf_flags = tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()
    errors = []
    for flags in COMPILE_FLAGS:
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{key}-", suffix=".so", dir=directory)
        os.close(fd)
        command = [_compiler(), "-shared", "-fPIC", "-w", *flags, *SOURCES, "-o", tmp, *tf_flags]
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            os.unlink(tmp)
            raise BuildError(f"`{shlex.join(command[:1])}` could not run: {error}") from None
        if done.returncode == 0:
            return tmp
        os.unlink(tmp)
        errors.append(f"{shlex.join(command)} -> exit {done.returncode}: "
                      f"{done.stderr.strip()[-500:]}")
    raise BuildError("the build failed: " + " | ".join(errors))


def _write_atomically(path, text, key):
    """Writes `text` to `path` via a private temporary file, fsync and rename."""
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{key}-", suffix=".json",
                               dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_leftovers(directory, key):
    """Removes temporary files of builds killed before their end (called under the build lock):
    this key's `tmp-<key>-*`, and `tmp*.so` of older versions not touched for a build's time."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(directory), "tmp*")):
        name = os.path.basename(path)
        ours = name.startswith(f"{TEMP_PREFIX}{key}-")
        legacy = name.endswith(".so") and not name.startswith(TEMP_PREFIX)
        try:
            if ours or (legacy and time.time() - os.lstat(path).st_mtime > BUILD_TIMEOUT_S):
                os.unlink(path)
                removed.append(name)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def _build_lock(path):
    """An exclusive lock on `path`.lock, opened without following a symbolic link (a planted
    link must not create, truncate or lock its target)."""
    lock_file = path + ".lock"
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        if os.path.islink(lock_file):
            raise BuildError(f"the lock file {lock_file} is a symbolic link; remove it") from None
        raise BuildError(f"cannot open the lock file {lock_file}: {error.strerror}") from None
    try:
        reason = _unsafe_file_stat(lock_file, os.fstat(fd))
        if reason:
            raise BuildError(f"refusing the lock file: {reason}")
        fcntl.flock(fd, fcntl.LOCK_EX)  # concurrent builds take turns; the others then find it
        yield
    finally:
        os.close(fd)


def build(force=False, log=logging.info):
    """Builds the library into the cache unless a valid one is there (`force`: rebuild anyway),
    checks it against TensorFlow's ops, and records its SHA-256; returns its path. Raises
    BuildError with what went wrong (also recorded in the manifest when the compiler or the
    check failed, so that pipelines say so). Loads the library into this process: run it in a
    process of its own (`python -m tf_pyramid.build_kernels`)."""
    if not hasattr(fcntl, "flock"):
        raise BuildError("no file locking on this platform")
    path = library_path()
    directory = os.path.dirname(path)
    key = os.path.basename(path)[len("tf_pyramid_ops_"):-len(".so")]
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as error:
        raise BuildError(f"cannot create the cache {directory}: {error}") from None
    reason = unsafe_directory(directory)
    if reason:
        raise BuildError(f"refusing to build into {directory}: {reason} (make it private, e.g. "
                         f"`chmod 700 {shlex.quote(directory)}`, or set {SHARED_VARIABLE}=1 "
                         "to accept a shared cache and its risk)")
    with _build_lock(path):
        removed = _remove_leftovers(directory, key)
        if removed:
            log(f"Removed {len(removed)} file(s) left by an interrupted build: "
                f"{', '.join(sorted(removed))}.")
        reason = refusal(path)
        if reason is None and not force:
            module = tf.load_op_library(path)
            reason = _checked(module)
            if reason is None:
                _use(module)
                log(f"The kernels are built and pass their check: {path}")
                return path
        if reason is not None and os.path.lexists(path):
            log(f"Rebuilding: {reason}.")
        log(f"Compiling the input pipeline's kernels into {path} (once, ~20 s).")
        start = time.monotonic()
        record = {"library": os.path.basename(path), "compiler": _compiler(),
                  "tensorflow": tf.__version__,
                  "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        try:
            tmp = _compile(directory, key)
        except BuildError as error:
            _write_atomically(manifest_path(path), json.dumps(
                dict(record, check="failed", error=str(error)[:2000]), indent=1), key)
            raise
        module = None
        try:
            with open(tmp, "rb") as f:
                digest = f.read()
            os.chmod(tmp, 0o700)
            module = tf.load_op_library(tmp)
            reason = _checked(module)
        except Exception as error:  # noqa: BLE001 (any failure to load means "not usable")
            reason = f"it does not load: {error}"
        if reason:
            os.unlink(tmp)
            _write_atomically(manifest_path(path), json.dumps(
                dict(record, check="failed", error=reason), indent=1), key)
            raise BuildError(f"the built library is not usable: {reason}")
        os.replace(tmp, path)
        _write_atomically(manifest_path(path), json.dumps(
            dict(record, check="passed", sha256=_sha256(digest), bytes=len(digest)), indent=1), key)
        _use(module)
        log(f"Compiled and checked in {time.monotonic() - start:.1f} s: {path}")
        return path


def _use(module):
    """This process's library from now on: a library loaded once cannot be loaded again from
    another path (its ops are registered already)."""
    with _lock:
        _state.update(module=module, reason=None)


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


def _checked(module):
    """`_self_check`, eagerly, with an exception turned into the reason."""
    try:
        with tf.init_scope():  # eager, also when first called while a tf.data function is traced
            return _self_check(module)
    except Exception as error:  # noqa: BLE001
        return f"its check raised {type(error).__name__}: {error}"


def _load():
    """(module or None, reason): the built library if `refusal` finds nothing and it passes its
    check again after loading. Never builds."""
    if os.environ.get(ENABLE_VARIABLE, "1") == "0":
        return None, f"{ENABLE_VARIABLE}=0"
    path = library_path()
    reason = refusal(path)
    if reason:
        return None, reason
    # Any failure from here on means "use TensorFlow's ops", never a failed pipeline.
    try:
        module = tf.load_op_library(path)
    except Exception as error:  # noqa: BLE001 (NotFoundError, OSError, ... : all mean "not usable")
        return None, f"{path} does not load: {error}"
    reason = _checked(module)
    return (None, reason) if reason else (module, None)


@tf.autograph.experimental.do_not_convert  # plain Python, also when called while tracing
def library():
    """The loaded op library (see `_load`), or None: then see `why_not()`."""
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
