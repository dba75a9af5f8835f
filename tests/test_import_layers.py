"""The package's layers point down only (docs/design.md): checked on every import statement,
function-level imports included."""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tf_pyramid")

# Sub-package -> the sub-packages of tf_pyramid it may import (itself always allowed).
ALLOWED = {
    "configs": set(),
    "modeling": set(),
    "data": set(),
    "runs": {"modeling", "data", "configs"},
    "evaluators": {"runs", "modeling", "data", "configs", "analysis"},
    "training": {"runs", "modeling", "data", "callbacks", "visualization", "configs",
                 "evaluators"},
    "serving": {"runs", "modeling", "data"},
    "visualization": {"modeling", "data", "configs"},
    "callbacks": {"modeling", "data", "visualization"},
    "analysis": {"modeling", "data", "runs"},
}


def _imported_subpackages(path):
    tree = ast.parse(open(path).read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "tf_pyramid" and len(parts) > 1:
                found.add(parts[1])
    return found


def _files(subpackage):
    for root, _, files in os.walk(os.path.join(PACKAGE, subpackage)):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_imports_point_down(subpackage):
    allowed = ALLOWED[subpackage] | {subpackage}
    for path in _files(subpackage):
        wrong = {name for name in _imported_subpackages(path)
                 if name in ALLOWED and name not in allowed}
        assert not wrong, f"{os.path.relpath(path, PACKAGE)} imports tf_pyramid.{wrong}"


def test_the_checker_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from tf_pyramid.training import restore\n"
                      "import tf_pyramid.serving.export_lib\n")
    assert _imported_subpackages(str(module)) == {"training", "serving"}
