"""Structured configs (typed dataclasses) for every command; see :mod:`schema`."""

from robot_rl.config.schema import (
    AlgoConfig,
    ConfigError,
    DatasetConfig,
    EvalConfig,
    ParamRange,
    PipelineConfig,
    RandomizationConfig,
    RobotConfig,
    SimConfig,
    TaskConfig,
)

__all__ = [
    "AlgoConfig",
    "ConfigError",
    "DatasetConfig",
    "EvalConfig",
    "ParamRange",
    "PipelineConfig",
    "RandomizationConfig",
    "RobotConfig",
    "SimConfig",
    "TaskConfig",
]
