"""Run directories given as URLs (`ram://`, standing for `gs://`) to the tools that read finished
runs: `python -m tf_pyramid.evaluate --model_dir=URL` and the trade-off plot's reader."""
import json

import tensorflow as tf

from tests.helpers import run_script
from tf_pyramid.visualization import tradeoff

EVALUATE_A_RAM_RUN = r"""
import json, sys
from tests.helpers import tiny_config
from tf_pyramid.training.trainer import Trainer
run = "ram://url_paths/run"
Trainer(tiny_config(run, epochs=1, steps_per_epoch=2)).run()
from tf_pyramid import evaluate
evaluate.FLAGS(["evaluate", "--model_dir=" + run, "--json_out=" + run + "/evaluation.json"])
code = evaluate.main(["evaluate"])
from tf_pyramid.runs import files
print("RESULT", json.dumps({"code": code, "written": files.read_json(run + "/evaluation.json")}))
"""


def test_evaluate_cli_accepts_a_url_model_dir():
    done = run_script(EVALUATE_A_RAM_RUN, timeout=300)
    line = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["code"] == 0, done.stderr[-2000:]
    assert [entry["level"] for entry in result["written"]["levels"]] == [1, 2]


def test_tradeoff_reads_a_run_directory_on_a_url():
    run = "ram://url_paths/tradeoff_run"
    tf.io.gfile.makedirs(run)
    levels = [{"level": 1, "accuracy": 0.8, "mean_locations": 0.0, "mean_macs": 1e6},
              {"level": 2, "accuracy": 0.9, "mean_locations": 2.0, "mean_macs": 2e6}]
    with tf.io.gfile.GFile(f"{run}/metrics.json", "w") as f:
        f.write(json.dumps({"levels": levels, "model": "mnist_m2"}))
    with tf.io.gfile.GFile(f"{run}/config.json", "w") as f:
        f.write(json.dumps({"model": {"name": "mnist_m2", "resolution": 28}}))
    curve = tradeoff.load_results(run)
    assert curve["label"] == "mnist_m2 28px" and curve["file"] == f"{run}/metrics.json"
    assert [point[:3] for point in curve["points"]] == [(1, 1e6, 0.8), (2, 2e6, 0.9)]
