"""The pyramid model: top-down traversal with hard attention, bottom-up merging (paper Sec. 3)."""
import keras
import numpy as np
import tensorflow as tf

from tf_pyramid.modeling import attention_policy
from tf_pyramid.modeling import input_checks
from tf_pyramid.modeling.anytime_classifier import NUM_CELLS, AnytimeClassifier, anytime_outputs
from tf_pyramid.modeling.layers import specs
from tf_pyramid.modeling.layers.aggregation_module import AggregationModule
from tf_pyramid.modeling.layers.classification_module import ClassificationModule
from tf_pyramid.modeling.layers.feature_extraction import FeatureExtraction
from tf_pyramid.modeling.layers.location_module import LocationModule
from tf_pyramid.modeling.layers.merging_module import MergingModule

GRID_SIZE = 3
_REPLICA_SEED_STRIDE = 1000003


@keras.saving.register_keras_serializable(package="tf_pyramid")
class PyramidClassifier(AnytimeClassifier):
    """Classifies an image by traversing its pyramid top-down with hard attention.

    Level `l` of the pyramid is the input area-downscaled to `b * 2**(l-1)`; level 1 goes through
    the feature extraction module (FE) whole; the location module picks cells of a 3x3 grid (50%
    overlap) whose `b x b` crops of the next level go through the same FE, and so on to level `L`.
    Features are merged bottom-up (eq. 7) and a prediction is made after every level.

    Compute follows attention: per level the attended patches of the whole batch are gathered
    into one flat batch, FE runs once on it, and results are scattered back for merging.

    Calling the model returns the dict described by `anytime_classifier.OUTPUT_KEYS` (one entry
    per level run); `traverse()` gives the per-level patches, masks and probabilities themselves.
    The learning rule comes in through `compile(optimizer, learning_rule=...)`.

    Args:
        layer_specs: FE layer specs (see `FeatureExtraction`).
        base_resolution: b, side of every patch FE sees (even).
        levels: L, number of pyramid levels; the input side is `b * 2**(L-1)`.
        num_classes: classifier outputs.
        channels: image channels.
        policy: "threshold", "sample" or "topk:K" for inference (training always samples).
        seed: seed of the Bernoulli draws.
        input_convention: see `AnytimeClassifier`.
    """

    has_attention = True

    def __init__(self, layer_specs, base_resolution, levels, num_classes, channels=3,
                 policy="threshold", seed=None, negative_slope=specs.NEGATIVE_SLOPE,
                 input_convention=None, **kwargs):
        super().__init__(input_convention=input_convention, **kwargs)
        self.layer_specs = specs.validate_layer_specs(layer_specs)
        self.base_resolution = int(base_resolution)
        self.levels = input_checks.check_levels(levels)
        self.num_classes = int(num_classes)
        self.channels = int(channels)
        self.negative_slope = float(negative_slope)
        self.seed = seed
        if self.base_resolution < 2 or self.base_resolution % 2:
            raise ValueError(
                f"base_resolution must be an even integer >= 2 (children sit at offsets 0, b/2, "
                f"b); got {base_resolution!r}.")
        self._policy = None
        self.policy = policy
        policy = self.dtype_policy  # every module runs under the model's dtype policy
        self.feature_extraction = FeatureExtraction(
            self.layer_specs, negative_slope=negative_slope, dtype=policy,
            name="feature_extraction")
        self.features = self.feature_extraction.features
        self.location_module = LocationModule(NUM_CELLS, dtype=policy, name="location")
        self.aggregation_module = AggregationModule(
            self.features, GRID_SIZE, negative_slope=negative_slope, dtype=policy,
            name="aggregation")
        self.merging_module = MergingModule(
            self.features, negative_slope=negative_slope, dtype=policy, name="merging")
        self.classification_module = ClassificationModule(self.num_classes, dtype=policy,
                                                          name="classification")
        self.seed_generator = keras.random.SeedGenerator(seed, name="attention_seed")
        # The flat per-level batches have data-dependent sizes: keep `fit` from choosing XLA
        # (jit_compile="auto" would on a GPU).
        self.supports_jit = False
        self.build((None, self.input_size, self.input_size, self.channels))

    # ----------------------------------------------------------------------------------------
    # Configuration.
    @property
    def input_size(self):
        """Side of the input images, `b * 2**(L-1)`."""
        return self.base_resolution * 2 ** (self.levels - 1)

    @property
    def exit_levels(self):
        return self.levels

    @property
    def policy(self):
        return self._policy

    @policy.setter
    def policy(self, value):
        self._policy_kind, self._policy_k = attention_policy.parse_policy(value, NUM_CELLS)
        self._policy = str(value).strip().lower()

    @property
    def feature_map_shape(self):
        b = self.base_resolution
        return specs.feature_map_shape(self.layer_specs, (b, b))

    def build(self, input_shape=None):
        if self.built:
            return
        b, f = self.base_resolution, self.features
        self.feature_extraction.build((None, b, b, self.channels))
        self.location_module.build((None, *self.feature_map_shape))
        self.aggregation_module.build((None, GRID_SIZE, GRID_SIZE, f))
        self.merging_module.build(((None, f), (None, f)))
        self.classification_module.build((None, f))
        self.built = True

    def modules(self):
        return {"feature_extraction": [self.feature_extraction],
                "location": [self.location_module],
                "aggregation": [self.aggregation_module],
                "merging": [self.merging_module],
                "classification": [self.classification_module]}

    def checkpoint_state(self):
        # keras.random.SeedGenerator is not reached by tf.train.Checkpoint(model=...): saving its
        # state lets a resumed run continue the same stream of masks.
        return {"attention_seed": self.seed_generator.state}

    def module_costs(self):
        """Per-application MACs of every module (multiply-accumulates, biases excluded)."""
        b, f = self.base_resolution, self.features
        return {
            "feature_extraction": self.feature_extraction.macs(b, b, self.channels),
            "location": self.location_module.macs(self.feature_map_shape),
            "aggregation": self.aggregation_module.macs(f),
            "merging": self.merging_module.macs(f),
            "classification": self.classification_module.macs(f),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            layer_specs=[list(s) for s in self.layer_specs],
            base_resolution=self.base_resolution, levels=self.levels,
            num_classes=self.num_classes, channels=self.channels, policy=self.policy,
            seed=self.seed, negative_slope=self.negative_slope)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("learning_rule", None)  # files of version 0.1 kept the rule here
        return cls(**config)

    # ----------------------------------------------------------------------------------------
    # Top-down traversal.
    def image_pyramid(self, images, depth=None):
        """Levels 1..depth of the pyramid: 2x2 average pooling is the exact area resize by 2."""
        depth = self.levels if depth is None else depth
        pyramid = [images]
        for _ in range(self.levels - 1):
            pyramid.insert(0, tf.nn.avg_pool2d(pyramid[0], 2, 2, "VALID"))
        return pyramid[:depth]

    def _attention_seed(self):
        """A stateless seed that differs per call and per replica (`keras.random` would draw the
        same numbers on every replica of a `tf.distribute` strategy)."""
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        replica = tf.distribute.get_replica_context()
        replica_id = 0 if replica is None else replica.replica_id_in_sync_group
        return seed + tf.stack([tf.constant(0, tf.int64),
                                tf.cast(replica_id, tf.int64) * _REPLICA_SEED_STRIDE])

    @staticmethod
    def _unless_empty(fn, batch, empty_shapes, dtype=tf.float32):
        """`fn()` when the flat batch has patches, else empty outputs of `dtype`.

        TF's conv kernels return a wrongly shaped result for an empty batch, which happens
        whenever no cell of a level is attended anywhere in the batch.
        """
        def empty():
            outputs = tuple(tf.zeros([0, *shape], dtype) for shape in empty_shapes)
            return outputs if len(outputs) > 1 else outputs[0]
        return tf.cond(batch > 0, fn, empty)

    def _crop_children(self, level_image, image_index, offsets):
        """Exact `b x b` pixel crops at integer `offsets` [P, 2] of `level_image` [B, S, S, C]:
        one gather of pixel rows from the flattened level image (no interpolation).

        The pixel offsets inside a crop are a constant `[b, b]` table (S is static once the
        images are checked), so a crop costs a handful of ops whatever the level.
        """
        side = level_image.shape[1]
        if side is None:
            side = tf.shape(level_image)[1]
            span = tf.range(self.base_resolution)
            within = span[:, None] * side + span[None, :]
        else:
            span = np.arange(self.base_resolution)
            within = tf.constant((span[:, None] * side + span[None, :]).astype("int32"))
        flat = tf.reshape(level_image, [-1, self.channels])
        corner = (image_index * side + offsets[:, 0]) * side + offsets[:, 1]   # [P]
        return tf.gather(flat, tf.reshape(corner, [-1, 1, 1]) + within)        # [P, b, b, C]

    def traverse(self, images, training=False, depth=None, policy=None, descend_fn=None):
        """Runs the top-down pass; returns a dict of per-level lists (index 0 = level 1).

        `image_index[l]` [P_l]: image of each patch; `parent[l]`, `cell[l]` [P_l]: its parent patch
        at level l-1 and grid cell (-1 at level 1); `offset[l]` [P_l, 2]: top-left corner in
        level-l pixels; `feature_map[l]`, `vector[l]`: FE outputs; for levels < depth also
        `logits[l]`, `probabilities[l]` and `mask[l]` [P_l, g] of the location module, and
        `applied[l]` [P_l] (1.0 where it was applied).

        `descend_fn(trace, level)`, if given, returns a bool [B]: which images go on below
        `level` (0-based). The location module is not applied to the other images' patches and
        they get no children (early exit, skipped work rather than masked work).
        """
        images = input_checks.check_images(images, self.input_size, self.channels)
        depth = input_checks.check_depth(depth, self.levels)
        kind, k = ("sample", None) if training else (self._policy_kind, self._policy_k)
        if policy is not None:
            kind, k = attention_policy.parse_policy(policy, NUM_CELLS)
        pyramid = self.image_pyramid(images, depth)
        batch = tf.shape(images)[0]
        trace = {key: [] for key in ("image_index", "parent", "cell", "offset", "feature_map",
                                     "vector", "logits", "probabilities", "mask", "applied")}
        image_index = tf.range(batch)
        parent = cell = -tf.ones([batch], tf.int32)
        offset = tf.zeros([batch, 2], tf.int32)
        patches = pyramid[0]
        # (image, row offset, column offset) of a child = (1, 2, 2) * its parent's + this row of
        # the table for its cell: one gather per level instead of index arithmetic.
        half = self.base_resolution // 2
        child_step = tf.constant([1, 2, 2], tf.int32)
        cell_shift = tf.constant([[0, half * (c // GRID_SIZE), half * (c % GRID_SIZE)]
                                  for c in range(NUM_CELLS)], tf.int32)
        for level in range(depth):
            feature_map, vector = self._unless_empty(
                lambda: self.feature_extraction(patches, training=training),
                tf.shape(patches)[0], (self.feature_map_shape, (self.features,)),
                self.compute_dtype)
            for key, value in (("image_index", image_index), ("parent", parent), ("cell", cell),
                               ("offset", offset), ("feature_map", feature_map),
                               ("vector", vector)):
                trace[key].append(value)
            if level == depth - 1:
                break
            location_input = tf.stop_gradient(feature_map)
            # The location module is a matmul: an empty batch needs no guard.
            if descend_fn is None:
                applied = tf.ones_like(image_index, tf.float32)
                logits = self.location_module(location_input, return_logits=True)
            else:
                active = tf.gather(tf.convert_to_tensor(descend_fn(trace, level)), image_index)
                rows = tf.cast(tf.where(active), tf.int32)                    # [P_active, 1]
                logits = tf.scatter_nd(
                    rows, self.location_module(tf.gather_nd(location_input, rows),
                                               return_logits=True),
                    tf.stack([tf.shape(active)[0], NUM_CELLS]))
                applied = tf.cast(active, tf.float32)
            probabilities = tf.sigmoid(logits)
            seed = self._attention_seed() if kind == "sample" else None
            mask = tf.stop_gradient(attention_policy.attention_mask(probabilities, kind, k, seed))
            if descend_fn is not None:
                mask = applied[:, None] * mask
            for key, value in (("logits", logits), ("probabilities", probabilities),
                               ("mask", mask), ("applied", applied)):
                trace[key].append(value)
            parent, cell = tf.unstack(tf.cast(tf.where(mask > 0), tf.int32), 2, axis=1)
            state = (tf.gather(tf.concat([image_index[:, None], offset], axis=1), parent)
                     * child_step + tf.gather(cell_shift, cell))               # [P', 3]
            image_index, offset = state[:, 0], state[:, 1:]
            patches = self._crop_children(pyramid[level + 1], image_index, offset)
        return trace

    # ----------------------------------------------------------------------------------------
    # Bottom-up merging.
    def _merge_children(self, parent_vectors, child_vectors, parent, cell):
        """eq. 7 for several truncation depths at once.

        `parent_vectors` [P, f]: V of the parents; `child_vectors` [P', n, f]: the children's V'
        under n truncation depths; `parent`, `cell` [P']: where each child sits. Returns
        [P, n, f]: V'_n = merge(V_n, agg(children)), and V'_n = V_n for patches with no attended
        child.
        """
        f = self.features
        n = child_vectors.shape[1]
        n = tf.shape(child_vectors)[1] if n is None else n
        # The Q parents with children and each child's slot among them (in any order: grid
        # row q and merged row q both belong to with_children[q]).
        with_children, slot = tf.unique(parent)
        grid = tf.scatter_nd(tf.stack([slot, cell], axis=1), child_vectors,
                             tf.stack([tf.size(with_children), NUM_CELLS, n, f]))
        grid = tf.reshape(tf.transpose(grid, [0, 2, 1, 3]), [-1, GRID_SIZE, GRID_SIZE, f])
        parents = tf.reshape(tf.tile(tf.gather(parent_vectors, with_children), [1, n]), [-1, f])
        merged = tf.reshape(self.merging_module([parents, self.aggregation_module(grid)]),
                            [-1, n, f])
        unmerged = tf.reshape(tf.tile(parent_vectors, [1, n]), [-1, n, f])
        return tf.tensor_scatter_nd_update(unmerged, with_children[:, None], merged)

    def root_vectors(self, trace, deepest_only=False):
        """Root V' of every image [B, D, f] for the traversal truncated after 1..D levels.

        Bottom-up, level by level: the truncations deeper than a level are merged in one batch.
        With `deepest_only`, only the full depth D is merged ([B, 1, f], D-1 merges per patch
        fewer), e.g. for an early-exit test after each level.
        """
        vectors = trace["vector"]
        merged = vectors[-1][:, None, :]
        for level in range(len(vectors) - 2, -1, -1):
            deeper = self._merge_children(vectors[level], merged, trace["parent"][level + 1],
                                          trace["cell"][level + 1])
            merged = deeper if deepest_only else tf.concat([vectors[level][:, None, :], deeper],
                                                          axis=1)
        return merged

    def call(self, images, training=False, depth=None, policy=None):
        trace = self.traverse(images, training=training, depth=depth, policy=policy)
        return self.summarize(trace, tf.shape(images)[0])

    def summarize(self, trace, batch):
        """Per-depth logits, costs and location statistics of one traversal (see class doc)."""
        depth = len(trace["vector"])
        roots = self.root_vectors(trace)                                  # [B, depth, f]
        level_logits = tf.reshape(self.classification_module(tf.reshape(roots, [-1, self.features])),
                                  [-1, depth, self.num_classes])
        costs = self.module_costs()

        # One segment sum over all per-patch statistics (columns below) of every level: segment
        # `level * batch + image`. A location module applied at level l counts for the
        # traversals that go deeper than l.
        ids = tf.concat([trace["image_index"][level] + level * batch for level in range(depth)],
                        axis=0)
        last_count = tf.ones_like(trace["image_index"][-1], tf.float32)[:, None]
        columns = [tf.pad(last_count, [[0, 0], [0, 5 + NUM_CELLS]])]
        if depth > 1:
            mask, logits, applied, probs = (tf.concat(trace[key][:depth - 1], axis=0) for key in
                                            ("mask", "logits", "applied", "probabilities"))
            applied = applied[:, None]
            probs = probs * applied
            log_on, log_off = tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits)
            columns.insert(0, tf.concat([
                tf.ones_like(applied),                                          # patches
                applied,
                tf.reduce_sum(mask, 1, keepdims=True),                          # attended
                applied * tf.reduce_sum(mask * log_on + (1.0 - mask) * log_off, 1,
                                        keepdims=True),                         # log p(l|x)
                tf.reduce_max(mask, 1, keepdims=True),                          # has children
                -tf.reduce_sum(probs * log_on + (applied - probs) * log_off, 1,
                               keepdims=True),                                  # entropy
                probs], axis=1))
        stats = tf.math.unsorted_segment_sum(tf.concat(columns, axis=0), ids, depth * batch)
        stats = tf.transpose(tf.reshape(stats, [depth, batch, 6 + NUM_CELLS]), [1, 0, 2])
        patches_to_depth = tf.cast(tf.cumsum(stats[:, :, 0], axis=1), tf.int64)
        above = tf.cumsum(stats[:, :, 1:], axis=1, exclusive=True)
        applications = tf.cast(above[:, :, 0], tf.int64)
        level_num_locations = tf.cast(above[:, :, 1], tf.int64)
        merges = tf.cast(above[:, :, 3], tf.int64)
        cell_prob_sum = above[:, :, 5:]
        level_macs = (patches_to_depth * costs["feature_extraction"]
                      + applications * costs["location"]
                      + merges * (costs["aggregation"] + costs["merging"])
                      + costs["classification"])
        return {
            "logits": level_logits[:, -1],
            "level_logits": level_logits,
            "num_locations": level_num_locations[:, -1],
            "level_num_locations": level_num_locations,
            "macs": level_macs[:, -1],
            "level_macs": level_macs,
            "location_log_prob": above[:, :, 2],
            "expected_locations": tf.reduce_sum(cell_prob_sum, axis=2),
            "cell_prob_sum": cell_prob_sum,
            "location_applications": applications,
            "location_entropy_sum": above[:, :, 4],
        }

    # ----------------------------------------------------------------------------------------
    # Early exit.
    def anytime(self, images, threshold, policy="threshold"):
        """Per-image early exit (see `AnytimeClassifier.anytime`).

        Images that stopped get no location module and no children at deeper levels (skipped
        work, through `traverse(descend_fn=...)`); their answer is that level's prediction.
        `macs` is the cost of a traversal stopping at `levels_used` (see docs/model.md) plus the
        exit tests that said "go on" (classification and the bottom-up merges of the prediction
        at each such level); an image that never stops early costs exactly what the full
        traversal reports when `threshold > 1`.
        """
        images = input_checks.check_images(images, self.input_size, self.channels)
        batch = tf.shape(images)[0]
        # One threshold for the batch or one per image (a batch of mixed requests), as [B].
        threshold = tf.broadcast_to(tf.cast(tf.convert_to_tensor(threshold), tf.float32),
                                    [batch])
        tests_image = threshold <= 1.0                                         # [B]
        run_tests = tf.reduce_any(tests_image)
        state = {"active": tf.ones([batch], tf.bool), "levels_used": tf.ones([batch], tf.int32)}

        def descend_fn(trace, level):
            def exit_test():
                logits = self.classification_module(
                    self.root_vectors(trace, deepest_only=True)[:, 0])
                return tf.reduce_max(tf.nn.softmax(logits), axis=-1) >= threshold

            stop = tf.cond(run_tests, exit_test, lambda: tf.zeros([batch], tf.bool))
            state["active"] = tf.logical_and(state["active"], tf.logical_not(stop))
            state["levels_used"] += tf.cast(state["active"], tf.int32)
            return state["active"]

        trace = self.traverse(images, training=False, policy=policy, descend_fn=descend_fn)
        summary = self.summarize(trace, batch)
        levels_used = state["levels_used"]                                      # [B], 1-based
        pick = levels_used[:, None] - 1
        # An image that stopped at level t has no patches below it: the level-t prediction of
        # the whole traversal is the one its exit test saw.
        probabilities = tf.gather(tf.nn.softmax(summary["level_logits"]), pick,
                                  batch_dims=1)[:, 0]
        num_locations = tf.gather(summary["level_num_locations"], pick, batch_dims=1)[:, 0]
        macs = tf.gather(summary["level_macs"], pick, batch_dims=1)[:, 0]

        # Exit tests that let an image go on: the test after level t costs the merging and the
        # classification of the traversal truncated after t, i.e. `level_macs[:, t]` less its
        # feature extraction (1 + level_num_locations patches) and location modules.
        costs = self.module_costs()
        test_costs = (summary["level_macs"]
                      - (1 + summary["level_num_locations"]) * costs["feature_extraction"]
                      - summary["location_applications"] * costs["location"])   # [B, L]
        went_on = tf.logical_and(tests_image[:, None], tf.range(self.levels)[None, :] < pick)
        overhead = tf.reduce_sum(tf.where(went_on, test_costs, tf.zeros_like(test_costs)), axis=1)
        return anytime_outputs(probabilities, levels_used, num_locations, macs + overhead)
