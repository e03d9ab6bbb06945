"""Structured configs: typed dataclasses, one per Hydra config group.

Library code takes these dataclasses (or plain arguments), never a raw ``DictConfig``, so
everything is usable without Hydra. Hydra validates types and unknown keys against these
schemas (registered in :mod:`robot_rl.config.store`); ``__post_init__`` checks values, and
runs when a composed config is turned into objects with :func:`robot_rl.config.to_object`.

Each concern has its own module: :mod:`~robot_rl.config.sim` (robot, task, physics),
:mod:`~robot_rl.config.randomization`, :mod:`~robot_rl.config.dataset` (episode stores),
:mod:`~robot_rl.config.train`, :mod:`~robot_rl.config.eval`,
:mod:`~robot_rl.config.teleop`, and :mod:`~robot_rl.config.commands` (one top-level schema
per command); :mod:`~robot_rl.config.validation` has :class:`ConfigError`. This module
re-exports them all under their earlier import path.
"""

from robot_rl.config.commands import (
    EvaluateConfig,
    PipelineConfig,
    PretrainConfig,
    RecordConfig,
    check_algorithm_config,
)
from robot_rl.config.dataset import DatasetConfig, RecordStoreConfig, StoreConfig
from robot_rl.config.eval import EvalConfig
from robot_rl.config.randomization import RANDOM_DISTS, ParamRange, RandomizationConfig
from robot_rl.config.sim import (
    ACTION_MODES,
    REWARD_TYPES,
    TASK_NAMES,
    RobotConfig,
    SimConfig,
    TaskConfig,
    check_control_period,
    check_sim_runs_on_cpu,
)
from robot_rl.config.teleop import TELEOP_DEVICES, TeleopConfig
from robot_rl.config.train import MOVED_TO_TRAIN, TrainConfig
from robot_rl.config.validation import ConfigError

__all__ = [
    "ACTION_MODES",
    "MOVED_TO_TRAIN",
    "RANDOM_DISTS",
    "REWARD_TYPES",
    "TASK_NAMES",
    "TELEOP_DEVICES",
    "ConfigError",
    "DatasetConfig",
    "EvalConfig",
    "EvaluateConfig",
    "ParamRange",
    "PipelineConfig",
    "PretrainConfig",
    "RandomizationConfig",
    "RecordConfig",
    "RecordStoreConfig",
    "RobotConfig",
    "SimConfig",
    "StoreConfig",
    "TaskConfig",
    "TeleopConfig",
    "TrainConfig",
    "check_algorithm_config",
    "check_control_period",
    "check_sim_runs_on_cpu",
]
