"""The paper's learning rules (Sec. 4, A.4): hyper-parameters, their validation and the loss terms.

Terms, for the traversal truncated after `z` levels (eq. 6 weighs several such `z`):
  cross-entropy       mean_i -log p(y_i | l_i, x_i)
  REINFORCE (eq. 13)  mean_i -lambda_f * sg(log p(y_i|l_i,x_i) - b_z) * log p(l_i|x_i)
  R_t (eq. 2)         lambda_t / 2 * (mean_i p_t^i - c_t^z)**2
  R_r (eq. 3)         lambda_r / (2 g) * sum_k (pbar_k - c_r)**2
`tf.stop_gradient` before the location module and on the hard masks routes the last three terms to
the location module only, and keeps cross-entropy away from it.
"""
import tensorflow as tf

DEFAULTS = {
    "lambda_f": 0.0,
    "lambda_t": 0.0,
    "lambda_r": 0.0,
    "target_locations": None,       # c_t: float, or one value per depth 2..L (eq. 6)
    "target_cell_probability": None,  # c_r; None = consistent with c_t (see below)
    "mc_samples": 2,                # M (paper A.5.2, A.6.2: 2 for every experiment)
    "level_weights": None,          # lambda_z for depths 1..L; None = deepest level only (eq. 4)
    "baseline_decay": 0.9,          # eq. 12
}


def uniform_cell_probability(target_locations, depth, num_cells=9):
    """The per-cell probability q at which a traversal of `depth` levels attends `c_t` cells.

    With every cell attended with probability q, the expected number of attended cells is
    sum_{j=1}^{depth-1} (g q)^j. Using this q as c_r makes R_r (eq. 3) agree with R_t (eq. 2)
    instead of pulling against it; the paper gives no c_r and notes the two are interdependent.
    """
    if depth < 2 or target_locations <= 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(60):
        q = 0.5 * (low + high)
        expected = sum((num_cells * q) ** j for j in range(1, depth))
        low, high = (q, high) if expected < target_locations else (low, q)
    return 0.5 * (low + high)


def reinforce_term(log_prob_labels, location_log_prob, baseline, lambda_f):
    """Per-example REINFORCE surrogate of eq. 13 (its gradient is the score-function estimate)."""
    advantage = tf.stop_gradient(log_prob_labels - baseline)
    return -lambda_f * advantage * location_log_prob


def _global_sum(value):
    """`value` summed over the replicas (itself outside `tf.distribute` or with one replica)."""
    return tf.distribute.get_replica_context().all_reduce("sum", value)


def _replica_share(value, gradient_surrogate):
    """`value / replicas`, with the gradient of `gradient_surrogate`: the replicas' terms sum to the
    global-batch value, and summing their gradients gives the global-batch gradient."""
    replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return tf.stop_gradient(value) / replicas + gradient_surrogate - tf.stop_gradient(
        gradient_surrogate)


def target_locations_penalty(expected_locations, target, lambda_t):
    """R_t of eq. 2 on the global batch of p_t values (this replica's share of it).

    The mean over the global batch is formed before squaring (all-reduced sums), so several
    replicas give the same term as one device with the whole batch.
    """
    local_sum = tf.reduce_sum(expected_locations)
    count = _global_sum(tf.cast(tf.size(expected_locations), tf.float32))
    error = _global_sum(tf.stop_gradient(local_sum)) / tf.maximum(count, 1.0) - target
    value = 0.5 * lambda_t * tf.square(error)
    # d value / d p_t^i = lambda_t * error / count for every image i of every replica.
    surrogate = lambda_t * tf.stop_gradient(error) * local_sum / tf.maximum(count, 1.0)
    return _replica_share(value, surrogate)


def uniformity_penalty(cell_prob_sum, applications, target, lambda_r):
    """R_r of eq. 3 on the global batch (this replica's share); `cell_prob_sum` [N, g],
    `applications` [N] as returned by the model. pbar_k pools every replica's applications."""
    local_sum = tf.reduce_sum(cell_prob_sum, axis=0)                          # [g]
    count = tf.maximum(_global_sum(tf.reduce_sum(tf.cast(applications, tf.float32))), 1.0)
    error = _global_sum(tf.stop_gradient(local_sum)) / count - target        # pbar_k - c_r
    num_cells = tf.cast(tf.shape(cell_prob_sum)[-1], tf.float32)
    value = lambda_r / (2.0 * num_cells) * tf.reduce_sum(tf.square(error))
    surrogate = lambda_r / num_cells * tf.reduce_sum(tf.stop_gradient(error) * local_sum) / count
    return _replica_share(value, surrogate)


def _as_list(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return [float(value)]


def resolve_learning_rule(learning_rule, exit_levels):
    """The validated rule for a model with `exit_levels` exits: every key of `DEFAULTS`, lists
    expanded (`level_weights` one per depth 1..L, `target_locations` one per depth 2..L).

    The one place these hyper-parameters are checked; the trainer maps the `ValueError` to the
    flag that set the value.
    """
    unknown = set(learning_rule or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(
            f"Unknown learning_rule keys {sorted(unknown)}; expected some of {sorted(DEFAULTS)}.")
    rule = dict(DEFAULTS, **(learning_rule or {}))
    levels = int(exit_levels)
    weights = _as_list(rule["level_weights"])
    if weights is None:
        weights = [0.0] * (levels - 1) + [1.0]
    if len(weights) != levels:
        raise LearningRuleError("level_weights",
                                f"has {len(weights)} values for {levels} levels: give one per depth "
                                f"1..{levels} ({levels} values)")
    if not any(weights):
        raise LearningRuleError("level_weights", "are all zero: nothing would be trained")
    targets = _as_list(rule["target_locations"])
    if targets is None:
        targets = [0.0]
    if len(targets) == 1:
        targets = targets * max(levels - 1, 1)
    if len(targets) != max(levels - 1, 1):
        raise LearningRuleError("target_locations",
                                f"has {len(targets)} values for {levels} levels: give one value, or "
                                f"one per depth 2..{levels} ({levels - 1} values)")
    if any(v < 0 for v in targets):
        raise LearningRuleError("target_locations", f"must be >= 0; got {targets}")
    probability = rule["target_cell_probability"]
    if probability is not None and not 0.0 <= float(probability) <= 1.0:
        raise LearningRuleError("target_cell_probability",
                                f"is a probability in [0, 1]; got {probability}")
    if isinstance(rule["mc_samples"], bool) or int(rule["mc_samples"]) < 1:
        raise LearningRuleError("mc_samples", f"must be >= 1; got {rule['mc_samples']}")
    if not 0.0 <= float(rule["baseline_decay"]) < 1.0:
        raise LearningRuleError("baseline_decay",
                                f"must lie in [0, 1); got {rule['baseline_decay']}")
    rule.update(level_weights=weights, target_locations=targets,
                mc_samples=int(rule["mc_samples"]),
                target_cell_probability=None if probability is None else float(probability))
    for key in ("lambda_f", "lambda_t", "lambda_r", "baseline_decay"):
        rule[key] = float(rule[key])
    return rule


class LearningRuleError(ValueError):
    """A learning-rule hyper-parameter that cannot work. `key` names it and `problem` says what is
    wrong, so that the trainer can name the flag instead (`--c_t has 3 values for ...`)."""

    def __init__(self, key, problem):
        super().__init__(f"learning_rule[{key!r}] {problem}.")
        self.key, self.problem = key, problem


def initial_cell_probability(rule, levels):
    """Where a fresh training run starts the location module: c_r of the full depth (every cell
    equally likely, the density at which R_t and R_r are met), kept inside [0.01, 0.99] so that
    its logit is finite; None for one level or no attention target (c_t = 0 and no c_r)."""
    if int(levels) < 2:
        return None
    q = cell_probability_target(rule, int(levels))
    if q <= 0.0:
        return None
    return min(max(q, 0.01), 0.99)


def cell_probability_target(rule, depth):
    """c_r for the rule at `depth` levels: the configured value or the one consistent with c_t."""
    value = rule["target_cell_probability"]
    if value is not None:
        return float(value)
    return uniform_cell_probability(rule["target_locations"][depth - 2], depth)
