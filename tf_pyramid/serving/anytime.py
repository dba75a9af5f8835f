"""Per-image early exit ("anytime" prediction) for pyramid models.

An image stops descending at the first level whose top softmax probability is >= `threshold`;
images that stopped get no location module and no children at deeper levels (skipped work, through
`PyramidClassifier.traverse(descend_fn=...)`), and their answer is that level's prediction.
"""
import tensorflow as tf

from tf_pyramid.modeling import BaselineClassifier

POLICY = "threshold"


def _per_image(values, image_index, batch):
    return tf.math.unsorted_segment_sum(values, image_index, batch)


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
    num_classes = model.num_classes
    tests = []            # per level < L: (probabilities [B, C], stopped here [B])
    state = {}

    def descend_fn(trace, level):
        active = tf.ones([batch], tf.bool) if level == 0 else state["active"]

        def exit_test():
            logits = model.classification_module(
                model.root_vectors(trace, deepest_only=True)[:, 0])
            probabilities = tf.nn.softmax(logits)
            return probabilities, tf.reduce_max(probabilities, axis=-1) >= threshold

        def no_test():
            return tf.zeros([batch, num_classes]), tf.zeros([batch], tf.bool)

        probabilities, stop = tf.cond(run_tests, exit_test, no_test)
        stop = tf.logical_and(stop, active)
        tests.append((probabilities, stop))
        state["active"] = tf.logical_and(active, tf.logical_not(stop))
        return state["active"]

    trace = model.traverse(images, training=False, policy=policy, descend_fn=descend_fn)
    summary = model.summarize(trace, batch)
    levels = model.levels
    deepest = tf.nn.softmax(summary["logits"])
    stops = [stop for _, stop in tests] + [tf.ones([batch], tf.bool)]
    levels_used = tf.cast(tf.argmax(tf.cast(tf.stack(stops, axis=1), tf.int32), axis=1),
                          tf.int32) + 1                                        # [B], 1-based
    candidates = tf.stack([p for p, _ in tests] + [deepest], axis=1)           # [B, L, C]
    probabilities = tf.gather(candidates, levels_used - 1, axis=1, batch_dims=1)
    pick = levels_used[:, None] - 1
    num_locations = tf.gather(summary["level_num_locations"], pick, batch_dims=1)[:, 0]
    macs = tf.gather(summary["level_macs"], pick, batch_dims=1)[:, 0]

    # Exit tests that let an image go on: level t (0-based) costs classification plus a merge per
    # patch at levels < t with an attended child.
    costs = model.module_costs()
    merge_cost = costs["aggregation"] + costs["merging"]
    overhead = tf.zeros([batch], tf.int64)
    merges_above = tf.zeros([batch], tf.int64)
    for level in range(levels - 1):
        went_on = tf.logical_and(run_tests, levels_used - 1 > level)
        test_cost = costs["classification"] + merges_above * merge_cost
        overhead += tf.where(went_on, test_cost, tf.zeros_like(test_cost))
        has_child = tf.reduce_max(trace["mask"][level], axis=1)
        merges_above += tf.cast(_per_image(has_child, trace["image_index"][level], batch),
                                tf.int64)
    return {
        "probabilities": probabilities,
        "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        "levels_used": levels_used,
        "num_locations": tf.cast(num_locations, tf.int64),
        "macs": tf.cast(macs, tf.int64) + overhead,
    }


def format_outputs(outputs, levels_used):
    """The serving outputs from a model call's dict (`logits`, `macs`, maybe `num_locations`)."""
    probabilities = tf.nn.softmax(outputs["logits"])
    batch = tf.shape(probabilities)[0]
    num_locations = outputs.get("num_locations")
    if num_locations is None:
        num_locations = tf.zeros([batch], tf.int64)
    return {
        "probabilities": probabilities,
        "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        "levels_used": tf.fill([batch], tf.constant(levels_used, tf.int32)),
        "num_locations": tf.cast(num_locations, tf.int64),
        "macs": tf.cast(outputs["macs"], tf.int64),
    }
