"""The contract the pyramid model and the baselines share, and the learning rule's `train_step`."""
import keras
import tensorflow as tf

from tf_pyramid.modeling import learning_rule as rules
from tf_pyramid.modeling import precision
from tf_pyramid.modeling.image_preprocessor import ImagePreprocessor

NUM_CELLS = 9  # cells of the 3 x 3 attention grid

# What calling a model returns (B = batch, L = exit levels run, C = classes, g = NUM_CELLS):
# logits [B, C]: deepest level; level_logits [B, L, C]: prediction after each level.
# num_locations [B], level_num_locations [B, L]: attended cells in total (up to each level).
# macs [B], level_macs [B, L]: multiply-accumulates spent on the image by a traversal that stops
#   after the deepest level / after each level (all modules, biases excluded).
# location_log_prob [B, L]: log p(l|x) of the masks applied by a traversal that stops after each
#   level (eq. 8a); expected_locations [B, L]: p_t (eq. 2); cell_prob_sum [B, L, g] and
#   location_applications [B, L]: sums for pbar_k (eq. 3); location_entropy_sum [B, L]: sum of
#   the Bernoulli entropies of the applied cells (to see a collapsing policy).
# Every float output is float32 under any dtype policy (`precision`).
OUTPUT_KEYS = ("logits", "level_logits", "num_locations", "level_num_locations", "macs",
               "level_macs", "location_log_prob", "expected_locations", "cell_prob_sum",
               "location_applications", "location_entropy_sum")

# Early-exit outputs (`anytime`), also the outputs of every serving signature.
ANYTIME_KEYS = ("probabilities", "classes", "levels_used", "num_locations", "macs")


class AnytimeClassifier(keras.Model):
    """A classifier that can answer after any of its `exit_levels` levels.

    Subclasses (`PyramidClassifier`, `BaselineClassifier`) set `input_size`, `channels`,
    `num_classes`, and implement `exit_levels`, `modules()`, `module_costs()` and
    `call(images, training=False, depth=None, policy=None)` returning the `OUTPUT_KEYS` dict.
    This class adds what is common: the early exit (`anytime`), the preprocessing saved with
    the model, and training under the paper's learning rule, which comes in through `compile`.

    Calling the model takes model-ready inputs (the data pipelines' output). `predict` and
    `evaluate` take raw pixels 0-255 of any size and pass them through `preprocessor` first, so a
    loaded model predicts right whatever range it was trained on; `fit` (and `train_step`, which
    the trainer drives) take model-ready batches, as the training pipelines with their
    augmentation give them.

    Args:
        input_convention: how images were prepared for this model (size, channels, value range,
            evaluation resize), as `tf_pyramid.data.InputConvention.get_config()`: becomes the
            `preprocessor` (also how a file saved before the layer existed loads).
        preprocessor: an `ImagePreprocessor` (or its serialised config) instead.
        Neither: the model has no preprocessor, and `predict`/`evaluate` take model-ready inputs.
        dtype: the Keras dtype policy of every module layer, one of `precision.DTYPE_POLICIES`
            ("float32" by default; "mixed_bfloat16", "mixed_float16"). The preprocessor, the
            outputs and the learning rule's terms stay float32 (docs/model.md, "Mixed
            precision").
    """

    has_attention = False  # whether calls take an attention `policy`

    def __init__(self, input_convention=None, preprocessor=None, **kwargs):
        super().__init__(**kwargs)
        precision.check_dtype_policy(self.dtype_policy)
        if isinstance(preprocessor, dict):
            preprocessor = keras.saving.deserialize_keras_object(preprocessor)
        if preprocessor is not None and not isinstance(preprocessor, ImagePreprocessor):
            raise TypeError(f"preprocessor must be an ImagePreprocessor; got "
                            f"{type(preprocessor).__name__}.")
        self._set_preprocessor(preprocessor)
        if preprocessor is None:
            self.input_convention = input_convention
        self._set_learning_rule(None)

    @property
    def input_dtype(self):
        """Images reach `call` as float32 under any policy (not cast to the compute dtype): the
        pyramid's area resizes stay float32, and calling the model agrees with `anytime`."""
        return "float32"

    # ------------------------------------------------------------------------------------
    # The contract.
    @property
    def exit_levels(self):
        """How many levels the model can answer after (L for a pyramid model, 1 for a baseline)."""
        raise NotImplementedError

    def modules(self):
        """`{module name: [layers]}`; the names are those of `module_costs()`."""
        raise NotImplementedError

    def module_costs(self):
        """Per-application MACs of every module (biases excluded)."""
        raise NotImplementedError

    def module_layers(self):
        """Every module layer, in a fixed order (weight copies between depths rely on it)."""
        return [layer for layers in self.modules().values() for layer in layers]

    def checkpoint_state(self):
        """Training state `tf.train.Checkpoint(model=...)` does not reach by itself."""
        return {}

    def anytime(self, images, threshold, policy="threshold"):
        """Per-image early exit on model-ready `images`: the `ANYTIME_KEYS` dict.

        An image stops at the first level whose top softmax probability is >= `threshold`
        (`<= 0`: every image after level 1; `> 1`: never early): a scalar, or one value per image
        ([B], as a batch of several requests carries them).
        """
        raise NotImplementedError

    # ------------------------------------------------------------------------------------
    # Preprocessing.
    @property
    def preprocessor(self):
        """The `ImagePreprocessor` of raw pixels (None for a model built without a convention)."""
        return self._preprocessor

    def _set_preprocessor(self, preprocessor):
        # Past Keras' tracking, which refuses a new layer on a built model: the layer has no
        # weights, and it is saved through `get_config`.
        object.__setattr__(self, "_preprocessor", preprocessor)

    @property
    def input_convention(self):
        """The preprocessor's convention as a dict (`InputConvention.get_config()` form), or None.
        Setting a dict (or None) replaces the preprocessor."""
        return None if self._preprocessor is None else self._preprocessor.convention()

    @input_convention.setter
    def input_convention(self, convention):
        self._set_preprocessor(
            ImagePreprocessor.from_convention(convention, name="preprocessor")
            if convention else None)

    def preprocess(self, images, where="predict"):
        """Raw pixels -> model-ready inputs (`preprocessor`, after its range check); model-ready
        inputs pass unchanged through a model without a preprocessor."""
        if self._preprocessor is None:
            return images
        return self._preprocessor(self._preprocessor.check_pixels(images, where))

    def get_config(self):
        config = super().get_config()
        if self._preprocessor is not None:
            config["preprocessor"] = keras.saving.serialize_keras_object(self._preprocessor)
        return config

    # ------------------------------------------------------------------------------------
    # The learning rule, through compile().
    def compile(self, optimizer="adam", learning_rule=None, **kwargs):
        """`keras.Model.compile` plus the paper's learning rule (a dict, see
        `learning_rule.DEFAULTS`; None = cross-entropy of the deepest level).

        Creates the moving-average reward baselines (eq. 12, one per exit level) and the metrics.
        The rule is saved with the compile config, so a loaded `.keras` file keeps training with
        it (and with the baselines it had reached).
        """
        rule = dict(learning_rule or {})
        baseline = rule.pop("reward_baseline", None)
        resolved = rules.resolve_learning_rule(rule, self.exit_levels)
        super().compile(optimizer=optimizer, **kwargs)
        self._set_learning_rule(resolved)
        # A tf.Variable, not a keras.Variable: Keras tracks only its own variables, and adding
        # one to a built model is refused (nor should the baseline be one of the model's
        # weights); TensorFlow's attribute tracking still makes it `model/reward_baseline` of
        # `tf.train.Checkpoint(model=...)`, so checkpoints save and restore it.
        self.reward_baseline = tf.Variable(
            tf.zeros([self.exit_levels]) if baseline is None else [float(v) for v in baseline],
            dtype=tf.float32, trainable=False, name="reward_baseline",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        names = ["loss", "cross_entropy"]
        if self.exit_levels > 1:
            names += ["reinforce", "target_locations", "uniformity", "num_locations",
                      "location_probability", "location_entropy"]
        trackers = {name: keras.metrics.Mean(name=name) for name in names}
        for depth in range(1, self.exit_levels + 1):
            trackers[f"level_{depth}_accuracy"] = keras.metrics.SparseCategoricalAccuracy(
                name=f"level_{depth}_accuracy")
        # Past Keras' attribute tracking, which refuses new metrics on a built model; `metrics`
        # lists them, so Keras resets them each epoch.
        object.__setattr__(self, "_trackers", trackers)

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and self.learning_rule is not None:
            config["learning_rule"] = dict(
                self.learning_rule,
                reward_baseline=[float(v) for v in self.reward_baseline.numpy()])
        return config

    def compile_from_config(self, config):
        config = dict(config)
        rule = config.pop("learning_rule", None)
        config = keras.saving.deserialize_keras_object(config)
        if rule is not None:
            rule = {key: list(value) if isinstance(value, (list, tuple)) else value
                    for key, value in rule.items()}
        self.compile(learning_rule=rule, **config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    @property
    def learning_rule(self):
        """The resolved learning rule (a plain dict), None before `compile`."""
        return self._learning_rule

    def _set_learning_rule(self, rule):
        # Past TensorFlow's attribute tracking, which would wrap the dict in a proxy that is
        # neither JSON serialisable nor a plain dict.
        object.__setattr__(self, "_learning_rule", rule)

    def _require_compiled(self):
        if self.learning_rule is None:
            raise RuntimeError(f"{type(self).__name__}: call compile(optimizer=..., "
                               "learning_rule=...) before training or evaluating with Keras.")

    def learning_rule_losses(self, outputs, labels):
        """Scalar terms of eq. 6 (a sum of eq. 4 over depths) for one replica's batch.

        Per-example terms are averaged over the global batch and the batch-level regularisers
        are this replica's share of their global-batch value, so that summing replica gradients
        gives the gradient of the global-batch loss.
        """
        self._require_compiled()
        rule = self.learning_rule
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
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
            per_example = rules.reinforce_term(
                log_prob_labels, outputs["location_log_prob"][:, index],
                self.reward_baseline[index], rule["lambda_f"])
            terms["reinforce"] += weight * tf.nn.compute_average_loss(per_example)
            terms["target_locations"] += weight * rules.target_locations_penalty(
                outputs["expected_locations"][:, index], rule["target_locations"][depth - 2],
                rule["lambda_t"])
            terms["uniformity"] += weight * rules.uniformity_penalty(
                outputs["cell_prob_sum"][:, index], outputs["location_applications"][:, index],
                rules.cell_probability_target(rule, depth), rule["lambda_r"])
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

    @property
    def metrics(self):
        return list(getattr(self, "_trackers", {}).values())

    def _update_metrics(self, outputs, labels, terms):
        trackers = self._trackers
        replicas = tf.cast(tf.distribute.get_replica_context().num_replicas_in_sync, tf.float32)
        for name, value in terms.items():
            if name in trackers:
                trackers[name].update_state(value * replicas)
        if "num_locations" in trackers:
            trackers["num_locations"].update_state(tf.cast(outputs["num_locations"], tf.float32))
            applications = tf.reduce_sum(
                tf.cast(outputs["location_applications"][:, -1], tf.float32))
            cells = tf.maximum(applications * NUM_CELLS, 1.0)
            trackers["location_probability"].update_state(
                tf.reduce_sum(outputs["cell_prob_sum"][:, -1]) / cells)
            trackers["location_entropy"].update_state(
                tf.reduce_sum(outputs["location_entropy_sum"][:, -1]) / cells)
        labels = tf.reshape(labels, [-1])
        for depth in range(1, outputs["level_logits"].shape[1] + 1):
            trackers[f"level_{depth}_accuracy"].update_state(
                labels, outputs["level_logits"][:, depth - 1])

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        if self.exit_levels > 1:
            for depth in range(1, self.exit_levels + 1):
                logs[f"baseline_{depth}"] = self.reward_baseline[depth - 1]
        return logs

    def train_step(self, data):
        self._require_compiled()
        images, labels = data[0], data[1]
        samples = self.learning_rule["mc_samples"]
        if samples > 1 and self.exit_levels > 1:
            # Every copy draws its own masks (eq. 11); a model without attention would only
            # repeat the same gradient.
            images = tf.repeat(images, samples, axis=0)
            labels = tf.repeat(labels, samples, axis=0)
        with tf.GradientTape() as tape:
            outputs = self(images, training=True)
            terms = self.learning_rule_losses(outputs, labels)
            loss = terms["loss"]
            if self.losses:
                loss += tf.add_n(self.losses)
            # Loss scaling (mixed_float16: a `keras.optimizers.LossScaleOptimizer`, which
            # `compile` puts around the optimizer): its `apply` divides the gradients by the
            # same scale and skips the update, halving the scale, when one is not finite.
            # An identity for other optimizers.
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        self.update_reward_baseline(outputs, labels)
        self._update_metrics(outputs, labels, terms)
        return self._logs()

    def fit(self, *args, **kwargs):
        """`keras.Model.fit` on model-ready batches, `validation_data` included (as the training
        pipelines give them); `evaluate` alone takes raw pixels. Keras keeps one compiled
        `test_function` for both, so it is rebuilt on the way in and out."""
        object.__setattr__(self, "_fitting", True)
        self.test_function = None
        try:
            return super().fit(*args, **kwargs)
        finally:
            object.__setattr__(self, "_fitting", False)
            self.test_function = None

    def test_step(self, data):
        self._require_compiled()
        images, labels = data[0], data[1]
        if not getattr(self, "_fitting", False):
            images = self.preprocess(images, "evaluate")
        outputs = self(images, training=False)
        terms = self.learning_rule_losses(outputs, labels)
        self._update_metrics(outputs, labels, terms)
        return self._logs()

    def predict_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(self.preprocess(images, "predict"), training=False)


def anytime_outputs(probabilities, levels_used, num_locations, macs):
    """The `ANYTIME_KEYS` dict."""
    return {
        "probabilities": probabilities,
        "classes": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        "levels_used": tf.cast(levels_used, tf.int32),
        "num_locations": tf.cast(num_locations, tf.int64),
        "macs": tf.cast(macs, tf.int64),
    }


def exit_outputs(outputs, depth):
    """The `ANYTIME_KEYS` dict of a model call truncated after `depth` levels."""
    probabilities = tf.nn.softmax(outputs["logits"])
    batch = tf.shape(probabilities)[0]
    return anytime_outputs(probabilities, tf.fill([batch], tf.constant(depth, tf.int32)),
                           outputs["num_locations"], outputs["macs"])
