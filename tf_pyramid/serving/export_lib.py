"""Writing a model as a versioned SavedModel for TF Serving (`BASE/<version>/saved_model.pb`)."""
import json
import os
import uuid

import keras
import tensorflow as tf
from absl import logging

from tf_pyramid import runs
from tf_pyramid.modeling import ImagePreprocessor
from tf_pyramid.data import mnist
from tf_pyramid.runs import files
from tf_pyramid.runs import lock as lock_lib
from tf_pyramid.serving import preprocessing
from tf_pyramid.serving import signatures as signatures_lib
from tf_pyramid.serving import warmup

INFO_FILE = os.path.join("assets.extra", "tf_pyramid_serving.json")
STAGING_PREFIX = ".tmp-"


def existing_versions(export_base):
    """Integer version directories under `export_base` (what TF Serving would consider)."""
    if not tf.io.gfile.isdir(export_base):
        return []
    return sorted(int(n.rstrip("/")) for n in tf.io.gfile.listdir(export_base)
                  if n.rstrip("/").isdigit())


def next_version(export_base):
    versions = existing_versions(export_base)
    return versions[-1] + 1 if versions else 1


def resolve_model_path(model_dir=None, model=None):
    """The `.keras` file to load: `model` if given, else `model_dir/model.keras`."""
    if model:
        path = model
    elif model_dir:
        path = os.path.join(model_dir, runs.run_directory.MODEL_FILE)
    else:
        raise ValueError("Pass --model_dir=DIR (a training run with DIR/model.keras) or "
                         "--model=PATH.keras.")
    if not tf.io.gfile.exists(path):
        hint = ("; the run has not finished (train writes DIR/model.keras at the end) or DIR is "
                "wrong" if not model else "")
        raise FileNotFoundError(f"No model file at {path}{hint}.")
    return path


def load_model(model_dir=None, model=None):
    """Loads a trained `tf_pyramid` model: a run's `model.keras`, or the `.keras` file `model`."""
    return runs.load_run_model(resolve_model_path(model_dir, model))[0]


def run_class_names(model_dir):
    """The class names of a training run, in label order, or None when it has none.

    From the run's class index (`class_index.txt`, written by the trainer for folder, TFRecord
    label-map and tfds sources); an MNIST run's classes are the digits, named "0".."9". Nothing
    is guessed: any other run without a class index has no names.
    """
    if not model_dir:
        return None
    names = runs.read_class_names(model_dir)
    if names is not None:
        return names
    config = runs.read_config(model_dir)
    dataset = config.data.dataset if config is not None else None
    if dataset == "mnist":
        if config.run is None or config.run.num_classes in (None, mnist.NUM_CLASSES):
            return [str(digit) for digit in range(mnist.NUM_CLASSES)]
        logging.warning("%s: an MNIST run with %s classes, not the %d digits: exported without "
                        "class names.", model_dir, config.run.num_classes, mnist.NUM_CLASSES)
    return None


def read_class_names_file(path):
    """One class name per line (blank lines skipped), as the trainer's class_index.txt."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"No class names file at {path} (one name per line expected).")
    with tf.io.gfile.GFile(path) as f:
        return [line.strip() for line in f.read().splitlines() if line.strip()]


def export_saved_model(model, export_base, version=None, value_range=None, resize_method=None,
                       overwrite=False, verbose=False,
                       max_image_pixels=preprocessing.DEFAULT_MAX_IMAGE_PIXELS, class_names=None,
                       top_k=signatures_lib.DEFAULT_TOP_K, warmup_requests=True):
    """Exports `model` for TF Serving as `export_base/<version>/`; returns that directory.

    Args:
        model: a `PyramidClassifier` or `BaselineClassifier`.
        export_base: the TF Serving model base path.
        version: integer version; None = next free one (1 for a new base).
        value_range: model input range (low, high) for the in-graph preprocessing; None = the
            model's own (`model.preprocessor`, the layer saved in model.keras).
        resize_method: "area" or "bilinear" (antialiased); None = the model's own.
        overwrite: replace an existing version directory instead of refusing.
        max_image_pixels: `serving_bytes` refuses an encoded image whose header declares more
            pixels (height x width) before decoding it (default 50 million; None: no limit).
        class_names: the name of each class in label order (`run_class_names(run directory)`);
            every signature then also returns `class_names` and `top_k_class_names`. None: no
            name outputs.
        top_k: how many classes the `top_k_*` outputs list (at most the number of classes).
        warmup_requests: write `assets.extra/tf_serving_warmup_requests` (TF Serving replays it
            when it loads the version).
    The version directory appears atomically (written under a temporary name, then renamed), so
    a running TF Serving never picks up a half-written version. Folders get the usual modes
    (0777 less the umask, 0755 with umask 022) so that a server running as another user can
    read them; staging folders left by a killed export are removed by the next one.
    """
    preprocessor = ImagePreprocessor.of_model(model, value_range, resize_method)
    if max_image_pixels is not None and int(max_image_pixels) < 1:
        raise ValueError(f"max_image_pixels must be a positive number of pixels (or None for no "
                         f"limit); got {max_image_pixels}.")
    tf.io.gfile.makedirs(export_base)
    if version is not None:
        version = int(version)
        if version < 0:
            raise ValueError(f"version must be a non-negative integer; got {version}.")
    _check_free(export_base, version, overwrite)  # early, before the slow tracing

    functions = signatures_lib.ServingFunctions(model, preprocessor, max_image_pixels,
                                                class_names=class_names, top_k=top_k)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn, input_signature in functions.endpoints():
        archive.add_endpoint(name, fn, input_signature=input_signature)

    # Exports into one base take turns (a lock on the base folder itself: no file is added).
    export_lock = lock_lib.DirectoryLock(export_base, None, "another export")
    export_lock.acquire(blocking=True)
    try:
        if export_lock.held:  # else another export's staging folder may be in use
            _remove_stale_staging(export_base)
        # Chosen (and checked again) under the lock: an export that finished while this one
        # traced or waited has taken its version, which must be neither reused nor replaced.
        version = next_version(export_base) if version is None else version
        _check_free(export_base, version, overwrite)
        final = os.path.join(export_base, str(version))
        return _write_version(archive, model, functions, export_base, final, version, verbose,
                              warmup_requests)
    finally:
        export_lock.release()


def _check_free(export_base, version, overwrite):
    final = os.path.join(export_base, str(version))
    if version is not None and tf.io.gfile.exists(final) and not overwrite:
        raise FileExistsError(f"{final} exists; pick another --version or leave it out to use the "
                              f"next free one ({next_version(export_base)}).")


def _remove_stale_staging(export_base):
    """Removes `.tmp-*` staging folders: with the export lock held, none is in use (a killed
    export leaves its folder behind)."""
    for name in tf.io.gfile.listdir(export_base):  # gfile: the base may be gs://...
        path = os.path.join(export_base, name.rstrip("/"))
        if name.startswith(STAGING_PREFIX) and tf.io.gfile.isdir(path):
            logging.warning("Removing %s, left by an interrupted export.", path)
            tf.io.gfile.rmtree(path)


def _write_version(archive, model, functions, export_base, final, version, verbose,
                   write_warmup):
    convention = functions.preprocessor.convention()
    # os.mkdir applies the umask (tempfile.mkdtemp would make the version folder 0700).
    staging = os.path.join(export_base, f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:12]}")
    if "://" in staging:  # another filesystem (gs://...): no modes, gfile
        tf.io.gfile.makedirs(staging)
    else:
        os.mkdir(staging, 0o777)
    try:
        archive.write_out(staging, verbose=verbose)
        info = {
            "model_class": type(model).__name__,
            "model_name": model.name,
            "input_size": int(model.input_size),
            "channels": int(model.channels),
            "num_classes": int(model.num_classes),
            "levels": model.exit_levels,
            "input_convention": convention,
            "value_range": list(convention["value_range"]),
            "resize_method": convention["resize_method"],
            "max_image_pixels": functions.max_image_pixels,
            "policy": signatures_lib.POLICY,
            "signatures": signatures_lib.signature_names(model),
            "outputs": signatures_lib.output_keys(functions.class_names),
            "top_k": functions.top_k,
            "class_names": functions.class_names,
            "warmup_requests": warmup.WARMUP_FILE if write_warmup else None,
        }
        tf.io.gfile.makedirs(os.path.join(staging, "assets.extra"))
        if write_warmup:
            warmup.write_warmup_requests(staging, functions)
        with tf.io.gfile.GFile(os.path.join(staging, INFO_FILE), "w") as f:
            json.dump(info, f, indent=2)
        if tf.io.gfile.exists(final):
            tf.io.gfile.rmtree(final)
        files.move_tree(staging, final)  # atomic on a local disk; see move_tree elsewhere
    except BaseException:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        raise
    return final
