"""Structured configs (typed dataclasses) for every command: one module per concern
(:mod:`sim`, :mod:`randomization`, :mod:`dataset`, :mod:`train`, :mod:`eval`,
:mod:`teleop`, the commands' top-level schemas in :mod:`commands`) and, for the offline
algorithms' hyper-parameters, :mod:`algos`."""

from robot_rl.config.algos import (
    ALGORITHM_CONFIGS,
    BCConfig,
    CQLConfig,
    IQLConfig,
    TD3BCConfig,
)
from robot_rl.config.commands import PipelineConfig
from robot_rl.config.dataset import DatasetConfig, StoreConfig
from robot_rl.config.eval import EvalConfig
from robot_rl.config.randomization import ParamRange, RandomizationConfig
from robot_rl.config.sim import RobotConfig, SimConfig, TaskConfig
from robot_rl.config.train import TrainConfig
from robot_rl.config.validation import ConfigError

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
