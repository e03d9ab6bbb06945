"""Registers the structured configs with Hydra's ConfigStore and turns composed configs
into typed dataclasses. Only ``robot_rl.cli`` imports this module (library code stays
usable without Hydra)."""

from __future__ import annotations

from typing import TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robot_rl.config.schema import (
    ConfigError,
    EvaluateConfig,
    PipelineConfig,
    PretrainConfig,
    RecordConfig,
)

T = TypeVar("T")

#: Top-level schemas, one per command; each YAML top config lists its schema first in
#: its defaults, so every key is type-checked and unknown keys are rejected.
SCHEMAS = {
    "pipeline_schema": PipelineConfig,
    "pretrain_schema": PretrainConfig,
    "evaluate_schema": EvaluateConfig,
    "record_schema": RecordConfig,
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        cs.store(name=name, node=node)


def to_object(cfg: DictConfig, schema: type[T]) -> T:
    """Turns a composed config into its dataclass, running every ``__post_init__`` check.

    Raises:
        ConfigError: a value is invalid; the message names the key.
    """
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(str(e)) from None
    if not isinstance(obj, schema):
        raise ConfigError(f"composed config is a {type(obj).__name__}, expected {schema.__name__}")
    return obj
