"""Shared fixtures of the OPE tests: tiny synthetic stores with known values."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data.action_bounds import action_unit
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore


def write_store(
    path,
    n_episodes: int,
    T: int,
    *,
    last: str = "terminated",
    reward: float | None = 1.0,
    time_in_obs: bool = True,
    extra_keys: dict | None = None,
    seed: int = 0,
    action_scale: float = 1.0,
    action_bounds: tuple[list[float], list[float]] | None = None,
) -> EpisodeStore:
    """Episodes of ``T`` steps with reward ``reward`` every step (None: a store
    without rewards); obs ``x`` = (t / T,
    noise) or (noise, noise); random actions in [-1, 1]; the last row ``last``.

    ``extra_keys``: ``{key: fn(T, rng) -> (T,) array}`` stored as obs keys of shape ().
    ``action_scale``: a factor on the actions (> 1: raw units, not normalized).
    ``action_bounds``: ``(low, high)``: the [-1, 1] actions mapped affinely onto them and
    the bounds recorded in ``units["action"]``, as an importer of raw-unit data does.
    """
    rng = np.random.default_rng(seed)
    obs_spec = {"x": ((2,), "float32")}
    for key in extra_keys or {}:
        obs_spec[key] = ((), "float32")
    kw = {"reward_source": "none"} if reward is None else {}
    if action_bounds is not None:
        kw["units"] = {"action": action_unit(action_bounds)}
        low, high = (np.asarray(b, np.float64) for b in action_bounds)
    store = EpisodeStore.create(
        path, obs_spec=obs_spec, action_dim=2, control_hz=20.0, robot="panda", task="reach", **kw
    )
    for i in range(n_episodes):
        t = np.arange(T)
        first = t / T if time_in_obs else rng.normal(size=T)
        frames = {
            "x": np.stack([first, rng.normal(size=T)], axis=1).astype(np.float32),
            "action": action_scale * rng.uniform(-1, 1, size=(T, 2)),
            "reward": np.full(T, reward or 0.0, np.float32),
            "terminated": np.zeros(T, bool),
            "truncated": np.zeros(T, bool),
        }
        if action_bounds is not None:
            frames["action"] = (high + low) / 2 + (high - low) / 2 * frames["action"]
        frames["action"] = frames["action"].astype(np.float32)
        frames[last][-1] = True
        if reward is None:
            del frames["reward"]
        for key, fn in (extra_keys or {}).items():
            frames[key] = fn(frames, rng).astype(np.float32)
        store.append_episode(frames, EpisodeProvenance(source="scripted", episode_id=f"e{i}"))
    return store


@pytest.fixture(autouse=True)
def _sampler_cache_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ROBOT_RL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def make_store(tmp_path):
    """Factory: ``make_store(name, n_episodes, T, **kw)``, see :func:`write_store`."""

    def _make(name: str, n_episodes: int, T: int, **kw) -> EpisodeStore:
        return write_store(tmp_path / name, n_episodes, T, **kw)

    return _make
