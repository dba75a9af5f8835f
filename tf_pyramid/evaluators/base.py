"""What every evaluator is: `Evaluator(config).run(model, strategy, data) -> dict`.

`config` is the run's `ExperimentConfig` (split, passes, policy, thresholds ...); `data` gives
the datasets (`EvaluationData`): the trainer's are distributed over its strategy, a finished
run's (`python -m tf_pyramid.evaluate`) are plain. The result is a JSON-able dict stored in
metrics.json under the evaluator's name; `scalars(result)` is its flat TensorBoard view. An
evaluator that does not apply to a run raises `Skipped`, and its entry says why.
"""
from tf_pyramid import evaluators as registry


class Skipped(Exception):
    """The evaluator does not apply to this run; the message says why."""


class EvaluationData:
    """Datasets of a run's splits for the evaluators.

    `dataset_fn(split) -> (dataset, info)`: a batched, labelled evaluation pipeline of `split`
    (distributed over the strategy or plain) and its `DatasetInfo`, whose counters say what a
    pass lost (`completeness.check_complete`)."""

    def __init__(self, dataset_fn, model_dir=None):
        self.dataset_fn = dataset_fn
        self.model_dir = model_dir

    def dataset(self, split):
        return self.dataset_fn(split)


class Evaluator:
    """Base class of the plug-ins; `name` is its registry name."""

    name = None

    def __init__(self, config):
        self.config = config

    def run(self, model, strategy, data):
        """The JSON-able result of evaluating `model` (under `strategy`) on `data`."""
        raise NotImplementedError

    def scalars(self, result):  # noqa: ARG002
        """`{name: float}` of the result's scalars (TensorBoard); none by default."""
        return {}


def run_evaluators(names, config, model, strategy, data, instances=None):
    """`{name: result}` of the named evaluators, in order; a skipped one gives
    `{"skipped": reason}`. `instances`: name -> an evaluator already made (its compiled steps
    are reused); new ones are added to it."""
    instances = {} if instances is None else instances
    results = {}
    for name in registry.check_names(names):
        if name not in instances:
            instances[name] = registry.create(name, config)
        try:
            results[name] = instances[name].run(model, strategy, data)
        except Skipped as reason:
            results[name] = {"skipped": str(reason)}
    return results


def scalars_of(results, instances):
    """`{"<evaluator>/<scalar>": value}` of `run_evaluators` results (skipped ones have none)."""
    logs = {}
    for name, result in results.items():
        if "skipped" in result:
            continue
        for key, value in instances[name].scalars(result).items():
            logs[f"{name}/{key}"] = float(value)
    return logs
