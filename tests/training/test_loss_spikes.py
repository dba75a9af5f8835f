"""Loss-spike detection (training/loss_spikes.py): the rule on hand-made epoch losses, and a
tiny run whose weights are blown up after its first epoch: one WARNING line, and the spike in
metrics.json."""
import json
import logging

import keras
import numpy as np

from tests.helpers import tiny_config
from tf_pyramid.training import Trainer
from tf_pyramid.training.loss_spikes import LossSpikeMonitor, spike_reference


def _spikes(losses):
    monitor = LossSpikeMonitor()
    for epoch, loss in enumerate(losses, start=1):
        monitor.record(epoch, loss)
    return monitor.spikes


def test_the_rule_on_hand_made_losses():
    # The full-MNIST BL3 28 px run with [-1, 1] inputs (tf_pyramid 0.2): 29.9 in epoch 4,
    # still high in epoch 5.
    assert _spikes([0.45, 0.12, 0.09, 29.9, 1.2]) == [
        {"epoch": 4, "loss": 29.9, "reference": 0.09},
        {"epoch": 5, "loss": 1.2, "reference": 0.09}]
    assert _spikes([2.3, 1.2, 0.9, 1.0, 1.3]) == []        # noise, not a spike
    assert _spikes([0.01, 0.04, 0.02]) == []               # 4x, but only +0.03
    assert _spikes([0.5, float("nan"), 0.4]) == []         # a NaN is no reference
    assert spike_reference([], 10.0) is None               # the first epoch has none
    assert spike_reference([0.3, 0.2], 0.61) == 0.2        # > 3x and > +0.1
    assert spike_reference([0.3, 0.2], 0.6) is None        # exactly 3x is not "more than"


class _BlowUp(keras.callbacks.Callback):
    """Multiplies the classifier's weights after the first epoch: epoch 2 starts far from any
    minimum, as after a diverging step."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            layer = self.model.modules()["classification"][0]
            layer.set_weights([w * 300.0 for w in layer.get_weights()])


def test_a_spike_in_a_tiny_run_is_logged_and_in_metrics_json(tmp_path, caplog):
    config = tiny_config(tmp_path / "run", epochs=2, steps_per_epoch=4)
    with caplog.at_level(logging.WARNING):
        Trainer(config, callbacks=[_BlowUp()]).run()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [s["epoch"] for s in metrics["loss_spikes"]] == [2], metrics["loss_spikes"]
    spike = metrics["loss_spikes"][0]
    assert spike["loss"] > 3 * spike["reference"] and np.isfinite(spike["loss"])
    lines = [r.getMessage() for r in caplog.records if "Loss spike" in r.getMessage()]
    assert len(lines) == 1 and "epoch 2's mean training loss" in lines[0]


def test_a_run_without_spikes_says_so(tmp_path):
    Trainer(tiny_config(tmp_path / "run", epochs=2)).run()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["loss_spikes"] == []
