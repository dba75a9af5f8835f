"""`--data_service`: training fed by a tf.data service (an in-process dispatcher and worker on
loopback), the pipeline it ships, and the errors when it cannot be used."""
import contextlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, free_port, python_env, run_module, tiny_args, tiny_config
from tf_pyramid.data import build_dataset, compiled_ops
from tf_pyramid.data import service as data_service
from tf_pyramid.training.flags import FlagError
from tf_pyramid.training.trainer import Trainer


@pytest.fixture(scope="module")
def service():
    """(dispatcher, worker) on loopback, for the whole module."""
    svc = tf.data.experimental.service
    dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
    address = dispatcher.target.split("://")[1]
    worker = svc.WorkerServer(svc.WorkerConfig(dispatcher_address=address, port=0))
    yield dispatcher, worker, address
    worker.stop()
    dispatcher.stop()


def test_tiny_run_is_fed_by_the_service(tmp_path, service):
    dispatcher, worker, address = service
    tasks_before = worker._num_tasks()  # noqa: SLF001
    result = Trainer(tiny_config(tmp_path / "run", data_service=f"grpc://{address}")).run()
    assert result["final_step"] == 6 and not result["interrupted"]
    assert result["data_service"] == address
    assert result["metrics"]["levels"][0]["accuracy"] >= 0.0
    # The training batches were produced by the worker: it runs a task of the run's job.
    assert worker._num_tasks() > tasks_before  # noqa: SLF001
    assert dispatcher._num_workers() == 1  # noqa: SLF001


def test_trainer_workers_share_one_job_per_run_and_start():
    assert data_service.job_name("gs://b/run", 0) == data_service.job_name("gs://b/run", 0)
    assert data_service.job_name("gs://b/run", 0) != data_service.job_name("gs://b/run", 500)
    assert data_service.job_name("gs://b/run", 0) != data_service.job_name("gs://b/other", 0)


def test_unreachable_dispatcher_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(data_service.TIMEOUT_VARIABLE, "1")
    port = free_port()  # nothing listens there
    with pytest.raises(FlagError) as error:
        Trainer(tiny_config(tmp_path / "run", data_service=f"grpc://localhost:{port}")).setup()
    message = str(error.value)
    assert f"grpc://localhost:{port}" in message and "waited 1 s" in message
    assert f"python -m tf_pyramid.data_service --role=dispatcher --port={port}" in message


@pytest.mark.parametrize("value", ["localhost", "http://localhost:5050", "grpc://host:port"])
def test_bad_address_names_the_expected_form(value):
    with pytest.raises(data_service.DataServiceError, match="grpc://HOST:PORT"):
        data_service.parse_address(value)


def test_unreachable_dispatcher_on_the_command_line(tmp_path):
    port = free_port()
    done = run_module("tf_pyramid.train", tiny_args(tmp_path / "run") + [
        f"--data_service=grpc://127.0.0.1:{port}"], TF_PYRAMID_DATA_SERVICE_TIMEOUT_S="1")
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"Cannot reach the tf.data service dispatcher at grpc://127.0.0.1:{port}" in done.stderr
    assert "--role=dispatcher" in done.stderr


def _folder(tmp_path):
    from PIL import Image  # noqa: PLC0415
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), np.uint8)).save(
                tmp_path / "train" / name / f"{i}.jpg")
    return str(tmp_path)


def _service_pipeline(data_dir):
    with data_service.worker_ops():
        dataset, info = build_dataset("folder", "train", resolution=32, batch_size=2,
                                      training=True, data_dir=data_dir, seed=1, for_service=True)
    return dataset, info


@contextlib.contextmanager
def _service_processes(**worker_env):
    """A dispatcher and a worker, each `python -m tf_pyramid.data_service` in its own process
    (the worker with `worker_env`); yields (dispatcher address, what the worker printed until it
    served)."""
    port = free_port()
    command = [sys.executable, "-m", "tf_pyramid.data_service"]
    dispatcher = subprocess.Popen(command + ["--role=dispatcher", f"--port={port}"], cwd=REPO,
                                  env=python_env(), stdout=subprocess.PIPE, text=True)
    worker = subprocess.Popen(command + ["--role=worker", f"--dispatcher_address=localhost:{port}"],
                              cwd=REPO, env=python_env(**worker_env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not lines or "serving for the dispatcher" not in lines[-1]:
            lines.append(worker.stdout.readline())
            assert lines[-1], "the worker exited:\n" + "".join(lines)
        yield f"localhost:{port}", "".join(lines)
    finally:
        for process in (worker, dispatcher):
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.slow
def test_a_worker_without_the_kernels_serves_a_trainer_that_has_them(tmp_path, monkeypatch,
                                                                     compiled_kernels):
    """The graph the trainer ships must not hold ops the worker cannot run: with the service,
    TensorFlow's ops unless TF_PYRAMID_SERVICE_KERNELS=1; and the ImageNet-style pipeline ships
    (its counters are left out)."""
    if compiled_ops.library() is None:
        pytest.skip(f"the compiled kernels are not built here ({compiled_ops.why_not()})")
    data_dir = _folder(tmp_path)
    local, _ = build_dataset("folder", "train", resolution=32, batch_size=2, training=True,
                             data_dir=data_dir, seed=1, for_service=True)  # no worker_ops()
    assert any(op.startswith("TfPyramid") for op in data_service.graph_ops(local))
    monkeypatch.delenv(data_service.KERNELS_VARIABLE, raising=False)
    shipped, info = _service_pipeline(data_dir)
    assert not any(op.startswith("TfPyramid") for op in data_service.graph_ops(shipped))
    assert info.skipped_images is None
    with _service_processes(TF_PYRAMID_COMPILED_OPS="0") as (address, worker_says):
        assert "Compiled kernels not loaded" in worker_says, worker_says
        served = data_service.distribute(shipped, address, "test-folder-job")
        images, labels = next(iter(served))
    assert images.shape == (2, 32, 32, 3) and set(labels.numpy()) <= {0, 1}
    monkeypatch.setenv(data_service.KERNELS_VARIABLE, "1")
    with_kernels, _ = _service_pipeline(data_dir)
    assert any(op.startswith("TfPyramid") for op in data_service.graph_ops(with_kernels))


def test_a_worker_that_requires_the_kernels_refuses_to_start_without_them():
    done = run_module("tf_pyramid.data_service", ["--role=worker", "--require_kernels",
                                                  "--dispatcher_address=localhost:1"],
                      timeout=120, TF_PYRAMID_COMPILED_OPS="0")
    assert done.returncode != 0
    assert "--require_kernels: the compiled kernels are not usable here" in done.stderr


def test_tfrecord_source_is_refused(tmp_path, service):
    _, _, address = service
    config = tiny_config(tmp_path / "run", dataset="tfrecord", data_dir=str(tmp_path),
                         model="imagenet_m1", resolution=64, data_service=f"grpc://{address}")
    with pytest.raises(FlagError, match="cannot serve --dataset=tfrecord"):
        Trainer(config).setup()
