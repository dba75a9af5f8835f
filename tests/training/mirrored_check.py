"""Run in a subprocess (logical CPUs must be set before TensorFlow starts):

  python -m tests.training.mirrored_check MODEL_DIR

Trains the tiny config under MirroredStrategy on two logical CPUs, then prints one JSON line:
whether every mirrored variable has identical copies on both replicas, whether the two
replicas drew different masks for identical inputs, and the batch-level regularisers (R_t,
eq. 14) of a global batch split over the replicas beside their global-batch value and gradient.
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

    # R_t on a global batch of 8 split 4 + 4: the replicas' terms must add up to the global-batch
    # value (mean over all 8 images before squaring), and their gradients to its gradient.
    bias = model.location_module.trainable_variables[1]
    labels = tf.zeros([8], tf.int32)
    halves = strategy.experimental_distribute_values_from_function(
        lambda context: images[4 * context.replica_id_in_sync_group:
                               4 * context.replica_id_in_sync_group + 4])

    @tf.function
    def regulariser(part):
        def replica_fn(part):
            with tf.GradientTape() as tape:
                outputs = model(part, training=True)
                term = model.learning_rule_losses(outputs, labels[:4])["target_locations"]
            return (term, tape.gradient(term, bias), outputs["expected_locations"][:, -1],
                    outputs["cell_prob_sum"][:, -1])
        return strategy.run(replica_fn, args=(part,))

    terms, gradients, expected, cells = regulariser(halves)
    local = strategy.experimental_local_results
    p_t = np.concatenate([e.numpy() for e in local(expected)])
    rule = model.learning_rule
    global_value = 0.5 * rule["lambda_t"] * (p_t.mean() - rule["target_locations"][0]) ** 2
    p = np.concatenate([c.numpy() for c in local(cells)]).astype(np.float64)      # [8, 9]
    global_gradient = (rule["lambda_t"] * (p_t.mean() - rule["target_locations"][0]) / len(p)
                       * (p * (1 - p)).sum(0))                     # d R_t / d bias, by hand
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
        "r_t_replicas": float(sum(t.numpy() for t in local(terms))),
        "r_t_global": float(global_value),
        "r_t_gradient_replicas": np.sum([g.numpy() for g in local(gradients)], 0).tolist(),
        "r_t_gradient_global": global_gradient.tolist(),
        "metrics": result["metrics"]["levels"],
    }))


if __name__ == "__main__":
    main(sys.argv[1])
