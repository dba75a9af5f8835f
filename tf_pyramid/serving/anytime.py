"""Per-image early exit ("anytime" prediction) for pyramid models.

An image stops descending at the first level whose top softmax probability is >= `threshold`;
images that stopped get no location module and no children at deeper levels (skipped work, through
`PyramidClassifier.traverse(descend_fn=...)`), and their answer is that level's prediction.
"""
import tensorflow as tf

from tf_pyramid.modeling import BaselineClassifier

POLICY = "threshold"


def anytime(model, images, threshold, policy=POLICY):
    """Early-exit prediction of a pyramid (or baseline) model on model-ready `images`.

    Args:
        model: `PyramidClassifier` or `BaselineClassifier`.
        images: float [B, S, S, C] in the model's input range (S = `model.input_size`).
        threshold: scalar; an image stops at the first level whose top probability >= threshold.
            `<= 0` stops every image after level 1; `> 1` never stops early (no exit test runs).
        policy: attention policy (deterministic "threshold" by default).

    Returns a dict: `probabilities` [B, C] of the level each image stopped at, `classes` [B]
    (int64), `levels_used` [B] (int32, 1-based), `num_locations` [B] and `macs` [B] (int64).
    `macs` is the model's cost of a traversal stopping at `levels_used` (see docs/model.md) plus
    the exit tests that said "go on" (classification and the bottom-up merges of the prediction
    at each such level); an image that never stops early costs exactly what `serving_default`
    reports when `threshold > 1`.
    """
    threshold = tf.cast(tf.convert_to_tensor(threshold), tf.float32)
    if isinstance(model, BaselineClassifier):  # one exit: the threshold changes nothing
        return format_outputs(model(images, training=False), levels_used=1)
    batch = tf.shape(images)[0]
    run_tests = threshold <= 1.0
    state = {"active": tf.ones([batch], tf.bool), "levels_used": tf.ones([batch], tf.int32)}

    def descend_fn(trace, level):
        def exit_test():
            logits = model.classification_module(
                model.root_vectors(trace, deepest_only=True)[:, 0])
            return tf.reduce_max(tf.nn.softmax(logits), axis=-1) >= threshold

        stop = tf.cond(run_tests, exit_test, lambda: tf.zeros([batch], tf.bool))
        state["active"] = tf.logical_and(state["active"], tf.logical_not(stop))
        state["levels_used"] += tf.cast(state["active"], tf.int32)
        return state["active"]

    trace = model.traverse(images, training=False, policy=policy, descend_fn=descend_fn)
    summary = model.summarize(trace, batch)
    levels_used = state["levels_used"]                                          # [B], 1-based
    pick = levels_used[:, None] - 1
    # An image that stopped at level t has no patches below it: the level-t prediction of the
    # whole traversal is the one its exit test saw.
    probabilities = tf.gather(tf.nn.softmax(summary["level_logits"]), pick, batch_dims=1)[:, 0]
    num_locations = tf.gather(summary["level_num_locations"], pick, batch_dims=1)[:, 0]
    macs = tf.gather(summary["level_macs"], pick, batch_dims=1)[:, 0]

    # Exit tests that let an image go on: the test after level t costs the merging and the
    # classification of the traversal truncated after t, i.e. `level_macs[:, t]` less its
    # feature extraction (1 + level_num_locations patches) and location modules.
    costs = model.module_costs()
    test_costs = (summary["level_macs"]
                  - (1 + summary["level_num_locations"]) * costs["feature_extraction"]
                  - summary["location_applications"] * costs["location"])    # [B, L]
    went_on = tf.logical_and(run_tests, tf.range(model.levels)[None, :] < pick)
    overhead = tf.reduce_sum(tf.where(went_on, test_costs, tf.zeros_like(test_costs)), axis=1)
    return serving_outputs(probabilities, levels_used, num_locations, macs + overhead)


def serving_outputs(probabilities, levels_used, num_locations, macs):
    """The signatures' output dict (see `signatures`)."""
    return {
        "probabilities": probabilities,
        "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        "levels_used": levels_used,
        "num_locations": tf.cast(num_locations, tf.int64),
        "macs": tf.cast(macs, tf.int64),
    }


def format_outputs(outputs, levels_used):
    """The serving outputs from a model call's dict (`logits`, `macs`, maybe `num_locations`)."""
    probabilities = tf.nn.softmax(outputs["logits"])
    batch = tf.shape(probabilities)[0]
    num_locations = outputs.get("num_locations")
    if num_locations is None:
        num_locations = tf.zeros([batch], tf.int64)
    return serving_outputs(probabilities, tf.fill([batch], tf.constant(levels_used, tf.int32)),
                           num_locations, outputs["macs"])
