"""The rows both samplers gather from: which observation keys, flattened how, the store
rows after which a recording gap lies, and the (obs, action, reward) arrays, in memory or
as maps of the row cache. See :mod:`robot_rl.data.sampler` for what the samplers make of
them (gaps, stores without rewards, out of core)."""

from __future__ import annotations

import os

import numpy as np
import torch

from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.sampler_cache import RowCache, open_row_cache


def resolve_obs_keys(
    store: EpisodeStore, obs_keys: list[str] | None = None, *, images: bool = True
) -> list[str]:
    """``obs_keys`` checked against ``store``, or by default all of its keys in store order;
    ``images=False`` leaves keys of two or more dimensions out of that default, which is
    what an MLP learner should see unless told otherwise (pretraining, reward models).

    Raises:
        ValueError: A key not in the store or named twice, an empty list, or no key left.
    """
    if obs_keys is None:
        keys = [k for k in store.obs_keys if images or len(store.obs_spec[k][0]) <= 1]
        if not keys:
            raise ValueError(
                f"store {store.path} has no observation key of at most one dimension "
                f"({ {k: tuple(store.obs_spec[k][0]) for k in store.obs_keys} }); name the "
                "keys to flatten in"
            )
        return keys
    keys = list(obs_keys)
    unknown = [k for k in keys if k not in store.obs_keys]
    if unknown or not keys:
        raise ValueError(
            f"obs_keys: {unknown or keys} not observation keys of {store.path}; "
            f"expected a non-empty subset of {store.obs_keys}"
        )
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(
            f"obs_keys: {repeated} named more than once in {keys}; each key is flattened "
            "into the observation once"
        )
    return keys


def _flat_obs(store: EpisodeStore, keys: list[str]) -> np.ndarray:
    """float32 (N, obs_dim) of every committed row: keys concatenated in ``keys`` order,
    each flattened."""
    parts = []
    for k in keys:
        x = store.array(k)
        parts.append(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
    return np.concatenate(parts, axis=1)


def _gap_rows(store: EpisodeStore) -> np.ndarray:
    """Store rows after which a recording gap lies (sorted, int64): rows ``start + r`` for
    each episode's provenance ``gap_rows`` r inside the episode."""
    out = []
    for i in range(store.n_episodes):
        gaps = getattr(store.recorded_provenance(i), "gap_rows", None) or []
        if not gaps:
            continue
        start, end = store.episode_bounds(i)
        r = np.asarray(gaps, dtype=np.int64) + start
        out.append(r[(r >= start) & (r < end)])
    return np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def _load_rows(
    store: EpisodeStore,
    keys: list[str],
    in_memory: bool,
    cache_dir: str | os.PathLike[str] | None,
    require_rewards: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, RowCache | None]:
    """(flat obs, action, reward) of every committed row, float32: arrays in memory, or
    read-only maps of the row cache (returned too) when not ``in_memory``. A store
    without rewards raises NoRewardsError, or gives NaN rewards if not
    ``require_rewards``."""
    if not store.has_rewards:
        if require_rewards or not in_memory:
            # The row cache holds rewards: out of core needs them too.
            store.require_rewards()
        action = store.array("action").astype(np.float32, copy=False)
        reward = np.full(store.n_steps, np.nan, dtype=np.float32)
        return _flat_obs(store, keys), action, reward, None
    if not in_memory:
        cache = open_row_cache(store, keys, cache_dir)
        return cache.obs, cache.action, cache.reward, cache
    action = store.array("action").astype(np.float32, copy=False)
    reward = store.array("reward").astype(np.float32, copy=False)
    return _flat_obs(store, keys), action, reward, None


def _to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """``x`` as a tensor on ``device``. A copy to a CUDA GPU does not wait for the GPU:
    CUDA stages pageable host memory before the call returns, so ``x`` may go at once,
    while a blocking copy would make every batch wait for all the training work queued
    before it. Other devices copy blocking (a non-blocking copy from memory freed right
    after is not safe on all of them, MPS for one)."""
    if not isinstance(x, np.ndarray):  # a tensor here is a bug the CPU would not show
        raise TypeError(f"_to_device: expected a numpy array, got {type(x).__name__}")
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    return tensor.to(device, non_blocking=device.type == "cuda")


def _obs_dim(store: EpisodeStore, keys: list[str]) -> int:
    return int(sum(np.prod(store.obs_spec[k][0], dtype=np.int64) for k in keys))
