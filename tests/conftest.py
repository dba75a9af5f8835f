"""Test configuration: quiet TensorFlow, CPU only, a private kernel cache for the session."""
import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

KERNEL_CACHE_VARIABLE = "TF_PYRAMID_CACHE_DIR"  # tf_pyramid.data.compiled_ops.CACHE_VARIABLE


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory):
    """The session's compiled-kernel cache (0700; one for all xdist workers), also seen by child
    processes: tests never use or fill the user's cache. Empty until `compiled_kernels`."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, shared by its workers
    cache = root / "kernel-cache"
    cache.mkdir(mode=0o700, exist_ok=True)
    os.environ[KERNEL_CACHE_VARIABLE] = str(cache)
    return cache


@pytest.fixture(scope="session")
def compiled_kernels(kernel_cache):
    """Builds the compiled kernels into the session's cache once (`python -m
    tf_pyramid.build_kernels`; concurrent workers take turns and the later ones find it built)
    where a C++ compiler exists, so that tests that expect the kernels get them. Returns the
    library's path, or None where there is no compiler."""
    from tf_pyramid.data import compiled_ops  # noqa: PLC0415
    if compiled_ops.find_compiler() is None:
        return None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "tf_pyramid.build_kernels"], cwd=repo,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the kernel build failed:\n{result.stderr[-3000:]}"
    compiled_ops._state.clear()  # a process that looked before the build looks again
    return result.stdout.strip().splitlines()[-1]
