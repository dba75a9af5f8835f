"""The paper's learning rules (Sec. 4, A.4) as the pyramid model's `train_step`.

Terms, for the traversal truncated after `z` levels (eq. 6 weighs several such `z`):
  cross-entropy       mean_i -log p(y_i | l_i, x_i)
  REINFORCE (eq. 13)  mean_i -lambda_f * sg(log p(y_i|l_i,x_i) - b_z) * log p(l_i|x_i)
  R_t (eq. 14)        lambda_t / 2 * (mean_i p_t^i - c_t^z)**2
  R_r (eq. 15)        lambda_r / (2 g) * sum_k (pbar_k - c_r)**2
`tf.stop_gradient` before the location module and on the hard masks routes the last three terms to
the location module only, and keeps cross-entropy away from it.
"""
import keras
import tensorflow as tf

DEFAULTS = {
    "lambda_f": 0.0,
    "lambda_t": 0.0,
    "lambda_r": 0.0,
    "target_locations": None,       # c_t: float, or one value per depth 2..L (eq. 6)
    "target_cell_probability": None,  # c_r; None = consistent with c_t (see below)
    "mc_samples": 1,                # M
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


def target_locations_penalty(expected_locations, target, lambda_t):
    """R_t of eq. 14 on a batch of p_t values."""
    return 0.5 * lambda_t * tf.square(tf.reduce_mean(expected_locations) - target)


def uniformity_penalty(cell_prob_sum, applications, target, lambda_r):
    """R_r of eq. 15; `cell_prob_sum` [N, g], `applications` [N] as returned by the model."""
    count = tf.maximum(tf.reduce_sum(tf.cast(applications, tf.float32)), 1.0)
    mean_probability = tf.reduce_sum(cell_prob_sum, axis=0) / count        # pbar_k
    num_cells = tf.cast(tf.shape(cell_prob_sum)[-1], tf.float32)
    return lambda_r / (2.0 * num_cells) * tf.reduce_sum(tf.square(mean_probability - target))


def _as_list(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return [float(value)]


class LearningRuleMixin:
    """Adds the learning rule, its hyper-parameters, its metrics and `train_step` to the model."""

    def init_learning_rule(self, learning_rule):
        unknown = set(learning_rule or {}) - set(DEFAULTS)
        if unknown:
            raise ValueError(
                f"Unknown learning_rule keys {sorted(unknown)}; expected some of {sorted(DEFAULTS)}.")
        rule = dict(DEFAULTS, **(learning_rule or {}))
        levels = self.levels
        weights = _as_list(rule["level_weights"])
        if weights is None:
            weights = [0.0] * (levels - 1) + [1.0]
        if len(weights) != levels:
            raise ValueError(
                f"level_weights needs one weight per depth 1..{levels} ({levels} values); got "
                f"{rule['level_weights']!r}.")
        targets = _as_list(rule["target_locations"])
        if targets is None:
            targets = [0.0]
        if len(targets) == 1:
            targets = targets * max(levels - 1, 1)
        if len(targets) != max(levels - 1, 1):
            raise ValueError(
                f"target_locations (c_t) needs one value, or one per depth 2..{levels} "
                f"({levels - 1} values); got {rule['target_locations']!r}.")
        if int(rule["mc_samples"]) < 1:
            raise ValueError(f"mc_samples (M) must be >= 1; got {rule['mc_samples']!r}.")
        rule.update(level_weights=weights, target_locations=targets,
                    mc_samples=int(rule["mc_samples"]))
        for key in ("lambda_f", "lambda_t", "lambda_r", "baseline_decay"):
            rule[key] = float(rule[key])
        self.learning_rule = rule
        # One moving-average baseline per depth (eq. 12), checkpointed with the model.
        self.reward_baseline = self.add_weight(
            shape=(levels,), initializer="zeros", trainable=False, name="reward_baseline",
            aggregation="only_first_replica")
        names = ["loss", "cross_entropy", "reinforce", "target_locations", "uniformity",
                 "num_locations", "location_probability", "location_entropy"]
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        for depth in range(1, levels + 1):
            self._trackers[f"level_{depth}_accuracy"] = keras.metrics.SparseCategoricalAccuracy(
                name=f"level_{depth}_accuracy")

    def learning_rule_config(self):
        return dict(self.learning_rule)

    def cell_probability_target(self, depth):
        """c_r for the rule at `depth` levels: the configured value or the one consistent with c_t."""
        value = self.learning_rule["target_cell_probability"]
        if value is not None:
            return float(value)
        return uniform_cell_probability(self.learning_rule["target_locations"][depth - 2], depth)

    # ----------------------------------------------------------------------------------------
    def learning_rule_losses(self, outputs, labels):
        """Scalar terms of eq. 6 (a sum of eq. 4 over depths) for one replica's batch.

        Per-example terms are averaged over the global batch and the batch-level regularisers
        are divided by the number of replicas, so that summing replica gradients gives the
        gradient of the global-batch loss.
        """
        rule = self.learning_rule
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        terms = {"cross_entropy": 0.0, "reinforce": 0.0, "target_locations": 0.0,
                 "uniformity": 0.0}
        for depth, weight in enumerate(rule["level_weights"], start=1):
            if weight == 0.0:
                continue
            index = depth - 1
            log_prob_labels = -keras.losses.sparse_categorical_crossentropy(
                labels, outputs["level_logits"][:, index], from_logits=True)
            terms["cross_entropy"] += weight * tf.nn.compute_average_loss(-log_prob_labels)
            if depth == 1:
                continue
            per_example = reinforce_term(log_prob_labels, outputs["location_log_prob"][:, index],
                                         self.reward_baseline[index], rule["lambda_f"])
            terms["reinforce"] += weight * tf.nn.compute_average_loss(per_example)
            terms["target_locations"] += weight * target_locations_penalty(
                outputs["expected_locations"][:, index], rule["target_locations"][depth - 2],
                rule["lambda_t"]) / replicas
            terms["uniformity"] += weight * uniformity_penalty(
                outputs["cell_prob_sum"][:, index], outputs["location_applications"][:, index],
                self.cell_probability_target(depth), rule["lambda_r"]) / replicas
        terms = {k: tf.convert_to_tensor(v, tf.float32) for k, v in terms.items()}
        terms["loss"] = tf.add_n(list(terms.values()))
        return terms

    def update_reward_baseline(self, outputs, labels):
        """eq. 12, with the mean of log p(y|l,x) taken over the global batch."""
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        level_logits = outputs["level_logits"]                                 # [N, L, C]
        log_prob_labels = -tf.nn.sparse_softmax_cross_entropy_with_logits(
            tf.repeat(labels[:, None], tf.shape(level_logits)[1], axis=1), level_logits)  # [N, L]
        context = tf.distribute.get_replica_context()
        total = context.all_reduce("sum", tf.reduce_sum(log_prob_labels, axis=0))
        count = context.all_reduce("sum", tf.cast(tf.shape(log_prob_labels)[0], tf.float32))
        decay = self.learning_rule["baseline_decay"]
        depth = tf.shape(log_prob_labels)[1]
        current = self.reward_baseline[:depth]
        updated = decay * current + (1.0 - decay) * total / tf.maximum(count, 1.0)
        self.reward_baseline.assign(
            tf.concat([updated, self.reward_baseline[depth:]], axis=0))

    # ----------------------------------------------------------------------------------------
    @property
    def metrics(self):
        return list(self._trackers.values())

    def _update_metrics(self, outputs, labels, terms):
        trackers = self._trackers
        for name, value in terms.items():
            trackers[name].update_state(value * tf.cast(
                tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32))
        trackers["num_locations"].update_state(tf.cast(outputs["num_locations"], tf.float32))
        applications = tf.reduce_sum(tf.cast(outputs["location_applications"][:, -1], tf.float32))
        mean_probability = tf.reduce_sum(outputs["cell_prob_sum"][:, -1]) / tf.maximum(
            applications * 9.0, 1.0)
        trackers["location_probability"].update_state(mean_probability)
        entropy = tf.reduce_sum(outputs["location_entropy_sum"][:, -1]) / tf.maximum(
            applications * 9.0, 1.0)
        trackers["location_entropy"].update_state(entropy)
        labels = tf.reshape(labels, [-1])
        for depth in range(1, outputs["level_logits"].shape[1] + 1):
            trackers[f"level_{depth}_accuracy"].update_state(
                labels, outputs["level_logits"][:, depth - 1])

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        for depth in range(1, self.levels + 1):
            logs[f"baseline_{depth}"] = self.reward_baseline[depth - 1]
        return logs

    def train_step(self, data):
        images, labels = data[0], data[1]
        samples = self.learning_rule["mc_samples"]
        if samples > 1:  # every copy draws its own masks (eq. 11)
            images = tf.repeat(images, samples, axis=0)
            labels = tf.repeat(labels, samples, axis=0)
        with tf.GradientTape() as tape:
            outputs = self(images, training=True)
            terms = self.learning_rule_losses(outputs, labels)
            loss = terms["loss"]
            if self.losses:
                loss += tf.add_n(self.losses)
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        self.update_reward_baseline(outputs, labels)
        self._update_metrics(outputs, labels, terms)
        return self._logs()

    def test_step(self, data):
        images, labels = data[0], data[1]
        outputs = self(images, training=False)
        terms = self.learning_rule_losses(outputs, labels)
        self._update_metrics(outputs, labels, terms)
        return self._logs()
