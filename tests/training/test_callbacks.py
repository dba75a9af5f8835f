"""Keras callbacks through `Trainer(config, callbacks=[...])`: called as `model.fit` calls them,
and `model.stop_training` ends training (EarlyStopping, TerminateOnNaN)."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import tiny_config
from tf_pyramid.training import Trainer


class Recorder(keras.callbacks.Callback):
    """Records every hook call; optionally stops training at the end of a given batch."""

    def __init__(self, stop_at_batch_end=None):
        super().__init__()
        self.calls, self.stop_at_batch_end = [], stop_at_batch_end

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, "loss" in logs))
        if (len([c for c in self.calls if c[0] == "batch_end"]) == self.stop_at_batch_end):
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(k for k in logs if k.startswith("val_"))[:1]))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_hooks_in_fit_order_with_one_batch_hook_per_chunk(tmp_path):
    """3 steps an epoch, checkpoints every 2, --steps_per_loop=2: chunks [0,1] [2] per epoch."""
    recorder = Recorder()
    Trainer(tiny_config(tmp_path / "run", steps_per_loop=2, validation_split="validation"),
            callbacks=[recorder]).run()
    epoch_0 = [("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 1, True),
               ("batch_begin", 2), ("batch_end", 2, True), ("epoch_end", 0, ["val_level_1_accuracy"])]
    # Epoch 1 (steps 3..5): the checkpoint at step 4 splits it into [3] [4, 5] -> 0, 1..2.
    epoch_1 = [("epoch_begin", 1), ("batch_begin", 0), ("batch_end", 0, True),
               ("batch_begin", 1), ("batch_end", 2, True), ("epoch_end", 1, ["val_level_1_accuracy"])]
    assert recorder.calls == [("train_begin",), *epoch_0, *epoch_1, ("train_end",)]


def test_stop_training_at_a_batch_ends_the_run_there(tmp_path):
    recorder = Recorder(stop_at_batch_end=2)
    trainer = Trainer(tiny_config(tmp_path / "run", steps_per_loop=1), callbacks=[recorder])
    result = trainer.run()
    assert result["final_step"] == 2 and result["stopped_by_callback"] == 2
    assert not result["interrupted"]
    assert recorder.calls[-1] == ("train_end",)
    assert os.path.exists(tmp_path / "run" / "metrics.json")  # finished there, as fit would
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")


def test_early_stopping(tmp_path):
    """The training loss cannot improve by 10 in an epoch: EarlyStopping(patience=0) stops at
    the end of the second epoch of three."""
    stopper = keras.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)
    result = Trainer(tiny_config(tmp_path / "run", epochs=3), callbacks=[stopper]).run()
    assert stopper.stopped_epoch == 1
    assert result["final_step"] == 6 and result["total_steps"] == 9
    assert result["stopped_by_callback"] == 6
    assert os.path.exists(tmp_path / "run" / "model.keras")


def test_terminate_on_nan(tmp_path):
    """A NaN loss: TerminateOnNaN sees it and stops training; the trainer's divergence guard
    still raises, and nothing non-finite is checkpointed."""
    terminate = keras.callbacks.TerminateOnNaN()
    trainer = Trainer(tiny_config(tmp_path / "run"), callbacks=[terminate]).setup()
    weight = trainer.model.trainable_variables[0]
    weight.assign(np.full(weight.shape, np.nan, np.float32))
    with pytest.raises(FloatingPointError, match="Training diverged: the loss is nan"):
        trainer.train()
    trainer.close()
    assert trainer.model.stop_training
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")) is None
