"""`--strategy`: the tf.distribute strategy the trainer runs under (see docs/training.md).

* `default`: one device (the default strategy).
* `mirrored`: every local GPU (or the devices given), one host.
* `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from the `TF_CONFIG`
  environment variable, the same command runs on every worker.

There is no TPU strategy: the pyramid attends a data-dependent number of cells per image and
level (`tf.where` / gathers whose sizes depend on the images), and a TPU runs only XLA programs
of static shapes. Padding the attended cells to fixed buckets would compute every padded cell,
the very work the model exists to skip; see docs/training.md ("TPUs").
"""
import json
import os
import tempfile

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def split_cpu(num_devices):
    """Splits the physical CPU into `num_devices` logical CPUs (testing distribution on one CPU).

    Must run before TensorFlow initialises its devices (before the first op).
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(num_devices))


def tf_config():
    """The parsed `TF_CONFIG`, or {}."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw!r}") from None


def check_tf_config():
    """An error message when `--strategy=multi_worker` cannot work with this TF_CONFIG, else None."""
    try:
        config = tf_config()
    except ValueError as error:
        return str(error)
    if not config:
        return ("--strategy=multi_worker needs the TF_CONFIG environment variable, e.g. "
                "TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:port\", \"host2:port\"]}, "
                "\"task\": {\"type\": \"worker\", \"index\": 0}}' on the first worker.")
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not (cluster.get("worker") or cluster.get("chief")):
        return "TF_CONFIG has no cluster.worker list."
    if task.get("type") not in ("worker", "chief") or "index" not in task:
        return "TF_CONFIG needs task.type 'worker' (or 'chief') and task.index."
    return None


def create_strategy(name, logical_cpus=None):
    """A `tf.distribute.Strategy` for `--strategy=name`."""
    devices = None  # mirrored: every local GPU
    if logical_cpus and int(logical_cpus) > 1:
        split_cpu(logical_cpus)
        devices = [f"/cpu:{i}" for i in range(int(logical_cpus))]
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        message = check_tf_config()
        if message:
            raise ValueError(message)
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}.")


def worker_info(strategy):
    """(task_type, task_id, is_chief) of this process under `strategy`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, 0, True
    task_type, task_id = resolver.task_type, resolver.task_id
    is_chief = (task_type == "chief" or (task_type == "worker" and task_id == 0)
                or task_type is None)
    if task_type == "worker" and "chief" in (resolver.cluster_spec().as_dict() or {}):
        is_chief = False
    return task_type, task_id, is_chief


def write_dir(directory, strategy):
    """Where this process writes `directory`'s files: the directory itself on the chief, a
    per-worker temporary directory elsewhere (every worker must still write: saving a
    checkpoint involves collective ops)."""
    task_type, task_id, is_chief = worker_info(strategy)
    if is_chief:
        return directory
    return os.path.join(tempfile.gettempdir(), f"tf_pyramid_{task_type}_{task_id}_{os.getpid()}")
