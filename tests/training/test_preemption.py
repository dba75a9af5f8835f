"""Coordinated preemption: two MultiWorkerMirroredStrategy workers on loopback; SIGTERM to one
of them, and both save the same step and exit with the resume message; the rerun resumes there
and finishes."""
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests.helpers import REPO, free_port, python_env, tiny_args

TIMEOUT = 240


def _start_workers(model_dir, **overrides):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tf_pyramid.train", *tiny_args(model_dir, **overrides),
             "--strategy=multi_worker", "--verbosity=0"], cwd=REPO,
            env=python_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    return processes


def _collect(processes, on_line=None):
    """Every worker's output (read in threads); `on_line(index, line)` sees each line."""
    outputs = [[] for _ in processes]

    def read(index, process):
        for line in process.stdout:
            outputs[index].append(line)
            if on_line:
                on_line(index, line)
    threads = [threading.Thread(target=read, args=(i, p), daemon=True)
               for i, p in enumerate(processes)]
    for thread in threads:
        thread.start()
    try:
        for process in processes:
            process.wait(timeout=TIMEOUT)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for thread in threads:
        thread.join(timeout=10)
    return ["".join(lines) for lines in outputs]


@pytest.mark.slow
def test_sigterm_to_one_worker_stops_both_at_the_same_step_and_rerun_finishes(tmp_path):
    model_dir = tmp_path / "run"
    run = dict(epochs=30, checkpoint_every=1000)  # 90 steps: long enough to be interrupted
    processes = _start_workers(model_dir, **run)
    sent = threading.Event()

    def preempt_worker_1(index, line):
        if index == 0 and line.startswith("Epoch 2/30") and not sent.is_set():
            sent.set()
            processes[1].send_signal(signal.SIGTERM)
    outputs = _collect(processes, preempt_worker_1)
    assert sent.is_set(), outputs[0][-3000:]
    steps = []
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 128 + signal.SIGTERM, f"worker {index}:\n{output[-3000:]}"
        found = re.findall(r"Interrupted by SIGTERM at step (\d+) of 90; a checkpoint was saved. "
                           r"Not finished: resume with the same command.", output)
        assert found, f"worker {index}:\n{output[-3000:]}"
        steps.append(int(found[0]))
    assert steps[0] == steps[1] and 6 <= steps[0] < 90
    assert "Another worker was interrupted" in outputs[0]
    assert os.path.exists(model_dir / "checkpoints" / f"ckpt-{steps[0]}.index")

    processes = _start_workers(model_dir, **run)
    outputs = _collect(processes)
    for index, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"worker {index}:\n{output[-3000:]}"
        assert f"Resuming from {model_dir}/checkpoints/ckpt-{steps[0]}: step {steps[0]} of 90" \
            in output
    assert json.loads((model_dir / "metrics.json").read_text())["step"] == 90
