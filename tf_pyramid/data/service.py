"""Training input from a tf.data service (`--data_service=grpc://HOST:PORT`; docs/training.md).

The trainer builds its usual training pipeline (records -> shuffle -> per-example parse, decode
and augmentation -> per-replica batch), repeats it, and hands it to
`tf.data.experimental.service.distribute`: the dataset graph is sent to the dispatcher and run by
the service's workers (`python -m tf_pyramid.data_service`), which send back finished batches.
Choices, and why:

* **What runs on the workers: everything up to the batch.** Decoding and augmentation are the
  expensive part, and batches are what the trainer consumes; shipping batches costs one request
  per batch instead of one per image.
* **Processing mode `distributed_epoch` (`ShardingPolicy.DYNAMIC`).** The dispatcher hands each
  record (and its augmentation seed) to one worker, so each example is read once per epoch
  whatever the number of workers. `parallel_epochs` would run the whole pipeline on every
  worker: with `--seed` they would all produce the same batches, and the model would see each
  one once per worker.
* **One job per run and start, shared by all trainer workers** (`job_name`): the name hashes
  the run directory and the step the process starts from, so the workers of a multi-worker run
  (which restore the same step) read from one job and split its batches between them, while a
  restart after preemption or another run starts a job of its own (the TF docs forbid reusing
  a job name across trainings). The stream is repeated before `distribute`: one endless job for
  the whole run; the trainer counts epochs in steps, as without the service.
* **Every trainer worker registers the same dataset**: no per-worker shard and no per-worker
  seed offset (`whole_data_context`); the shared job does the splitting.
* **Compiled kernels.** The graph is built in the trainer but runs in the workers; an op the
  worker has not loaded fails there. So, with the service, the pipeline uses TensorFlow's ops,
  unless `TF_PYRAMID_SERVICE_KERNELS=1` in the trainer's environment says that every worker loads
  the kernels (start them with `--require_kernels`: they then refuse to start without them).
* **Python steps cannot be shipped.** The image-skipping counters of ImageNet-style pipelines
  (TensorFlow variables and a Python log call) are left out
  (`build_dataset(..., for_service=True)`): undecodable images are still skipped, and not
  counted in the trainer's log. The `tfrecord` source reads damaged shards in Python and is
  refused with a message.
"""
import contextlib
import hashlib
import os
import socket
import time

import tensorflow as tf

from tf_pyramid.data import compiled_ops

PROTOCOL = "grpc"
KERNELS_VARIABLE = "TF_PYRAMID_SERVICE_KERNELS"  # "1": the workers load the compiled kernels
TIMEOUT_VARIABLE = "TF_PYRAMID_DATA_SERVICE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 60.0
START_COMMAND = "python -m tf_pyramid.data_service"


class DataServiceError(ValueError):
    """The data service cannot be used as asked (bad address, unreachable, unshippable data)."""


def parse_address(value):
    """`"HOST:PORT"` from `grpc://HOST:PORT` (or `HOST:PORT`); DataServiceError otherwise."""
    text = str(value).strip()
    protocol, separator, address = text.rpartition("://")
    if separator and protocol != PROTOCOL:
        raise DataServiceError(f"--data_service={value}: expected {PROTOCOL}://HOST:PORT (the "
                               f"dispatcher's address); the protocol {protocol!r} is not served.")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DataServiceError(f"--data_service={value}: expected {PROTOCOL}://HOST:PORT, e.g. "
                               f"{PROTOCOL}://input-host:5050 (the dispatcher's address).")
    return f"{host}:{int(port)}"


def timeout_s():
    """Seconds to wait for the dispatcher (`$TF_PYRAMID_DATA_SERVICE_TIMEOUT_S`, default 60)."""
    return float(os.environ.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_S)


def wait_for_dispatcher(address, timeout=None):
    """Returns once the dispatcher at `address` ("HOST:PORT") accepts connections; raises
    DataServiceError after `timeout` seconds (default `timeout_s()`), naming the address and how
    to start a dispatcher. (tf.data's own client would retry silently for a long time.)"""
    timeout = timeout_s() if timeout is None else timeout
    host, port = address.rsplit(":", 1)
    host = host.strip("[]")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.1, min(5.0, timeout))):
                return
        except OSError as error:
            last = error
        if time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    raise DataServiceError(
        f"Cannot reach the tf.data service dispatcher at {PROTOCOL}://{address} (waited "
        f"{timeout:g} s; {last.strerror or last}). Start one on {host} with `{START_COMMAND} "
        f"--role=dispatcher --port={port}` and workers with `{START_COMMAND} --role=worker "
        f"--dispatcher_address={address}` (docs/training.md, \"Input from a tf.data service\"), "
        f"or drop --data_service to read the data in this process.")


def job_name(model_dir, start_step):
    """The job every trainer worker of this run shares, new for every (re)start."""
    digest = hashlib.sha256(os.fspath(model_dir).encode()).hexdigest()[:16]
    return f"tf_pyramid-{digest}-from-step-{int(start_step)}"


def whole_data_context(input_context):
    """An input context that batches per replica but neither shards the data nor offsets the
    seeds: every trainer worker must register the same dataset."""
    if input_context is None:
        return None
    return tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                      num_replicas_in_sync=input_context.num_replicas_in_sync)


def kernels_on_workers():
    """Whether the trainer was told the service's workers load the compiled kernels."""
    return os.environ.get(KERNELS_VARIABLE) == "1"


@contextlib.contextmanager
def worker_ops():
    """Pipelines built inside use only ops every worker can run: TensorFlow's, or the compiled
    kernels where `kernels_on_workers()`."""
    if kernels_on_workers():
        yield
    else:
        with compiled_ops.tensorflow_ops_only():
            yield


def distribute(dataset, address, job):
    """`dataset`, repeated, produced by the service's workers (see the module docstring)."""
    try:
        return dataset.repeat().apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=f"{PROTOCOL}://{address}", job_name=job))
    except tf.errors.OpError as error:
        raise DataServiceError(
            f"The training pipeline cannot be sent to the tf.data service at {PROTOCOL}://"
            f"{address}: {error.message.splitlines()[0][:300]} (it must not contain Python steps "
            "or TensorFlow variables; the tfrecord source's damaged-record recovery is one)."
        ) from None


def graph_ops(dataset):
    """The op types of `dataset`'s serialized graph, functions included (what a worker runs)."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())  # noqa: SLF001
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops
