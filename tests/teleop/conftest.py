"""Shared setup for the recording tests: a reach env and stores shaped for it."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.sim.env import RobotEnv
from robot_rl.teleop.events import RawEvent


@pytest.fixture(scope="module")
def reach_env():
    env = RobotEnv("reach")
    yield env
    env.close()


@pytest.fixture
def make_store(tmp_path, reach_env):
    """Factory: ``make_store(name)`` creates an empty store for the reach env."""

    def make(name: str = "s.zarr", **kw) -> EpisodeStore:
        spaces = reach_env.observation_space.spaces
        return EpisodeStore.create(
            tmp_path / name,
            obs_spec={k: (s.shape, "float32") for k, s in spaces.items()},
            action_dim=4,
            control_hz=20.0,
            robot="panda",
            task="reach",
            timestamps=kw.pop("timestamps", True),
            **kw,
        )

    return make


@pytest.fixture
def prov():
    return EpisodeProvenance(
        source="teleop",
        operator="op-test",
        robot_id="sim:panda",
        config_hash="cfg",
        code_version="test",
        safety_filter_version="none",
    )


@pytest.fixture
def keys():
    """Factory: ``keys((tick, key), ...)``, see ``_keys``."""
    return _keys


@pytest.fixture
def episode_hash():
    """``episode_hash(store, i)``: SHA-256 of an episode's data and provenance."""
    return _episode_hash


def _keys(*script):
    """Synthetic keyboard events: ``(tick, key)`` presses, each released the same tick
    unless the key name starts with ``+`` (then held for good)."""
    out = []
    for tick, key in script:
        held = key.startswith("+")
        key = key.lstrip("+")
        out.append(RawEvent("KeyDown", {"key": key}, 0.0, tick))
        if not held:
            out.append(RawEvent("KeyUp", {"key": key}, 0.0, tick))
    return out


def _episode_hash(store: EpisodeStore, i: int) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(store.episode(i).items()):
        h.update(k.encode() + np.ascontiguousarray(v).tobytes())
    h.update(store.provenance(i).to_json().encode())
    return h.hexdigest()
