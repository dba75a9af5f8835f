"""Measurements on trained models (above modeling, data and runs; nothing imports it back)."""
from tf_pyramid.analysis.attention_quality import (attended_share, level_shares, measure_run,
                                                   measure_shares, random_share)

__all__ = ["attended_share", "level_shares", "measure_run", "measure_shares", "random_share"]
