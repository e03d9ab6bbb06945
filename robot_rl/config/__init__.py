"""Structured configs (typed dataclasses) for every command; see :mod:`schema` and, for
the offline algorithms' hyper-parameters, :mod:`algos`."""

from robot_rl.config.algos import (
    ALGORITHM_CONFIGS,
    BCConfig,
    CQLConfig,
    IQLConfig,
    TD3BCConfig,
)
from robot_rl.config.schema import (
    ConfigError,
    DatasetConfig,
    EvalConfig,
    ParamRange,
    PipelineConfig,
    RandomizationConfig,
    RobotConfig,
    SimConfig,
    StoreConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = [
    "ALGORITHM_CONFIGS",
    "BCConfig",
    "CQLConfig",
    "ConfigError",
    "DatasetConfig",
    "EvalConfig",
    "IQLConfig",
    "ParamRange",
    "PipelineConfig",
    "RandomizationConfig",
    "RobotConfig",
    "SimConfig",
    "StoreConfig",
    "TD3BCConfig",
    "TaskConfig",
    "TrainConfig",
]
