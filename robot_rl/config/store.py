"""Registers the structured configs with Hydra's ConfigStore and turns composed configs
into typed dataclasses. Only ``robot_rl.cli`` imports this module (library code stays
usable without Hydra)."""

from __future__ import annotations

import dataclasses
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


def _unknown_keys(node: DictConfig, prefix: str) -> list[str]:
    """Keys under typed (dataclass) nodes that the dataclass does not declare."""
    found = []
    node_type = OmegaConf.get_type(node)
    declared = (
        {f.name for f in dataclasses.fields(node_type)}
        if dataclasses.is_dataclass(node_type)
        else None
    )
    for key in node:
        if key == "hydra":
            continue
        path = f"{prefix}{key}"
        if declared is not None and key not in declared:
            found.append(path)
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            found.extend(_unknown_keys(child, f"{path}."))
    return found


def to_object(cfg: DictConfig, schema: type[T]) -> T:
    """Turns a composed config into its dataclass, running every ``__post_init__`` check.

    Raises:
        ConfigError: a value is invalid; the message names the key.
    """
    unknown = _unknown_keys(cfg, "")
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {unknown}: not fields of their config groups (a '+' "
            "override adds keys that nothing reads)"
        )
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(str(e)) from None
    if not isinstance(obj, schema):
        raise ConfigError(f"composed config is a {type(obj).__name__}, expected {schema.__name__}")
    return obj
