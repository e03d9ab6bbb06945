"""Shared test setup: markers that skip cleanly where their hardware is absent, and a tiny
two-key episode store with an episode factory (for the data tests and those built on them)."""

import numpy as np
import pytest

# MuJoCo picks its OpenGL backend when first imported; robot_rl chooses an offscreen one
# on headless machines. Import it before any test module imports mujoco directly, so the
# render tests do not depend on which module a pytest-xdist worker happens to load first.
import robot_rl  # noqa: F401
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore


def pytest_configure(config):
    # The suite runs under pytest-xdist, one worker per core: torch's own intra-op threads
    # on top oversubscribe the cores (tests ran ~7x slower with 2 threads per worker on 2
    # cores), so each worker computes on one thread.
    import torch

    torch.set_num_threads(1)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_hw = pytest.mark.skip(reason="needs a physical robot (set ROBOT_RL_HARDWARE=1)")
    import os

    has_gpu = _has_cuda()
    has_hw = os.environ.get("ROBOT_RL_HARDWARE") == "1"
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "hardware" in item.keywords and not has_hw:
            item.add_marker(skip_hw)


# ---------------------------------------------------------------------------- a tiny store

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


def _no_reward(frames: dict) -> dict:
    return {k: v for k, v in frames.items() if k != "reward"}


@pytest.fixture
def bare_store(new_store, make_frames, make_prov):
    """A store without rewards holding episodes of 3, 5 and 6 steps, open for appending;
    episode 1 labelled a success, one preference."""
    store = new_store("bare", reward_source="none")
    start = 0
    for i, T in enumerate((3, 5, 6)):
        store.append_episode(_no_reward(make_frames(T, start, seed=i)), make_prov(i))
        start += T
    store.set_success_label(1, True, "lab1")
    store.add_preference("ep0001", "ep0002", "a", "lab1")
    yield store
    store.close()
