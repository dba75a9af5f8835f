"""Reading flagfiles the way absl does, to tell a user which stage of a chain to run first.

A later stage's flagfile names the previous stage's run directory in `--init_from`. When that
directory does not exist yet, the flagfile that trains it is the one (in the same `flags/` tree)
whose `--model_dir` is that path; `run_first_message` names it.

Paths follow absl: a flagfile, a nested `--flagfile=` line in it, `--model_dir` and `--init_from`
are all relative to the current directory (the repository root for the shipped flagfiles).
"""
import os

FLAGFILE_DIRECTIVES = ("--flagfile=", "-flagfile=")
COMMENT_PREFIXES = ("#", "//")


def flagfiles_in_argv(argv):
    """The flagfile paths given on a command line (`--flagfile=F` or `--flagfile F`), in order."""
    paths = []
    args = list(argv[1:])
    for index, arg in enumerate(args):
        if arg.startswith(FLAGFILE_DIRECTIVES):
            paths.append(os.path.expanduser(arg.split("=", 1)[1]))
        elif arg in ("--flagfile", "-flagfile") and index + 1 < len(args):
            paths.append(os.path.expanduser(args[index + 1]))
        elif arg == "--":
            break
    return paths


def read_assignments(path, _stack=()):
    """`[(name, value)]` of a flagfile in order, nested flagfiles expanded in place (as absl does).

    A nested flagfile that cannot be opened, or one already being read (a cycle), is skipped: this
    is a best-effort reader for messages, absl itself reports such files when it parses.
    """
    if path in _stack:
        return []
    try:
        with open(path) as file:
            lines = file.readlines()
    except OSError:
        return []
    assignments = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith(COMMENT_PREFIXES):
            continue
        if line.startswith(FLAGFILE_DIRECTIVES):
            nested = os.path.expanduser(line.split("=", 1)[1])
            assignments.extend(read_assignments(nested, (*_stack, path)))
        elif line.startswith("-") and "=" in line:
            name, value = line.lstrip("-").split("=", 1)
            assignments.append((name, value))
    return assignments


def flag_value(path, name):
    """The value a flagfile gives flag `name` (its last assignment), or None."""
    values = [value for key, value in read_assignments(path) if key == name]
    return values[-1] if values else None


def flags_tree(flagfile):
    """The directory searched for a flagfile's siblings: its nearest ancestor named `flags`, or
    its own directory when it lives outside such a tree."""
    directory = os.path.dirname(os.path.abspath(flagfile))
    candidate = directory
    while True:
        if os.path.basename(candidate) == "flags":
            return candidate
        parent = os.path.dirname(candidate)
        if parent == candidate:
            return directory
        candidate = parent


def _same_run(a, b):
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _run_directory(path):
    """A run directory, also when `--init_from` names the run's `.keras` file."""
    return os.path.dirname(path) if path.endswith(".keras") else path


def _sets_itself(path, name):
    """Whether the flagfile assigns `name` in its own lines (not only through a nested file)."""
    with open(path) as file:
        return any(line.strip().startswith((f"--{name}=", f"-{name}=")) for line in file)


def flagfile_for_run(run_dir, flagfiles):
    """The flagfile whose `--model_dir` is `run_dir`, searched in the `flags/` trees of the given
    flagfiles; None if there is none.

    A file that sets `--model_dir` itself wins over one that only nests it (such as an alias file
    holding a single `--flagfile=` line); ties go to the first path in sorted order.
    """
    run_dir = _run_directory(run_dir)
    found = []
    for tree in dict.fromkeys(flags_tree(f) for f in flagfiles):
        for directory, _, names in sorted(os.walk(tree)):
            for name in sorted(names):
                if not name.endswith(".cfg"):
                    continue
                path = os.path.join(directory, name)
                model_dir = flag_value(path, "model_dir")
                if model_dir and _same_run(model_dir, run_dir):
                    found.append((not _sets_itself(path, "model_dir"), path))
    if not found:
        return None
    path = min(found)[1]
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def run_first_message(init_from, flagfiles):
    """When `--init_from` is a run that does not exist yet and a flagfile trains it: the message
    that says to run that flagfile first. Otherwise None."""
    if not init_from or os.path.exists(init_from) or not flagfiles:
        return None
    flagfile = flagfile_for_run(init_from, flagfiles)
    if flagfile is None:
        return None
    return (f"--init_from={init_from} does not exist yet: run `python -m tf_pyramid.train "
            f"--flagfile={flagfile}` first (this stage starts from that run's weights; if you ran "
            "it elsewhere, point --init_from at that directory).")
