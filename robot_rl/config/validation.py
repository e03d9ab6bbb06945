"""How configs check their values: :class:`ConfigError`, whose message names the key, the
value and what is allowed, and the small helpers every config's ``__post_init__`` uses."""

from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is allowed."""


def _check(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {key}={value!r}: expected {expected}")


def _default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (without constructing the dataclass)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _refuse_unused(key: str, value: object, default: object, why: str) -> None:
    """A setting a command accepts but does not use must keep its default: a changed
    value would be silently ignored. ``why`` completes "<key>=<value> ..."."""
    if value != default:
        raise ConfigError(f"{key}={value!r} {why}")
