"""The release as a user gets it: the wheel built from this checkout, installed (not editable) into
a fresh virtual environment, its console script trained from a directory outside the checkout,
and the run's model.keras reloaded in a fresh process of that environment."""
import configparser
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

from tests.helpers import REPO

CONSOLE_SCRIPTS = {"tf-pyramid-train": "tf_pyramid.train:run",
                   "tf-pyramid-evaluate": "tf_pyramid.evaluate:run",
                   "tf-pyramid-export": "tf_pyramid.export:run",
                   "tf-pyramid-build-kernels": "tf_pyramid.build_kernels:run"}
# What the build reads from the checkout (copied, so that the build's own folders, build/ and
# *.egg-info, are not left in the checkout).
BUILD_INPUTS = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "tf_pyramid", "flags")


def _files_under(root, suffix):
    """Paths (relative to `root`, '/'-separated) of the files ending in `suffix`."""
    found = set()
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(suffix):
                found.add(os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/"))
    return found


def _packages_in_checkout():
    return {os.path.relpath(directory, REPO).replace(os.sep, ".")
            for directory, _, names in os.walk(os.path.join(REPO, "tf_pyramid"))
            if "__init__.py" in names}


def test_setup_cfg_lists_every_package():
    """setup.cfg lists its packages (tf_pyramid.flags is mapped from flags/ and cannot be found):
    a package left out of the list would be missing from the wheel."""
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    listed = set(config["options"]["packages"].split())
    assert listed == _packages_in_checkout() | {"tf_pyramid.flags"}, (
        "setup.cfg [options] packages must name every package under tf_pyramid/ plus "
        f"tf_pyramid.flags; missing {sorted(_packages_in_checkout() - listed)}, "
        f"extra {sorted(listed - _packages_in_checkout() - {'tf_pyramid.flags'})}")


def _build_wheel(tmp_path):
    """The wheel of this checkout, built offline with the installed setuptools."""
    for module in ("setuptools", "wheel"):
        if subprocess.run([sys.executable, "-c", f"import {module}"]).returncode != 0:
            pytest.fail(f"building the wheel offline needs `{module}` in the test environment: "
                        "pip install -e '.[test]'")
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    dist = tmp_path / "dist"
    process = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, f"wheel build failed:\n{process.stdout[-3000:]}\n" \
                                    f"{process.stderr[-3000:]}"
    wheels = list(dist.glob("tf_pyramid-*.whl"))
    assert len(wheels) == 1, os.listdir(dist)
    return wheels[0]


def _fresh_environment(directory):
    """A new virtual environment whose own site-packages is empty; a .pth file puts this
    interpreter's site-packages after it, for the dependencies (TensorFlow is not downloaded
    again). Directories named in a .pth file are searched, their own .pth files are not run, so
    the checkout's editable install does not reach the new environment."""
    venv.create(directory, with_pip=False)
    python = os.path.join(directory, "bin", "python")
    own = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    parents = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                             sysconfig.get_paths()["platlib"]])
    with open(os.path.join(own, "dependencies_of_the_test_environment.pth"), "w") as file:
        file.write("".join(f"{path}\n" for path in parents if os.path.isdir(path)))
    return python, own


def _user_env():
    """The environment of a user's shell: nothing of the checkout on the path, CPU only."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1")
    return env


def _run(args, cwd, timeout=300):
    process = subprocess.run(args, cwd=cwd, env=_user_env(), capture_output=True, text=True,
                             timeout=timeout)
    assert process.returncode == 0, (f"{args[:2]} failed ({process.returncode}):\n"
                                     f"{process.stdout[-3000:]}\n{process.stderr[-5000:]}")
    return process


def train_experiment(bin_dir, package_dir, model_dir, cwd):  # noqa: ARG001
    """The user's training command: a paper experiment by name (its flagfile nests the MNIST
    family files inside the installed package), run by the installed console script with data,
    epochs, resolution and evaluation overridden."""
    return _run([os.path.join(bin_dir, "tf-pyramid-train"), "--experiment=mnist/m2_56_ct6",
                 "--source=bundled", "--resolution=28", "--c_t=2", "--epochs=1",
                 "--steps_per_epoch=2", "--batch_size=16", "--eval_passes=1",
                 f"--model_dir={model_dir}"], cwd=cwd, timeout=600)


INSPECT_INSTALL = """
import importlib.metadata, json, os, tf_pyramid
print(json.dumps({"file": tf_pyramid.__file__, "version": tf_pyramid.__version__,
                  "metadata_version": importlib.metadata.version("tf_pyramid")}))
"""

RELOAD_AND_PREDICT = """
import json, sys
import keras, numpy as np, tf_pyramid
model = keras.saving.load_model(sys.argv[1])
images = np.zeros([2, model.input_size, model.input_size, model.channels], np.float32)
outputs = model(images, training=False)
logits = np.asarray(outputs["logits"])
print(json.dumps({"file": tf_pyramid.__file__, "shape": list(logits.shape),
                  "finite": bool(np.isfinite(logits).all()),
                  "learning_rule": model.learning_rule is not None}))
"""


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_environment_and_trains_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    wheel_version = wheel.name.split("-")[1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = "".join(archive.read(n).decode() for n in names
                               if n.endswith(".dist-info/entry_points.txt"))
    assert any(n.endswith("LICENSE") and ".dist-info/" in n for n in names), sorted(names)[-8:]
    for script, target in CONSOLE_SCRIPTS.items():
        assert f"{script} = {target}" in entry_points, entry_points

    environment = tmp_path / "venv"
    python, site_packages = _fresh_environment(environment)
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
          "--disable-pip-version-check", str(wheel)], cwd=tmp_path)

    user_dir = tmp_path / "user"  # the user's working directory, outside the checkout
    user_dir.mkdir()
    installed = json.loads(_run([python, "-c", INSPECT_INSTALL], cwd=user_dir).stdout)
    package_dir = os.path.dirname(installed["file"])
    assert package_dir == os.path.join(site_packages, "tf_pyramid"), installed
    assert installed["version"] == installed["metadata_version"] == wheel_version, installed
    # Every flagfile and kernel source of the checkout, at the same relative paths.
    assert _files_under(os.path.join(package_dir, "flags"), ".cfg") == _files_under(
        os.path.join(REPO, "flags"), ".cfg")
    assert _files_under(os.path.join(package_dir, "data", "kernels"), ".cc") == _files_under(
        os.path.join(REPO, "tf_pyramid", "data", "kernels"), ".cc") != set()
    assert _files_under(package_dir, ".py") == _files_under(os.path.join(REPO, "tf_pyramid"), ".py")
    bin_dir = os.path.join(environment, "bin")
    for script in CONSOLE_SCRIPTS:
        assert os.access(os.path.join(bin_dir, script), os.X_OK), sorted(os.listdir(bin_dir))

    run_dir = tmp_path / "run"
    train_experiment(bin_dir, package_dir, run_dir, cwd=user_dir)
    assert (run_dir / "model.keras").is_file(), sorted(os.listdir(run_dir))
    assert not (user_dir / "runs").exists()  # --model_dir took the place of the flagfile's

    reloaded = json.loads(_run([python, "-c", RELOAD_AND_PREDICT, str(run_dir / "model.keras")],
                               cwd=user_dir).stdout)
    assert reloaded["file"] == installed["file"]
    assert reloaded["shape"] == [2, 10], reloaded
    assert reloaded["finite"] and reloaded["learning_rule"], reloaded
