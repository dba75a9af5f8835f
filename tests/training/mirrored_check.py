"""Run in a subprocess (logical CPUs must be set before TensorFlow starts):

  python -m tests.training.mirrored_check MODEL_DIR

Trains the tiny config under MirroredStrategy on two logical CPUs, then prints one JSON line:
whether every mirrored variable has identical copies on both replicas, and whether the two
replicas drew different masks for identical inputs.
"""
import json
import sys

import numpy as np


def main(model_dir):
    from tests.helpers import tiny_config
    from tf_pyramid.training import Trainer
    from tf_pyramid.training import strategy as strategy_lib
    import tensorflow as tf

    strategy = strategy_lib.create_strategy("mirrored", logical_cpus=2)
    trainer = Trainer(tiny_config(model_dir, strategy="mirrored", logical_cpus=2), strategy)
    result = trainer.run()
    model = trainer.model

    mismatched = []
    for variable in model.weights:
        value = getattr(variable, "value", variable)
        copies = getattr(value, "values", None)
        if copies is None or len(copies) < 2:
            continue
        if not all(np.array_equal(copies[0].numpy(), c.numpy()) for c in copies[1:]):
            mismatched.append(variable.path)

    images = tf.random.stateless_uniform([8, 28, 28, 1], seed=[1, 2])

    @tf.function
    def masks():
        def replica_fn():
            trace = model.traverse(images, training=True)
            outputs = model.summarize(trace, tf.shape(images)[0])
            return trace["mask"][0], outputs["num_locations"]
        return strategy.run(replica_fn)

    mask, locations = masks()
    mask = [m.numpy() for m in strategy.experimental_local_results(mask)]
    locations = [n.numpy() for n in strategy.experimental_local_results(locations)]
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "mismatched_variables": mismatched,
        "checked_variables": sum(len(getattr(getattr(v, "value", v), "values", [])) > 1
                                 for v in model.weights),
        "masks_differ": bool(not np.array_equal(mask[0], mask[1])),
        "locations": [n.tolist() for n in locations],
        "final_step": result["final_step"],
        "metrics": result["metrics"]["levels"],
    }))


if __name__ == "__main__":
    main(sys.argv[1])
