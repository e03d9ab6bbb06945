"""Shared fixtures for the reward-model tests: a small hand-built store whose true reward
is a known function of the observation, so learned rewards can be checked against it."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore

OBS_SPEC = {"pos": ((2,), "float32"), "vel": ((2,), "float32")}
ACTION_DIM = 2
N_EPISODES = 60
SUCCESS_RADIUS = 1.0


def _true_reward(pos: np.ndarray) -> np.ndarray:
    """Dense reward: minus the distance of ``pos`` to the origin (the goal)."""
    return -np.linalg.norm(pos, axis=-1)


def _fill_store(store: EpisodeStore, n_episodes: int = N_EPISODES, seed: int = 0) -> None:
    """Random-walk episodes of 10-39 steps drifting towards the origin (the goal) by a
    random amount; success when the walk ends within SUCCESS_RADIUS of the origin.
    ``vel`` is noise."""
    rng = np.random.default_rng(seed)
    for i in range(n_episodes):
        T = int(rng.integers(10, 40))
        start = rng.normal(size=2) * 2.0
        # Towards the goal by a random fraction of the way (0-130%): a mix of successes
        # and failures, and of returns.
        drift = -start * rng.uniform(0.0, 1.3) / T
        pos = start + np.cumsum(rng.normal(size=(T, 2)) * 0.1 + drift, axis=0)
        frames = {
            "pos": pos,
            "vel": rng.normal(size=(T, 2)),
            "action": rng.uniform(-1, 1, size=(T, ACTION_DIM)),
            "terminated": np.zeros(T, dtype=bool),
            "truncated": np.r_[np.zeros(T - 1, dtype=bool), True],
        }
        if store.has_rewards:
            # The store's convention: reward[t] is for the state action t led to,
            # s_{t+1} (the last row, with no stored successor, for its own).
            frames["reward"] = _true_reward(np.concatenate([pos[1:], pos[-1:]]))
        success = bool(np.linalg.norm(pos[-1]) < SUCCESS_RADIUS)
        store.append_episode(
            frames,
            EpisodeProvenance(
                source="scripted",
                success=success,
                start_time_unix_s=1.7e9 + i,
                episode_id=f"ep{i:04d}",
            ),
        )


def _create(path, **kw) -> EpisodeStore:
    return EpisodeStore.create(
        path,
        obs_spec=OBS_SPEC,
        action_dim=ACTION_DIM,
        control_hz=10.0,
        robot="panda",
        task="reach",
        **kw,
    )


@pytest.fixture(scope="session")
def walk_store(tmp_path_factory):
    """Path of a store of N_EPISODES random walks with true rewards (read-only use)."""
    path = tmp_path_factory.mktemp("rewards") / "walk.zarr"
    with _create(path) as store:
        _fill_store(store)
    return path


@pytest.fixture
def make_walk_store(tmp_path):
    """Factory: ``make_walk_store(name, n_episodes=..., seed=..., **create_kwargs)`` builds
    a random-walk store in tmp_path and returns it open for appending."""

    def _make(name: str = "walk.zarr", n_episodes: int = N_EPISODES, seed: int = 0, **kw):
        store = _create(tmp_path / name, **kw)
        _fill_store(store, n_episodes, seed)
        return store

    return _make


@pytest.fixture(autouse=True)
def _sampler_cache_in_tmp(tmp_path_factory, monkeypatch):
    """Out-of-core samplers build their row cache under a temporary directory, never in
    the user's ``~/.cache``."""
    monkeypatch.setenv("ROBOT_RL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
