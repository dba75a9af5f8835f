"""The compiled-kernel cache on the user's path, each case in fresh processes: a library that
another user could have planted never runs, a damaged one never crashes and is rebuilt by
`python -m tf_pyramid.build_kernels`, a planted lock link truncates nothing, and input pipelines
load what the build made without ever compiling (docs/data.md, "Compiled kernels")."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, python_env, run_module
from tf_pyramid.data import compiled_ops

HAS_COMPILER = compiled_ops.find_compiler() is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler on this machine")

# An input pipeline's first steps (colour distortion, evaluation resize) in a fresh process.
_PIPELINE = """
import json, numpy as np, tensorflow as tf
from tf_pyramid.data import compiled_ops, image_ops
image = tf.constant(np.random.default_rng(0).uniform(0, 1, (20, 30, 3)).astype(np.float32))
pixels = tf.constant(np.random.default_rng(1).integers(0, 256, (45, 61, 3)).astype(np.uint8))
colour = image_ops.distort_color(image, seed=[3, 1]).numpy()
resized = image_ops.resize_antialiased(pixels, size=24, value_range=(-1, 1)).numpy()
print(json.dumps({"used": compiled_ops.library() is not None, "why_not": compiled_ops.why_not(),
                  "checksum": float(colour.sum()) + float(resized.sum())}))
"""

# A library whose constructor, run by the dynamic loader before any check could, leaves a mark.
_PLANTED_SOURCE = r"""
#include <cstdio>
#include <cstdlib>
__attribute__((constructor)) static void planted() {
  const char* path = std::getenv("PLANTED_MARKER");
  if (path) { FILE* f = std::fopen(path, "w"); if (f) { std::fputs("ran", f); std::fclose(f); } }
}
"""

# A stand-in compiler: "builds" by copying the session's real library to the `-o` path (or fails
# when FAKE_COMPILER_FAILS is set), so that rebuilds cost no compile time. Its path is part of
# the cache key, so its library has a name of its own.
_FAKE_COMPILER = """#!/bin/sh
if [ -n "$FAKE_COMPILER_FAILS" ]; then echo "fake compiler: cannot compile" >&2; exit 1; fi
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then cp "$GOOD_LIBRARY" "$2"; exit 0; fi
  shift
done
exit 1
"""


def _pipeline(cache, **env):
    """Runs `_PIPELINE` with kernel cache `cache`; returns (its JSON report, stderr)."""
    result = subprocess.run([sys.executable, "-c", _PIPELINE], cwd=REPO,
                            env=python_env(TF_PYRAMID_CACHE_DIR=str(cache), **env),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"rc {result.returncode}:\n{result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def _build(cache, **env):
    return run_module("tf_pyramid.build_kernels", [], timeout=600,
                      TF_PYRAMID_CACHE_DIR=str(cache), **env)


def _library_path(monkeypatch, cache, **env):
    """The library path a process with kernel cache `cache` (and `env`) looks for."""
    with monkeypatch.context() as patch:
        patch.setenv(compiled_ops.CACHE_VARIABLE, str(cache))
        for name, value in env.items():
            patch.setenv(name, value)
        return compiled_ops.library_path()


def _private(path):
    path.mkdir(mode=0o700)
    return path


def _planted_library(tmp_path):
    source = tmp_path / "planted.cc"
    source.write_text(_PLANTED_SOURCE)
    library = tmp_path / "planted.so"
    subprocess.run([compiled_ops.find_compiler(), "-shared", "-fPIC", str(source), "-o",
                    str(library)], check=True, capture_output=True, timeout=120)
    return library


def _forged_manifest(library_path):
    """A manifest an attacker can write as well: the planted file's real hash, "passed"."""
    with open(library_path, "rb") as f:
        data = f.read()
    with open(compiled_ops.manifest_path(library_path), "w") as f:
        json.dump({"check": "passed", "sha256": compiled_ops._sha256(data),
                   "bytes": len(data)}, f)


@pytest.fixture
def fake_compiler(tmp_path, compiled_kernels):
    """(CXX, environment) of the stand-in compiler that copies the session's library."""
    if compiled_kernels is None:
        pytest.skip("no C++ compiler on this machine: no built library to copy")
    script = tmp_path / "fake-c++"
    script.write_text(_FAKE_COMPILER)
    script.chmod(0o700)
    return {"CXX": str(script), "GOOD_LIBRARY": compiled_kernels}


@needs_compiler
@pytest.mark.parametrize("where", ["cache others can write", "no build record",
                                   "another build's record"])
def test_a_planted_library_never_runs(tmp_path, monkeypatch, compiled_kernels, where):
    """A library at the cache key's name whose constructor leaves a mark: in a world-writable
    cache (even with a forged manifest), in the private cache without a manifest, or with a
    manifest whose hash is another file's, it is refused before it is loaded."""
    planted = _planted_library(tmp_path)
    cache = _private(tmp_path / "cache")
    target = _library_path(monkeypatch, cache)
    shutil.copy(planted, target)
    if where == "cache others can write":
        _forged_manifest(target)
        cache.chmod(0o777)
    elif where == "another build's record":
        shutil.copy(compiled_ops.manifest_path(compiled_kernels),
                    compiled_ops.manifest_path(target))
    marker = tmp_path / "constructor-ran"
    report, stderr = _pipeline(cache, PLANTED_MARKER=str(marker))
    assert not marker.exists(), "the planted library's code ran"
    assert not report["used"]
    expected = {"cache others can write": f"the folder {cache} can be written by other users",
                "no build record": "its manifest",
                "another build's record": "its SHA-256 differs"}[where]
    assert expected in report["why_not"], report["why_not"]
    warnings = [line for line in stderr.splitlines() if "runs on TensorFlow's ops" in line]
    assert len(warnings) == 1 and expected in warnings[0]


@needs_compiler
@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_library_of_another_user_is_refused_even_in_a_private_cache(tmp_path, monkeypatch):
    planted = _planted_library(tmp_path)
    cache = _private(tmp_path / "cache")
    target = _library_path(monkeypatch, cache)
    shutil.copy(planted, target)
    _forged_manifest(target)
    os.chown(target, 65534, 65534)
    marker = tmp_path / "constructor-ran"
    report, _ = _pipeline(cache, PLANTED_MARKER=str(marker))
    assert not marker.exists() and not report["used"]
    assert f"{target} belongs to user id 65534" in report["why_not"]


def test_a_planted_lock_link_truncates_nothing(tmp_path, monkeypatch):
    """`<library>.lock` as a symbolic link to another file: neither a pipeline nor the build
    opens, truncates or locks the target; the build names the link."""
    cache = _private(tmp_path / "cache")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = _library_path(monkeypatch, cache) + ".lock"
    os.symlink(victim, lock)
    report, _ = _pipeline(cache)
    assert not report["used"]
    built = _build(cache)
    assert victim.read_text() == "precious"
    assert built.returncode == 1
    assert f"the lock file {lock} is a symbolic link; remove it" in built.stderr


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_library_falls_back_without_a_crash_and_the_build_rebuilds_it(
        tmp_path, monkeypatch, fake_compiler, damage):
    """A library cut in half (its manifest intact), or an empty one with no manifest (as an
    interrupted or older build leaves it): the pipeline runs on TensorFlow's ops (today's code
    crashed with a bus error on the truncated one), the build rebuilds it, then it is used."""
    cache = _private(tmp_path / "cache")
    target = _library_path(monkeypatch, cache, CXX=fake_compiler["CXX"])
    good = open(fake_compiler["GOOD_LIBRARY"], "rb").read()
    if damage == "truncated":
        with open(target, "wb") as f:
            f.write(good[:len(good) // 2])
        shutil.copy(compiled_ops.manifest_path(fake_compiler["GOOD_LIBRARY"]),
                    compiled_ops.manifest_path(target))
    else:
        open(target, "wb").close()
    report, _ = _pipeline(cache, **fake_compiler)
    assert not report["used"]
    assert ("its SHA-256 differs" if damage == "truncated" else "its manifest") in report["why_not"]
    built = _build(cache, **fake_compiler)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "Rebuilding:" in built.stderr and built.stdout.strip() == target
    assert open(target, "rb").read() == good
    if damage == "empty":
        return  # loading the rebuilt library: as for the truncated one
    rebuilt, _ = _pipeline(cache, **fake_compiler)
    assert rebuilt["used"] and rebuilt["why_not"] is None
    assert rebuilt["checksum"] == report["checksum"]  # same images with and without


def test_leftovers_of_a_killed_build_are_removed_by_the_next_build(tmp_path, monkeypatch,
                                                                   fake_compiler):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o755)  # as left by an older version; the build makes it private
    key = os.path.basename(_library_path(monkeypatch, cache, CXX=fake_compiler["CXX"]))[
        len("tf_pyramid_ops_"):-len(".so")]
    ours = [cache / f"tmp-{key}-a1b2c3.so", cache / f"tmp-{key}-d4e5f6.json"]
    legacy_old, legacy_recent = cache / "tmpq1w2e3r4.so", cache / "tmpz9x8c7v6.so"
    for path in [*ours, legacy_old, legacy_recent]:
        path.write_bytes(b"\x7fELF half a library")
    an_hour_ago = time.time() - 3600
    os.utime(legacy_old, (an_hour_ago, an_hour_ago))
    built = _build(cache, **fake_compiler)
    assert built.returncode == 0, built.stderr[-3000:]
    assert not any(path.exists() for path in [*ours, legacy_old])
    assert legacy_recent.exists()  # may belong to an older version's build still running
    assert "Removed 3 file(s) left by an interrupted build" in built.stderr
    new_cache = tmp_path / "new" / "cache"
    built = _build(new_cache, **fake_compiler)
    assert built.returncode == 0, built.stderr[-3000:]
    assert (new_cache.stat().st_mode & 0o777) == 0o700  # a new cache is private


@needs_compiler
def test_a_read_only_cache_holding_a_valid_library_is_used(tmp_path, monkeypatch,
                                                           compiled_kernels):
    cache = _private(tmp_path / "cache")
    target = _library_path(monkeypatch, cache)
    shutil.copy(compiled_kernels, target)
    shutil.copy(compiled_ops.manifest_path(compiled_kernels), compiled_ops.manifest_path(target))
    cache.chmod(0o500)
    try:
        report, _ = _pipeline(cache)
    finally:
        cache.chmod(0o700)
    assert report == dict(report, used=True, why_not=None)
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(target),
                                                os.path.basename(
                                                    compiled_ops.manifest_path(target))])


def test_a_failed_build_is_recorded_and_named_by_the_pipelines(tmp_path, fake_compiler):
    """The compiler fails: the build exits 1 with its message, and pipelines say that the last
    build failed (and never retry it themselves)."""
    cache = _private(tmp_path / "cache")
    failing = dict(fake_compiler, FAKE_COMPILER_FAILS="1")
    built = _build(cache, **failing)
    assert built.returncode == 1
    assert "Error: the compiled kernels were not built" in built.stderr
    assert "fake compiler: cannot compile" in built.stderr
    report, stderr = _pipeline(cache, **failing)
    assert not report["used"] and "their last build failed" in report["why_not"]
    assert "fake compiler: cannot compile" in report["why_not"] and "Compiling" not in stderr


def test_the_build_refuses_a_cache_others_can_write_unless_a_shared_cache_is_allowed(
        tmp_path, fake_compiler):
    cache = _private(tmp_path / "cache")
    cache.chmod(0o777)
    refused = _build(cache, **fake_compiler)
    assert refused.returncode == 1
    assert f"refusing to build into {cache}: the folder {cache} can be written by other " \
           "users" in refused.stderr
    assert not list(cache.glob("*.so"))
    shared = dict(fake_compiler, TF_PYRAMID_SHARED_KERNEL_CACHE="1")
    built = _build(cache, **shared)
    assert built.returncode == 0, built.stderr[-3000:]
    assert _pipeline(cache, **shared)[0]["used"]


def test_serving_and_the_input_convention_do_not_import_the_compiled_kernels():
    result = subprocess.run(
        [sys.executable, "-c", "import sys, tf_pyramid.serving, tf_pyramid.data.input_convention;"
         " print('tf_pyramid.data.compiled_ops' in sys.modules)"],
        cwd=REPO, env=python_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "False"
