"""Measurements on trained models (above modeling, data and runs; only the evaluators import it)."""
from tf_pyramid.analysis.attention_quality import (attended_share, level_shares, measure_model,
                                                   measure_run, measure_shares, random_share)

__all__ = ["attended_share", "level_shares", "measure_model", "measure_run", "measure_shares",
           "random_share"]
