"""Registers the structured configs with Hydra's ConfigStore and turns composed configs
into typed dataclasses. Only ``robot_rl.cli`` imports this module (library code stays
usable without Hydra)."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from robot_rl.config.algos import ALGORITHM_CONFIGS
from robot_rl.config.commands import EvaluateConfig, PipelineConfig, PretrainConfig, RecordConfig
from robot_rl.config.train import MOVED_TO_TRAIN
from robot_rl.config.validation import ConfigError
from robot_rl.paths import CONF_DIR

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
    """Stores the top-level schemas, and each algorithm's config as the option
    ``algo=<name>`` of the ``algo`` group (its defaults are the dataclass's: there is no
    YAML to drift from them)."""
    cs = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        cs.store(name=name, node=node)
    for name, node in ALGORITHM_CONFIGS.items():
        cs.store(group="algo", name=name, node=node)


def check_overrides(overrides: list[str], config_name: str) -> None:
    """Command-line overrides of ``algo.<key>`` that the chosen algorithm lacks fail here,
    naming the key and where it lives, before Hydra composes (Hydra would only say that
    the algorithm's config has no such key).

    Args:
        overrides: the command line's arguments (anything but ``algo...`` is skipped).
        config_name: the command's top config in ``conf/`` (its defaults name the
            algorithm when the command line does not).

    Raises:
        ConfigError: ``algo.<key>`` is a training-run setting, now ``train.<key>``; or no
            setting of the chosen algorithm.
    """
    for text in overrides:
        key, _, value = text.lstrip("+~").partition("=")
        if key.strip() == "robot.limits_file":
            raise ConfigError(
                "robot.limits_file has moved to robot.description: the robot's description "
                "(hardware/<robot>/robot.yaml) now holds its limits, envelopes and clearances; "
                f"give robot.description={value or '...'}"
            )
    chosen = _default_algorithm(config_name)
    for text in overrides:
        key, _, value = text.lstrip("+~").partition("=")
        if key.strip() == "algo":
            chosen = value.strip()
    config_cls = ALGORITHM_CONFIGS.get(chosen)  # None: a typo or a sweep, Hydra names it
    for text in overrides:
        key, _, value = text.lstrip("+~").partition("=")
        head, _, field = key.strip().partition(".")
        if head != "algo" or not field:
            continue
        field = field.split(".")[0]
        if field in MOVED_TO_TRAIN:
            raise ConfigError(
                f"algo.{field} has moved to train.{field}: the training run's settings "
                f"({', '.join(MOVED_TO_TRAIN)}) are under train, whatever the algorithm; "
                f"give train.{field}={value or '...'}"
            )
        if config_cls is None:
            continue
        fields = [f.name for f in dataclasses.fields(config_cls)]
        if field not in fields:
            owners = [n for n, c in ALGORITHM_CONFIGS.items() if field in c.__dataclass_fields__]
            where = f" (a setting of algo={'|'.join(owners)})" if owners else ""
            raise ConfigError(
                f"algo.{field} is not a setting of algo={chosen}{where}; {config_cls.__name__} "
                f"has {', '.join(fields)} (robot_rl/config/algos.py)"
            )


def _default_algorithm(config_name: str) -> str | None:
    """The ``algo`` option in the defaults list of ``conf/<config_name>.yaml``."""
    path = CONF_DIR / f"{config_name}.yaml"
    if not path.is_file():
        return None
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, DictConfig) and "algo" in entry:
            return str(entry["algo"])
    return None


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
