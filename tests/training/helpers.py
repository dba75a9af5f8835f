"""Shared settings of the training tests: tiny runs on the bundled MNIST digits (offline)."""
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY = dict(model="mnist_m1", resolution=28, dataset="mnist", source="bundled", batch_size=16,
            eval_batch_size=250, epochs=2, steps_per_epoch=3, c_t=[2.0], lambda_f=1e-6,
            lambda_t=1e-7, lambda_r=1e-7, mc_samples=2, checkpoint_every=2, seed=3, export=False,
            validation_split="none")


def tiny_config(model_dir, **overrides):
    from tf_pyramid.training import default_config  # noqa: PLC0415
    return default_config(**dict(TINY, model_dir=str(model_dir), **overrides))


def tiny_args(model_dir, **overrides):
    """TINY as command-line flags."""
    args = []
    for key, value in dict(TINY, model_dir=str(model_dir), **overrides).items():
        for item in value if isinstance(value, list) else [value]:
            args.append(f"--{key}={str(item).lower() if isinstance(item, bool) else item}")
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def python_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def run_module(module, args, timeout=240, **env):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=python_env(**env),
                          capture_output=True, text=True, timeout=timeout)
