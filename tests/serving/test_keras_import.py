"""`.keras` round trip in a fresh process: same outputs, trainable with fit, same configuration."""
import json

import keras
import numpy as np

import tf_pyramid
from tests.helpers import run_script

RULE = {"lambda_f": 1e-6, "lambda_t": 1e-7, "lambda_r": 1e-7, "target_locations": 2.0,
        "mc_samples": 2, "level_weights": [0.5, 1.0]}

CHILD = r"""
import json, sys
import numpy as np, keras
import tf_pyramid
path, data, out = sys.argv[1:4]
model = keras.saving.load_model(path)
arrays = np.load(data)
x, y = arrays["x"], arrays["y"]
outputs = model(x, training=False)
evaluated = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
baseline = [float(v) for v in model.reward_baseline.numpy()]
before = [w.copy() for w in model.get_weights()]
history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
changed = any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
np.savez(out, logits=outputs["logits"].numpy(), level_logits=outputs["level_logits"].numpy(),
         macs=outputs["macs"].numpy())
print(json.dumps({"class": type(model).__name__, "policy": model.policy, "levels": model.levels,
                  "learning_rule": model.learning_rule, "changed": changed,
                  "baseline": baseline, "evaluated": sorted(evaluated),
                  "schedule": type(model.optimizer._learning_rate).__name__,
                  "loss": float(history.history["loss"][-1]),
                  "optimizer": type(model.optimizer).__name__,
                  "learning_rate": float(model.optimizer.learning_rate.numpy())}))
"""


def test_keras_round_trip_in_a_fresh_process(tmp_path):
    keras.utils.set_random_seed(3)
    model = tf_pyramid.build_model("mnist_m2", levels=2, num_classes=4, policy="topk:3")
    schedule = tf_pyramid.StepDecay(2e-3, total_steps=100)  # the trainer's schedule
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=schedule), learning_rule=RULE)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, [8, 28, 28, 1]).astype("float32")
    y = rng.integers(0, 4, [8]).astype("int32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)          # trained state, optimizer slots
    path, data, out = tmp_path / "x.keras", tmp_path / "data.npz", tmp_path / "out.npz"
    model.save(path)
    np.savez(data, x=x, y=y)
    expected = model(x, training=False)

    result = run_script(CHILD, str(path), str(data), str(out))
    report = json.loads(result.stdout.strip().splitlines()[-1])
    got = np.load(out)
    np.testing.assert_allclose(got["logits"], expected["logits"].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["level_logits"], expected["level_logits"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["macs"], expected["macs"].numpy())
    assert report["class"] == "PyramidClassifier"
    assert report["policy"] == "topk:3" and report["levels"] == 2
    assert report["learning_rule"] == json.loads(json.dumps(model.learning_rule))
    assert report["baseline"] == [float(v) for v in model.reward_baseline.numpy()]
    assert report["baseline"] != [0.0, 0.0]  # trained state, not a fresh compile
    assert {"loss", "level_1_accuracy", "level_2_accuracy"} <= set(report["evaluated"])
    assert report["schedule"] == "StepDecay"
    assert report["optimizer"] == "Adam" and abs(report["learning_rate"] - 2e-3) < 1e-9
    assert report["changed"] and np.isfinite(report["loss"])
