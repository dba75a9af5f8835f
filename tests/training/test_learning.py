"""A short learning run on the bundled real digits: accuracy clearly above chance, and the mean
number of attended cells moves toward c_t."""
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
    # Untrained, every cell is attended with p ~ 0.5 (~4.5 cells); R_t pulls toward c_t = 1.
    assert before > 3.0
    assert abs(after - C_T) < 0.5 * abs(before - C_T), (before, after)
    assert logs["num_locations"] < 0.5 * before
