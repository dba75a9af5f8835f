"""The paper's experiments by name, and the command lines that name them.

Every experiment is a flagfile in the `flags/` tree: `flags/imagenet/m2_256_ct29.cfg` is the
experiment `imagenet/m2_256_ct29`. The tree ships inside the package (`tf_pyramid/flags/` of an
installed wheel; the repository's top-level `flags/` in a checkout), so names resolve from any
working directory. Flagfiles are read here, not by absl: a nested `--flagfile=` line is resolved
relative to the file that contains it, and a `--flagfile=flags/...` path that does not exist
relative to the working directory is looked up in the package's tree.
"""
import difflib
import os

FLAGFILE_DIRECTIVES = ("--flagfile=", "-flagfile=")
EXPERIMENT_DIRECTIVES = ("--experiment=", "-experiment=")
COMMENT_PREFIXES = ("#", "//")
SUFFIX = ".cfg"
DEFAULT_RUNS_DIR = "runs"


class ExperimentError(ValueError):
    """A flagfile or experiment name that cannot be read; the message says what exists."""


def experiments_root():
    """The `flags/` tree: inside the installed package, else the checkout's top level."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (os.path.join(package, "flags"),
                      os.path.join(os.path.dirname(package), "flags")):
        if os.path.isdir(candidate):
            return candidate
    raise ExperimentError(f"No experiment flagfiles found (looked in {package}/flags and its "
                          "parent's flags/): reinstall tf_pyramid.")


def experiment_names():
    """Every experiment name, sorted (the shared `common/` fragments are not experiments)."""
    root = experiments_root()
    names = []
    for directory, folders, files in os.walk(root):
        folders[:] = sorted(f for f in folders if f != "common")
        for name in files:
            if name.endswith(SUFFIX):
                relative = os.path.relpath(os.path.join(directory, name), root)
                names.append(relative[:-len(SUFFIX)].replace(os.sep, "/"))
    return sorted(names)


def experiment_file(name):
    """The flagfile of experiment `name` (`imagenet/m2_256_ct29`, with or without `.cfg`)."""
    name = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name
    path = os.path.join(experiments_root(), *name.split("/")) + SUFFIX
    if os.path.isfile(path):
        return path
    close = difflib.get_close_matches(name, experiment_names(), n=5, cutoff=0.6)
    hint = f" Close: {', '.join(close[:8])}." if close else ""
    raise ExperimentError(f"No experiment {name!r}.{hint} `python -m tf_pyramid.train "
                          "--list_experiments` lists them all.")


def experiment_name(path):
    """The experiment name of a flagfile inside the `flags/` tree, else None."""
    root = os.path.realpath(experiments_root())
    path = os.path.realpath(path)
    if os.path.commonpath([root, path]) != root or not path.endswith(SUFFIX):
        return None
    return os.path.relpath(path, root)[:-len(SUFFIX)].replace(os.sep, "/")


def summary(path):
    """What `--list_experiments` prints: the head of the flagfile's first comment (up to its
    first colon or full stop) and the experiment it starts from."""
    words = []
    with open(path) as file:
        for line in file:
            line = line.strip()
            if not line.startswith(COMMENT_PREFIXES):
                break
            words.append(line.lstrip("#/ ").strip())
    text = " ".join(words)
    text = text.split(": ", 1)[0] if ": " in text else text.split(". ", 1)[0]
    previous = [arg.split("=", 1)[1] for arg in read_flagfile(path)
                if arg.startswith("--previous_stage=")]
    return text + (f" (after {previous[-1]})" if previous else "")


def find_flagfile(path, including_file=None):
    """A flagfile path as the user or a flagfile wrote it, resolved.

    Relative paths are relative to the including flagfile's folder (nested), else to the working
    directory; a path starting with `flags/` that does not exist there is looked up in the
    package's tree. `~` is expanded.
    """
    path = os.path.expanduser(path)
    base = os.path.dirname(os.path.abspath(including_file)) if including_file else os.getcwd()
    candidate = path if os.path.isabs(path) else os.path.join(base, path)
    if os.path.isfile(candidate):
        return os.path.normpath(candidate)
    parts = os.path.normpath(path).split(os.sep)
    if parts[0] == "flags" and len(parts) > 1:
        packaged = os.path.join(experiments_root(), *parts[1:])
        if os.path.isfile(packaged):
            return packaged
    where = f" (in {including_file})" if including_file else ""
    raise ExperimentError(f"No flagfile {path}{where}: looked for {candidate}. Experiments by "
                          "name: --experiment=NAME (--list_experiments lists them).")


def read_flagfile(path, _stack=()):
    """The arguments of a flagfile, nested flagfiles expanded in place (relative to their
    including file); a cycle raises `ExperimentError`."""
    path = os.path.normpath(os.path.abspath(path))
    if path in _stack:
        chain = " -> ".join((*_stack, path))
        raise ExperimentError(f"Flagfiles include each other in a cycle: {chain}.")
    try:
        with open(path) as file:
            lines = file.read().splitlines()
    except OSError as error:
        raise ExperimentError(f"Cannot read flagfile {path}: {error.strerror}.") from None
    args = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith(COMMENT_PREFIXES):
            continue
        if line.startswith(FLAGFILE_DIRECTIVES):
            nested = find_flagfile(line.split("=", 1)[1], including_file=path)
            args.extend(read_flagfile(nested, (*_stack, path)))
        else:
            args.append(line)
    return args


class CommandLine:
    """A trainer command line split into the experiment and the flags that override it.

    `experiment_args`: the experiment's flagfile expanded (with `--experiment=NAME` first when it
    is one of the package's); `override_args`: everything else on the command line, other
    flagfiles expanded, in order. absl parses `experiment_args + override_args`, so the command
    line wins over the experiment; a chain's earlier stages get the same overrides.
    """

    def __init__(self, argv):
        self.program = argv[0]
        self.experiment_file = None
        self.experiment_args, self.override_args = [], []
        args = list(argv[1:])
        index = 0
        while index < len(args):
            arg = args[index]
            value = None
            if arg.startswith(FLAGFILE_DIRECTIVES + EXPERIMENT_DIRECTIVES):
                value = arg.split("=", 1)[1]
            elif arg.lstrip("-") in ("flagfile", "experiment") and index + 1 < len(args):
                index += 1
                value = args[index]
            elif arg == "--":
                self.override_args.extend(args[index:])
                break
            if value is None:
                self.override_args.append(arg)
            elif arg.lstrip("-").startswith("experiment"):
                self._set_experiment(experiment_file(value))
            elif self.experiment_file is None:
                self._set_experiment(find_flagfile(value))
            else:
                self.override_args.extend(read_flagfile(find_flagfile(value)))
            index += 1

    def _set_experiment(self, path):
        if self.experiment_file is not None:
            raise ExperimentError(
                f"Two experiments on one command line ({self.experiment_file} and {path}); name "
                "one, and put shared overrides after it (or in a flagfile without an experiment).")
        self.experiment_file = path
        name = experiment_name(path)
        self.experiment_args = ([f"--experiment={name}"] if name else []) + read_flagfile(path)

    @property
    def argv(self):
        """What absl parses: the program, the experiment, then the overrides."""
        return [self.program, *self.experiment_args, *self.override_args]

    def sets(self, flag):
        """Whether the overrides (the user's own flags) set `flag` (`--flag=`, `--flag`,
        `--noflag`)."""
        return any(flag_name(arg, (flag,)) == flag for arg in self.override_args)


def flag_name(arg, known):
    """The flag a command-line argument sets: `--name=value`, `--name`, or `--noname` for a
    boolean `name` in `known`."""
    name = arg.lstrip("-").split("=", 1)[0]
    return name[2:] if name.startswith("no") and name[2:] in known else name


def stage_argv(program, name, override_args):
    """The command line of a chain's earlier stage: its experiment, then the same overrides."""
    path = experiment_file(name)
    return [program, f"--experiment={experiment_name(path)}", *read_flagfile(path),
            *override_args]
