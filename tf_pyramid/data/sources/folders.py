"""A folder of class folders (split folders, or a hashed validation split) as a source of
encoded images (see `common`)."""
import collections
import hashlib
import os

import tensorflow as tf
from absl import logging

from tf_pyramid.data.sources import common

CLASS_INDEX_FILE = "class_index.txt"  # written by earlier versions into the data folder; now unused
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
# Folder names of each split in the split-folder layout (ImageNet / torchvision use "val").
FOLDER_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val"), "test": ("test",)}


FolderSplit = collections.namedtuple(
    "FolderSplit", ["paths", "labels", "class_names", "folder", "left_out"], defaults=[None])
# left_out: {kind: count} of the files and links the walk left out (see _LeftOut.KINDS)


def _subfolders(directory):
    """Sorted names of the sub-folders of `directory`, hidden ones (".name") left out."""
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(directory)
                  if not name.startswith(".") and tf.io.gfile.isdir(os.path.join(directory, name)))


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


class _LeftOut:
    """Files and links a folder walk left out, by kind, for one warning per kind and split."""

    KINDS = {
        "not_regular": "not regular files (FIFOs, sockets, devices: reading them would block "
                       "or fail)",
        "odd_names": "file names that are not valid UTF-8 (TensorFlow paths are UTF-8; rename "
                     "them)",
        "broken": "broken links or files that cannot be inspected",
        "links_inside": "directory links into the data folder itself (., .., another class or "
                        "split: they would duplicate or mislabel files)",
        "links_repeated": "directory links to a folder read already (each real folder is read "
                          "once)",
    }

    def __init__(self):
        self.paths = {kind: [] for kind in self.KINDS}

    def add(self, kind, path):
        # An odd name is shown with its undecodable bytes as \xNN escapes.
        self.paths[kind].append(os.fsencode(path).decode("utf-8", "backslashreplace"))

    def warn(self, folder):
        for kind, paths in self.paths.items():
            if paths:
                shown = sorted(paths)[:common.NAMES_SHOWN]
                more = len(paths) - len(shown)
                logging.warning("%s: left out %d %s: %s%s.", folder, len(paths),
                                self.KINDS[kind], ", ".join(shown),
                                f" and {more} more" if more else "")

    def counts(self):
        return {kind: len(paths) for kind, paths in self.paths.items() if paths}


def _folder_key(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _is_inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _images_under(folder, *, seen=None, data_root=None, left_out=None):
    """Sorted paths of the image files anywhere under `folder` (as Keras and torchvision do).

    Local folders: links to files are followed; a link to a directory is followed unless it
    leads into `data_root` (the data folder) or to a folder in `seen` (the (st_dev, st_ino) of
    the folders read so far, updated here): each real folder is read once, so no loop, no
    duplicate, no other class's files under this label. Non-regular files (FIFOs, sockets,
    devices) and names that are not UTF-8 are left out and recorded in `left_out` (`_LeftOut`).
    """
    if "://" in folder:  # gfile.walk: no links or special files on object stores
        paths = []
        for directory, subdirs, files in tf.io.gfile.walk(folder):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            paths.extend(os.path.join(directory, f) for f in files if _is_image(f))
        return sorted(paths)
    seen = set() if seen is None else seen
    left_out = _LeftOut() if left_out is None else left_out
    root = os.path.realpath(data_root) if data_root else None
    seen.add(_folder_key(folder))
    paths, pending = [], [folder]
    while pending:  # os.scandir: file types come with the listing, no stat per regular file
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.is_dir():
                    continue
                try:
                    entry.name.encode("utf-8")
                except UnicodeEncodeError:  # undecodable bytes, kept as surrogates by os
                    if _is_image(entry.name) or entry.is_dir():
                        left_out.add("odd_names", entry.path)
                    continue
                try:
                    if entry.is_dir():
                        if entry.is_symlink():
                            if root and _is_inside(os.path.realpath(entry.path), root):
                                left_out.add("links_inside", entry.path)
                                continue
                            key = _folder_key(entry.path)
                            if key in seen:
                                left_out.add("links_repeated", entry.path)
                                continue
                            seen.add(key)
                        pending.append(entry.path)
                    elif _is_image(entry.name):
                        if entry.is_file():
                            paths.append(entry.path)
                        elif os.path.lexists(entry.path) and os.path.exists(entry.path):
                            left_out.add("not_regular", entry.path)
                        else:
                            left_out.add("broken", entry.path)
                except OSError:
                    left_out.add("broken", entry.path)
    return sorted(paths)


def in_validation(relative_path, validation_fraction):
    """Whether a file belongs to the hash-chosen validation split.

    The first 8 bytes of sha256(relative path, "/"-separated, UTF-8) as a number in [0, 1),
    compared with the fraction: the same files on every run and machine, whatever the folder's
    location, and adding or removing files moves no other file between train and validation.
    """
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < validation_fraction * 2.0 ** 64


def _check_validation_fraction(validation_fraction):
    if validation_fraction is None:
        return
    if (isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float))
            or not 0 < validation_fraction < 1):
        raise ValueError("validation_fraction must be None (no hash split) or a number strictly "
                         f"between 0 and 1, e.g. 0.1; got {validation_fraction!r}.")


def _folder_layout(data_dir):
    """(split folders {split: path}, layout name): split folders, or one flat class folder."""
    folders = _subfolders(data_dir)
    split_names = {name for names in FOLDER_SPLIT_NAMES.values() for name in names}
    found = [name for name in folders if name in split_names]
    if not found:
        return {}, "flat"
    others = [name for name in folders if name not in split_names]
    if others:
        raise ValueError(
            f"{data_dir!r} mixes split folders {found} with other folders {common.named(others)}. "
            "Use either <data_dir>/train/<class>/ (with val/ or validation/, test/), or only "
            "class folders <data_dir>/<class>/; move the other folders out.")
    split_dirs = {}
    for split, names in FOLDER_SPLIT_NAMES.items():
        present = [name for name in names if name in found]
        if len(present) > 1:
            raise ValueError(f"{data_dir!r} has both {present[0]}/ and {present[1]}/: which is "
                             "the validation split is ambiguous; keep one.")
        if present:
            split_dirs[split] = os.path.join(data_dir, present[0])
    return split_dirs, "split folders"


def _split_source(data_dir, split, validation_fraction):
    """(folder whose sub-folders are the classes, hash part to keep or None, class list folder)."""
    split_dirs, layout = _folder_layout(data_dir)
    train_dir = data_dir if layout == "flat" else split_dirs.get("train")
    if validation_fraction is not None:
        if "validation" in split_dirs:
            raise ValueError(
                f"validation_fraction={validation_fraction} holds out files of the training "
                f"folder, but {split_dirs['validation']!r} already is a validation folder: drop "
                "one of them.")
        if split in ("train", "validation") and train_dir is not None:
            return train_dir, split, train_dir
    if split in split_dirs:
        return split_dirs[split], None, train_dir or split_dirs[split]
    if split == "train" and train_dir is not None:
        return train_dir, None, train_dir
    if split == "validation":
        raise FileNotFoundError(
            f"{data_dir!r} has no validation split: add {data_dir}/val/<class>/<image> (or "
            "validation/), or pass validation_fraction (e.g. 0.1) to hold out that fraction of "
            "the training files, chosen by a hash of their paths (the same files on every run).")
    if split == "test":
        where = ("a flat folder of class folders has train and validation (validation_fraction) "
                 "only" if layout == "flat" else f"there is no {data_dir}/test/ folder")
        raise FileNotFoundError(
            f"No test split in {data_dir!r}: {where}. Evaluate on 'validation', or add "
            "<data_dir>/train/<class>/ and <data_dir>/test/<class>/ folders.")
    raise FileNotFoundError(
        f"No folder {os.path.join(data_dir, split)!r}: expected <data_dir>/{split}/<class "
        "name>/<image file> (JPEG, PNG, GIF or BMP), or class folders directly in data_dir.")


class ClassSetChangedError(ValueError):
    """The class folders of the data no longer match the run's class list (`missing`: classes of
    the list without a folder; `new`: folders not in the list)."""

    def __init__(self, message, missing, new):
        super().__init__(message)
        self.missing, self.new = missing, new


def _check_class_set(class_names, folders, where):
    """Raises ClassSetChangedError unless the class folders of `where` are the run's classes."""
    missing = [name for name in class_names if name not in folders]
    new = [name for name in folders if name not in set(class_names)]
    if missing or new:
        raise ClassSetChangedError(
            f"The class folders of {where!r} differ from the run's class list "
            f"({len(class_names)} classes): "
            + "; ".join(([f"missing {common.named(missing)}"] if missing else [])
                        + ([f"not in the list {common.named(new)}"] if new else []))
            + ". The run's labels would no longer cover the same classes (a class folder "
            "removed, renamed or added since the run started?). Restore the folders as they "
            "were, or start a new run (another model_dir).", missing, new)


def folder_split(data_dir, split, *, class_names=None, validation_fraction=None):
    """The files and labels of one split of a folder dataset (`FolderSplit`); writes nothing.

    Layouts: `<data_dir>/train/<class>/...` with `val/` or `validation/` and `test/` (ImageNet,
    torchvision ImageFolder), or `<data_dir>/<class>/...` (Keras
    `image_dataset_from_directory`): all of it is the train split. `validation_fraction` holds out
    the files whose path hash falls below it as the validation split (when there is no validation
    folder). Labels index `class_names` when given (the run's class list, so that labels do not
    move when folders are added), else the sorted class folders of the training folder; given
    class names that differ from the training folder's class folders raise
    `ClassSetChangedError`. Links, special files and odd names: `_images_under`.
    """
    if not data_dir:
        raise ValueError("dataset='folder' needs data_dir: a folder with <split>/<class>/<image> "
                         "(e.g. train/cat/001.jpg) or <class>/<image>.")
    _check_validation_fraction(validation_fraction)
    if not tf.io.gfile.isdir(data_dir):
        raise FileNotFoundError(f"No folder {data_dir!r}: expected <data_dir>/train/<class "
                                "name>/<image file> (with val/ or validation/, test/), or "
                                "<data_dir>/<class name>/<image file>.")
    folder, part, class_folder = _split_source(data_dir, split, validation_fraction)
    class_dirs = _subfolders(folder)
    if not class_dirs:
        loose = [name for name in tf.io.gfile.listdir(folder) if _is_image(name)]
        raise ValueError(
            f"{folder!r} has no class folders"
            + (f", only {len(loose)} image files, which have no labels: sort them into one "
               "sub-folder per class" if loose else "")
            + f": expected {folder}/<class name>/<image file>.")
    given = class_names is not None
    if class_names is None:
        class_names = class_dirs if class_folder == folder else _subfolders(class_folder)
        where = f"the class folders of {class_folder!r}"
    else:
        class_names = list(class_names)
        where = f"the given class_names ({len(class_names)}, the run's class list)"
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in class_dirs if name not in index]
    if unknown:
        raise ValueError(f"Class folders {common.named(unknown)} of {folder!r} are not in {where}: a "
                         "label for them would not exist or would change. Remove them, or start "
                         "a new run that includes them.")
    if given:
        _check_class_set(class_names, class_dirs if class_folder == folder
                         else _subfolders(class_folder), class_folder)
    _warn_about_old_class_index(data_dir, class_names)
    paths, labels, empty = [], [], []
    seen, left_out = set(), _LeftOut()
    if "://" not in folder:  # every class folder and their parents are read once, as classes
        seen.update(_folder_key(path) for path in (
            data_dir, folder, *(os.path.join(folder, name) for name in class_dirs)))
    for name in class_dirs:
        class_dir = os.path.join(folder, name)
        files = _images_under(class_dir, seen=seen, data_root=data_dir, left_out=left_out)
        if not files:
            empty.append(name)
        if part is not None:
            chosen = [in_validation(os.path.relpath(f, folder).replace(os.sep, "/"),
                                    validation_fraction) for f in files]
            files = [f for f, valid in zip(files, chosen) if valid == (part == "validation")]
        paths.extend(files)
        labels.extend([index[name]] * len(files))
    if empty:
        logging.warning("%s: class folders with no image files (%s): these classes have no "
                        "examples here.", folder, common.named(empty))
    left_out.warn(folder)
    loose = [name for name in tf.io.gfile.listdir(folder) if _is_image(name)]
    if loose:
        logging.warning("%s: %d image files lie beside the class folders and are ignored (no "
                        "label), e.g. %s.", folder, len(loose), loose[:3])
    if not paths:
        raise ValueError(
            f"No images in {folder!r}"
            + (f" for {part} (validation_fraction={validation_fraction})" if part else "")
            + f": expected <class name>/<file> with one of the extensions {IMAGE_EXTENSIONS}.")
    return FolderSplit(paths, labels, class_names, folder, left_out.counts())


def _warn_about_old_class_index(data_dir, class_names):
    """Earlier versions wrote a class index into the data folder; say so if it disagrees."""
    old_names = common.read_names(os.path.join(data_dir, CLASS_INDEX_FILE))
    if old_names is not None and old_names != list(class_names):
        logging.warning("%s is not used (labels follow %d classes, not its %d lines); a model "
                        "trained with it needs its class list passed as class_names.",
                        os.path.join(data_dir, CLASS_INDEX_FILE), len(class_names),
                        len(old_names))


def folder_records(split, data_dir, *, training, seed, input_context, class_names=None,
                   validation_fraction=None):
    """Images of a folder dataset (`folder_split`); nothing is written into `data_dir`."""
    found = folder_split(data_dir, split, class_names=class_names,
                         validation_fraction=validation_fraction)
    num_examples = len(found.paths)
    files, sharded = common.shard_list(list(zip(found.paths, found.labels)), input_context)
    paths, labels = zip(*files)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"path": list(paths), "label": tf.constant(labels, tf.int32)})
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed)
    return common.ImageRecords(dataset, _read_image_file, num_examples, len(found.class_names),
                        found.class_names, sharded)


def _read_image_file(raw):
    return {"encoded": tf.io.read_file(raw["path"]), "label": raw["label"],
            "bboxes": tf.zeros([0, 4], tf.float32), "name": raw["path"]}
