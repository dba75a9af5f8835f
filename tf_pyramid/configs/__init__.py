"""Experiments as typed data (`ExperimentConfig`) and the paper's experiments by name
(`experiments`). Pure Python: importing it does not import TensorFlow."""
from tf_pyramid.configs.experiment_config import (DataConfig, EvaluationConfig, ExperimentConfig,
                                                  LearningRuleConfig, ModelConfig, RunFacts,
                                                  ScheduleConfig, TrainerConfig, field_metadata)

__all__ = ["DataConfig", "EvaluationConfig", "ExperimentConfig", "LearningRuleConfig",
           "ModelConfig", "RunFacts", "ScheduleConfig", "TrainerConfig", "field_metadata"]
