"""Shared fixtures for the data tests: a tiny two-key store and an episode factory."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore

OBS_SPEC = {"joint_pos": ((3,), "float32"), "cam": ((2, 2), "uint8")}
ACTION_DIM = 2


def _make_frames(
    T: int, start_row: int = 0, *, last: str = "truncated", seed: int = 0
) -> dict[str, np.ndarray]:
    """One episode whose joint_pos[:, 0] equals the global row index (to identify rows).

    ``last`` is "truncated", "terminated" or "none": the flag set on the final row.
    """
    rng = np.random.default_rng(seed)
    rows = np.arange(start_row, start_row + T, dtype=np.float64)
    joint_pos = np.stack([rows, rng.normal(size=T), rng.normal(size=T)], axis=1)
    frames = {
        "joint_pos": joint_pos,  # float64 on purpose: the store casts to float32
        "cam": rng.integers(0, 256, size=(T, 2, 2)).astype(np.uint8),
        "action": rng.normal(size=(T, ACTION_DIM)),
        "reward": rng.normal(size=T),
        "terminated": np.zeros(T, dtype=bool),
        "truncated": np.zeros(T, dtype=bool),
    }
    if last in ("truncated", "terminated"):
        frames[last][-1] = True
    return frames


def _prov(i: int = 0, **kw) -> EpisodeProvenance:
    """A fully specified provenance (fixed id and time, so hashes are reproducible)."""
    base = dict(
        source="teleop",
        operator=f"op{i}",
        robot_id="fr3-001",
        start_time_unix_s=1.7e9 + i,
        episode_id=f"ep{i:04d}",
    )
    base.update(kw)
    return EpisodeProvenance(**base)


@pytest.fixture
def make_frames():
    """Factory: ``make_frames(T, start_row, last=..., seed=...)``, see ``_make_frames``."""
    return _make_frames


@pytest.fixture
def make_prov():
    """Factory: ``make_prov(i, **overrides)``, see ``_prov``."""
    return _prov


@pytest.fixture
def new_store(tmp_path):
    """Factory: an empty store in tmp_path (small chunks so episodes span chunks)."""

    def _make(name: str = "store", chunk_steps: int | None = 4, **kw) -> EpisodeStore:
        return EpisodeStore.create(
            tmp_path / name,
            obs_spec=OBS_SPEC,
            action_dim=ACTION_DIM,
            control_hz=20.0,
            robot="panda",
            task="reach",
            units={"joint_pos": "rad"},
            chunk_steps=chunk_steps,
            **kw,
        )

    return _make


@pytest.fixture
def filled_store(new_store):
    """A store with episodes of 3, 5 and 6 steps (ends 3, 8, 14), open for appending."""
    store = new_store()
    start = 0
    for i, T in enumerate((3, 5, 6)):
        store.append_episode(_make_frames(T, start, seed=i), _prov(i))
        start += T
    yield store
    store.close()


@pytest.fixture(autouse=True)
def _sampler_cache_in_tmp(tmp_path_factory, monkeypatch):
    """Out-of-core samplers build their row cache under a temporary directory, never in
    the user's ``~/.cache``."""
    monkeypatch.setenv("ROBOT_RL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
