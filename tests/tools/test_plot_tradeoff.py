"""tools/plot_tradeoff.py: accuracy vs. MACs from per-level metrics JSONs."""
import json

import pytest

from tests.helpers import run_python
from tests.helpers import png_size
from tf_pyramid.visualization import tradeoff


def _write(path, levels, config=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"levels": levels}))
    if config:
        (path.parent / "config.json").write_text(json.dumps(config))
    return path


def _level(level, accuracy, locations, macs):
    return {"level": level, "accuracy": accuracy, "mean_locations": locations, "mean_macs": macs}


def test_plot_tradeoff_cli(tmp_path):
    m2 = _write(tmp_path / "m2" / "metrics.json",
                [_level(1, 0.62, 0.0, 9.6e5), _level(2, 0.91, 2.1, 7.7e6),
                 _level(3, 0.97, 5.4, 2.1e7)], {"model": "mnist_m2", "resolution": 56})
    m3 = _write(tmp_path / "m3.json", [_level(2, 0.93, 1.8, 1.2e7), _level(1, 0.7, 0.0, 2e6)])
    bl = _write(tmp_path / "bl" / "metrics.json", [_level(1, 0.98, 0.0, 1.6e8)],
                {"model": "mnist_bl2", "resolution": 56})
    out = tmp_path / "plots" / "tradeoff.png"
    run_python(["tools/plot_tradeoff.py", str(m2), str(m3), str(bl.parent), f"--out={out}",
                "--width=640", "--height=480"])
    assert out.stat().st_size > 5000
    assert png_size(out) == (480, 640)

    curves = [tradeoff.load_results(str(p)) for p in (m2, m3, bl.parent)]
    assert [c["label"] for c in curves] == ["mnist_m2 56px", "m3", "mnist_bl2 56px"]
    assert [c["baseline"] for c in curves] == [False, False, True]
    assert [p[0] for p in curves[1]["points"]] == [1, 2]


def test_bad_results_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"levels": [{"level": 1, "accuracy": 0.5}]}))
    with pytest.raises(ValueError, match="mean_macs"):
        tradeoff.load_results(str(bad))
    with pytest.raises(FileNotFoundError):
        tradeoff.load_results(str(tmp_path / "nothing"))


def test_plot_the_anytime_sweep_of_a_metrics_file(tmp_path):
    """metrics.json with the anytime_sweep evaluator's result: its early-exit curve (one point
    per threshold, by cost) is drawn beside the per-level one; --noanytime leaves it out."""
    metrics = {"levels": [_level(1, 0.8, 0.0, 1e6), _level(2, 0.93, 2.5, 3.5e6)],
               "model": "mnist_m2",
               "anytime_sweep": {"points": [
                   {"threshold": 1.01, "accuracy": 0.93, "mean_macs": 3.6e6},
                   {"threshold": 0.0, "accuracy": 0.8, "mean_macs": 1e6},
                   {"threshold": 0.9, "accuracy": 0.92, "mean_macs": 1.9e6}]}}
    path = tmp_path / "run" / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps(metrics))
    curve = tradeoff.load_results(str(path.parent))
    sweep = curve["anytime"]
    assert sweep["label"] == "mnist_m2 anytime" and sweep["style"] == "anytime"
    assert [p[1] for p in sweep["points"]] == [1e6, 1.9e6, 3.6e6]
    assert sweep["annotations"] == ["0", "0.9", "1.01"]
    with_sweep, without = tmp_path / "with.png", tmp_path / "without.png"
    run_python(["tools/plot_tradeoff.py", str(path), f"--out={with_sweep}"])
    run_python(["tools/plot_tradeoff.py", str(path), f"--out={without}", "--noanytime"])
    assert png_size(with_sweep) == png_size(without) == (600, 900)
    assert with_sweep.read_bytes() != without.read_bytes()
    fig = tradeoff.tradeoff_figure([curve])
    assert [line.get_label() for line in fig.axes[0].lines] == ["mnist_m2", "mnist_m2 anytime"]
    assert fig.axes[0].lines[1].get_linestyle() == "--"

    bad = dict(metrics, anytime_sweep={"points": [{"threshold": 0.5, "accuracy": 0.9}]})
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"anytime_sweep.points\[0\] lacks \['mean_macs'\]"):
        tradeoff.load_results(str(path))
