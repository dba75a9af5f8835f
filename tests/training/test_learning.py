"""A short learning run on the bundled real digits: accuracy clearly above chance, the mean number
of attended cells starts and stays at c_t, and the location module learns where to look."""
import math

import numpy as np
import pytest

from tests.helpers import tiny_config
from tf_pyramid.data import build_dataset
from tf_pyramid.training import Trainer

C_T = 1.0


def sampled_locations(model, images):
    return float(np.mean(model(images, training=True)["num_locations"]))


@pytest.mark.slow
def test_short_learning_run_on_bundled_digits(tmp_path):
    config = tiny_config(tmp_path / "run", model="mnist_m2", resolution=28, batch_size=64,
                         epochs=4, steps_per_epoch=None, learning_rate=0.003, c_t=[C_T],
                         level_weights=[1.0, 1.0], checkpoint_every=1000, eval_batch_size=500)
    trainer = Trainer(config)
    trainer.setup()
    images, _ = next(iter(build_dataset("mnist", "validation", resolution=28, batch_size=256,
                                        training=False, source="bundled", seed=0)[0]))
    before = sampled_locations(trainer.model, images)
    logs = trainer.train()
    metrics = trainer.finish()
    after = sampled_locations(trainer.model, images)
    levels = metrics["levels"]
    assert levels[1]["accuracy"] > 0.3, levels  # chance: 0.1
    assert levels[0]["accuracy"] > 0.2, levels
    # A fresh run starts uniform at c_r (docs/training.md, "Where the attention starts"): c_t
    # cells expected, the same for every image ...
    assert abs(before - C_T) < 0.3, before
    # ... and stays near c_t while training (the old start, ~4.5 cells, fell far below it) ...
    assert abs(after - C_T) < 0.5, after
    assert abs(logs["num_locations"] - C_T) < 0.5, logs
    # ... while the module learns where to look: its per-cell entropy falls well below that of
    # the uniform start (measured: 0.047 after 4 epochs against 0.349).
    q = 1.0 / 9.0  # c_r for c_t = 1 at two levels
    uniform_entropy = -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert logs["location_entropy"] < 0.5 * uniform_entropy, logs
