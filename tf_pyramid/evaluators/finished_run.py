"""Evaluators on a finished (or checkpointed) run directory: `python -m tf_pyramid.evaluate`.

The model is the run's model.keras or a checkpoint; the data settings are the run's config.json,
each overridable; the evaluators read the same typed config the trainer gave them.
"""
import tensorflow as tf

from tf_pyramid import runs
from tf_pyramid.configs import ExperimentConfig
from tf_pyramid.evaluators import base, check_names
from tf_pyramid.evaluators import per_level as per_level_lib
from tf_pyramid.modeling import attention_policy


def load_run(model_dir, policy=None, levels=None, split=None, checkpoint=None,
             use_checkpoint=False, num_passes=None, batch_size=None, seed=None,
             allow_incomplete=None, anytime_thresholds=None, **overrides):
    """`(model, config, where, data)` of a run directory or .keras file: model.keras, or the
    latest / a given checkpoint; `levels` re-runs the modules with that many levels; `config`
    is the run's config.json with the given settings replacing its own (the evaluators read
    it); `data` an `EvaluationData` building each split once (passes re-iterate it)."""
    config = runs.read_config(model_dir) or ExperimentConfig()
    model, where = runs.load_run_model(model_dir, checkpoint=checkpoint,
                                       prefer_checkpoint=use_checkpoint)
    trained_levels = getattr(model, "levels", None) or config.model.levels or 1
    if levels is not None and levels < 1:
        raise ValueError(f"--levels must be >= 1; got {levels}.")
    if levels and levels != trained_levels:
        # Module weights are depth independent: the same modules, another depth.
        resolution = model.input_size * 2 ** (levels - trained_levels)
        convention = dict(model.input_convention or {}, input_size=resolution)
        rebuilt = runs.build_from_config(
            config.replace(model={"name": config.model.name or model.name, "levels": levels}),
            model.num_classes, convention)
        runs.copy_module_weights(model, rebuilt)
        model = rebuilt
    policy = policy or config.model.policy or "threshold"
    if model.has_attention:  # before any data is read: a bad policy is a usage error
        attention_policy.parse_policy(policy)
    data = config.data
    dataset_name = overrides.get("dataset") or data.dataset
    if not dataset_name:
        raise ValueError(f"{model_dir} has no config.json naming the dataset: pass --dataset.")
    evaluation = {"split": split or config.evaluation.split,
                  "passes": num_passes or config.evaluation.passes,
                  "batch_size": batch_size or config.evaluation.batch_size
                  or config.schedule.batch_size,
                  "allow_incomplete": (config.evaluation.allow_incomplete
                                       if allow_incomplete is None else allow_incomplete)}
    if anytime_thresholds:
        evaluation["anytime_thresholds"] = [float(t) for t in anytime_thresholds]
    config = config.replace(
        model={"policy": policy},
        data={"dataset": dataset_name,
              **{key: overrides[key] for key in ("variant", "source", "data_dir", "mnist_input")
                 if overrides.get(key)}},
        evaluation=evaluation,
        trainer={"seed": seed if seed is not None else config.trainer.seed})
    built = {}

    def dataset_fn(split_name):
        if split_name not in built:
            built[split_name] = runs.run_directory.build_run_dataset(
                config, split_name, training=False, resolution=model.input_size,
                class_names=runs.read_class_names(model_dir))
            info = built[split_name][1]
            runs.check_same_inputs(model, info.input_convention.get_config(), where)
            if info.num_classes is not None and info.num_classes != model.num_classes:
                raise ValueError(f"{where} has {model.num_classes} classes, but this data has "
                                 f"{info.num_classes}: evaluate it on the data it was trained "
                                 "on (--dataset, --data_dir).")
        return built[split_name]

    if config.trainer.seed is not None:  # as the trainer: the same seed, the same images
        tf.random.set_seed(config.trainer.seed)
    return model, config, where, base.EvaluationData(dataset_fn, model_dir)


def evaluate_run(model_dir, evaluators=None, **settings):
    """The JSON dict of a run directory or .keras file (`python -m tf_pyramid.evaluate`; the
    settings are `load_run`'s). Without `evaluators`: the per-level dict of today's schema
    (`{"levels": [...], "model", "split", "policy", "passes", ...}`). With a list of names: the
    same header, each evaluator's result under its name, and, when `per_level` is listed, its
    figures also at the top level, as in metrics.json. A pass that read less than the whole
    split raises `IncompleteSplitError` unless `allow_incomplete` (default: the run's)."""
    names = check_names(evaluators) if evaluators is not None else None
    run_config = runs.read_config(model_dir) or ExperimentConfig()
    model, config, where, data = load_run(model_dir, **settings)
    strategy = tf.distribute.get_strategy()
    header = {"model": run_config.model.name or model.name, "split": config.evaluation.split,
              "policy": config.model.policy if model.has_attention else None,
              "passes": config.evaluation.passes, "dataset": config.data.dataset,
              "resolution": model.input_size, "source_file": where}
    result = {}
    if names is None or "per_level" in names:
        levels = per_level_lib.PerLevel(config).run(model, strategy, data,
                                                    policy=header["policy"],
                                                    with_threshold=False)
        rest = {k: v for k, v in levels.items() if k not in ("levels", "split", "policy",
                                                              "passes", "num_examples")}
        result = {"levels": levels["levels"], **header, "num_examples": levels["num_examples"],
                  "num_passes": levels["passes"], **rest}
        if names is None:
            return result
    result = result or dict(header)
    others = [name for name in names if name != "per_level"]
    if "per_level" in names:
        result["per_level"] = levels
    result.update(base.run_evaluators(others, config, model, strategy, data))
    return result
