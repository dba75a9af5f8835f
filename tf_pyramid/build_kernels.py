r"""Builds the input pipeline's compiled kernels (faster input, same images; docs/data.md).

  python -m tf_pyramid.build_kernels [--force]

Compiles `tf_pyramid/data/kernels/*.cc` with the system C++ compiler (`$CXX`, else `c++` /
`g++`) into the private kernel cache (`$TF_PYRAMID_CACHE_DIR`, else `~/.cache/tf_pyramid`),
checks the library against TensorFlow's ops value for value, records its SHA-256 beside it, and
prints its path. A library that is already there, intact and passing its check is kept
(`--force` rebuilds it); a damaged one is rebuilt. Exit status 0 when a checked library is in
place, 1 when it could not be built (the reason is printed and recorded, so that input pipelines
say it too). Training and evaluation never compile: they load what this command built, or run on
TensorFlow's ops.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("force", False, "Rebuild even if an intact, checked library is in the cache.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from tf_pyramid.data import compiled_ops  # noqa: PLC0415

    def log(message):
        print(message, file=sys.stderr, flush=True)

    try:
        print(compiled_ops.build(force=FLAGS.force, log=log))  # the library's path
        return 0
    except (compiled_ops.BuildError, OSError) as error:  # OSError: e.g. a full disk
        print(f"Error: the compiled kernels were not built: {error}", file=sys.stderr)
        return 1


def run():
    """Entry point of the console script `tf-pyramid-build-kernels`."""
    app.run(main)


if __name__ == "__main__":
    run()
