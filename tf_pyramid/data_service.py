r"""A tf.data service dispatcher or worker for `--data_service` (docs/training.md, "Input from a
tf.data service").

  python -m tf_pyramid.data_service --role=dispatcher --port=5050 [--work_dir=DIR]
  python -m tf_pyramid.data_service --role=worker --dispatcher_address=HOST:5050 [--port=5051]
      [--worker_address=THIS_HOST:5051] [--require_kernels]

One dispatcher (a small process: it hands out work and tracks jobs), and workers on as many
machines as the input needs: each runs the training pipelines the trainers send (decode,
augment, batch) and serves the batches. A worker loads the package's compiled kernels when they
are built on its machine (`python -m tf_pyramid.build_kernels`, once per machine);
`--require_kernels` makes it refuse to start without them (then trainers may be run with
`TF_PYRAMID_SERVICE_KERNELS=1` and send graphs that use them). The process serves until it is
stopped (SIGTERM or Ctrl-C).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("role", None, ["dispatcher", "worker"], "Which server to run.")
flags.DEFINE_integer("port", 0, "Port to serve on (0: any free port, printed at start). The "
                     "dispatcher's is the one trainers name in --data_service=grpc://HOST:PORT.",
                     lower_bound=0)
flags.DEFINE_string("dispatcher_address", None, "Worker: the dispatcher's HOST:PORT (or "
                    "grpc://HOST:PORT).")
flags.DEFINE_string("worker_address", None, "Worker: the HOST:PORT the dispatcher and trainers "
                    "reach this worker at (default: localhost:<port>, fine when all run on one "
                    "machine; set it on a cluster).")
flags.DEFINE_string("work_dir", None, "Dispatcher: a directory (any tf.io.gfile path) where it "
                    "keeps its state, so that a restarted dispatcher resumes its jobs.")
flags.DEFINE_boolean("require_kernels", False, "Worker: refuse to start unless the compiled "
                     "kernels load.")


def load_kernels(required):
    """Loads the compiled kernels into this process (their ops can then run in the pipelines
    it serves); returns why not (None when loaded). Raises SystemExit when `required`."""
    from tf_pyramid.data import compiled_ops  # noqa: PLC0415
    if compiled_ops.library() is not None:
        print("Compiled kernels loaded: this worker can run pipelines that use them.",
              file=sys.stderr, flush=True)
        return None
    reason = compiled_ops.why_not()
    if required:
        raise SystemExit(f"Error: --require_kernels: the compiled kernels are not usable here, "
                         f"as {reason}.")
    print(f"Compiled kernels not loaded ({reason}): this worker runs pipelines built with "
          "TensorFlow's ops (trainers use those unless TF_PYRAMID_SERVICE_KERNELS=1).",
          file=sys.stderr, flush=True)
    return reason


def start_dispatcher(port, work_dir=None):
    """A started `DispatchServer` on `port`."""
    import tensorflow as tf  # noqa: PLC0415
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher_address, port=0, worker_address=None, require_kernels=False):
    """A started `WorkerServer` registered with the dispatcher, after loading the kernels."""
    import tensorflow as tf  # noqa: PLC0415

    from tf_pyramid.data import service  # noqa: PLC0415
    address = service.parse_address(dispatcher_address)
    load_kernels(require_kernels)
    service.wait_for_dispatcher(address)
    config = tf.data.experimental.service.WorkerConfig(
        dispatcher_address=address, port=port, worker_address=worker_address or None)
    return tf.data.experimental.service.WorkerServer(config)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
    from tf_pyramid.data import service  # noqa: PLC0415
    if FLAGS.role is None:
        raise app.UsageError("--role=dispatcher or --role=worker is required.")
    try:
        if FLAGS.role == "dispatcher":
            server = start_dispatcher(FLAGS.port, FLAGS.work_dir)
            print(f"tf.data service dispatcher serving at {server.target}; trainers: "
                  f"--data_service=grpc://{os.uname().nodename}:{server._address.rsplit(':', 1)[1]}",  # noqa: SLF001
                  flush=True)
        else:
            if not FLAGS.dispatcher_address:
                raise app.UsageError("--role=worker needs --dispatcher_address=HOST:PORT.")
            server = start_worker(FLAGS.dispatcher_address, FLAGS.port, FLAGS.worker_address,
                                  FLAGS.require_kernels)
            print(f"tf.data service worker {server._address} serving for the dispatcher at "  # noqa: SLF001
                  f"{FLAGS.dispatcher_address}", flush=True)
    except service.DataServiceError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    server.join()
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
