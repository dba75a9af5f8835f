"""The command-line convention of the tools under `tools/`: absl flags, as the package's mains.

A tool declares its flags on a `flags.FlagValues()` of its own (not absl's global one, which the
trainer's flags fill when both are imported in one process) and parses them with `parse_flags`,
which also accepts being called twice in one process (tests call `main(argv)`).
"""
import sys

from absl import flags


def parse_flags(flag_values, argv=None):
    """Parses `argv` (default: the command line's arguments) into `flag_values`, from the
    defaults; a bad flag prints one `Error:` line and exits with status 2."""
    flag_values.unparse_flags()
    try:
        flag_values([sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    except flags.Error as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return flag_values
