"""Distribution: MirroredStrategy on two logical CPUs and MultiWorkerMirroredStrategy with two
worker processes on localhost (loopback ports, bounded time)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO, free_port, python_env, tiny_args

TIMEOUT = 240


@pytest.mark.slow
def test_mirrored_two_cpus_identical_copies_and_different_masks(tmp_path):
    process = subprocess.run([sys.executable, "-m", "tests.training.mirrored_check",
                              str(tmp_path / "run")], cwd=REPO, env=python_env(),
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(process.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["final_step"] == 6
    assert report["checked_variables"] >= 10 and report["mismatched_variables"] == []
    # Identical inputs on both replicas, yet independent Bernoulli draws (replica-folded seeds).
    assert report["masks_differ"] and report["locations"][0] != report["locations"][1]
    assert os.path.exists(tmp_path / "run" / "metrics.json")
    # R_t (eq. 14) of a global batch split over two replicas: the global-batch value (mean over
    # all images before squaring) and its gradient computed by hand.
    assert report["r_t_replicas"] == pytest.approx(report["r_t_global"], rel=1e-4)
    np.testing.assert_allclose(report["r_t_gradient_replicas"], report["r_t_gradient_global"],
                               rtol=1e-3)


@pytest.mark.slow
def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    model_dir = tmp_path / "run"
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tf_pyramid.train", *tiny_args(model_dir),
             "--strategy=multi_worker", "--verbosity=1"], cwd=REPO, env=python_env(TF_CONFIG=tf_config),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    digests = []
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"worker {index}:\n{output[-3000:]}"
        assert "2 replica(s)" in output
        digests.append(re.findall(r"Weights digest \(task worker \d\): (\w+)", output))
    assert digests[0] and digests[0] == digests[1]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["step"] == 6 and metrics["num_examples"] == 500  # both shards counted
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "config.json", "logs", "metrics.json",
                                             "model.keras"]
