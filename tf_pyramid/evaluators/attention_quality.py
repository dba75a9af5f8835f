"""The `attention_quality` evaluator: on MNIST runs, per level, the share of the digit's ink
inside the attended cells against the share random cells would get
(`tf_pyramid.analysis.attention_quality`). Other datasets (no known digit position) and
baselines (no attention) are skipped with the reason.

One pass over `--eval_split` under `--policy` (the measure is computed image by image in
Python; `tools/attention_quality.py --passes=K` averages more)."""
from tf_pyramid.analysis import attention_quality
from tf_pyramid.evaluators import base


class AttentionQuality(base.Evaluator):
    """`{"levels": [{"level", "attended_share", "random_share", "margin", "mean_cells"}, ...],
    "images", "split", "passes", "policy"}`."""

    name = "attention_quality"

    def run(self, model, strategy, data):  # noqa: ARG002  (eager; reads its own ink maps)
        reason = attention_quality.why_not_measurable(self.config, model)
        if reason:
            raise base.Skipped(reason)
        seed = self.config.trainer.seed
        return attention_quality.measure_model(model, self.config, passes=1,
                                               seed=0 if seed is None else seed)

    def scalars(self, result):
        logs = {}
        for entry in result["levels"]:
            for key in ("attended_share", "random_share", "margin"):
                logs[f"level_{entry['level']}_{key}"] = entry[key]
        return logs
