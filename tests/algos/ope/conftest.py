"""Shared fixtures of the OPE tests: tiny synthetic stores with known values."""

from __future__ import annotations

import numpy as np
import pytest

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
) -> EpisodeStore:
    """Episodes of ``T`` steps with reward ``reward`` every step (None: a store
    without rewards); obs ``x`` = (t / T,
    noise) or (noise, noise); random actions in [-1, 1]; the last row ``last``.

    ``extra_keys``: ``{key: fn(T, rng) -> (T,) array}`` stored as obs keys of shape ().
    ``action_scale``: a factor on the actions (> 1: raw units, not normalized).
    """
    rng = np.random.default_rng(seed)
    obs_spec = {"x": ((2,), "float32")}
    for key in extra_keys or {}:
        obs_spec[key] = ((), "float32")
    kw = {"reward_source": "none"} if reward is None else {}
    store = EpisodeStore.create(
        path, obs_spec=obs_spec, action_dim=2, control_hz=20.0, robot="panda", task="reach", **kw
    )
    for i in range(n_episodes):
        t = np.arange(T)
        first = t / T if time_in_obs else rng.normal(size=T)
        frames = {
            "x": np.stack([first, rng.normal(size=T)], axis=1).astype(np.float32),
            "action": (action_scale * rng.uniform(-1, 1, size=(T, 2))).astype(np.float32),
            "reward": np.full(T, reward or 0.0, np.float32),
            "terminated": np.zeros(T, bool),
            "truncated": np.zeros(T, bool),
        }
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
