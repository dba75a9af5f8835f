"""Export folders get the usual modes (0777 / 0666 less the umask; 0755 / 0644 with umask 022),
not `tempfile.mkdtemp`'s 0700, and a staging folder left by a killed export is removed."""
import os
import stat

import pytest

import tf_pyramid
from tf_pyramid import serving


def _modes(root):
    """{relative path: permission bits} of `root` and everything under it."""
    modes = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            modes[os.path.relpath(path, root)] = stat.S_IMODE(os.stat(path).st_mode)
    return modes


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def test_export_modes_follow_umask_and_stale_staging_is_removed(tmp_path, umask):
    model = tf_pyramid.build_model("mnist_bl1", levels=1, num_classes=3)
    base = tmp_path / "serving"
    stale = base / ".tmp-1-3f2a9c"  # what a `kill -9` during an export leaves
    (stale / "variables").mkdir(parents=True)
    (stale / "variables" / "variables.index").write_bytes(b"partial")

    version = serving.export_saved_model(model, str(base), value_range=(0.0, 1.0),
                                         resize_method="area")
    assert version == str(base / "1")
    assert not stale.exists()
    assert os.listdir(base) == ["1"]  # only version folders (TF Serving's view)
    modes = _modes(version)
    assert {"saved_model.pb", "variables", "variables/variables.index",
            "assets.extra/tf_pyramid_serving.json"} <= set(modes)
    for path, mode in modes.items():
        is_dir = os.path.isdir(os.path.join(version, path))
        assert mode == (0o755 if is_dir else 0o644), (path, oct(mode))

    umask(0o027)  # a stricter umask is honoured too (group read, others nothing)
    version = serving.export_saved_model(model, str(base), value_range=(0.0, 1.0),
                                         resize_method="area")
    for path, mode in _modes(version).items():
        is_dir = os.path.isdir(os.path.join(version, path))
        assert mode == (0o750 if is_dir else 0o640), (path, oct(mode))
