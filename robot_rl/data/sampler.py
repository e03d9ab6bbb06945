"""Uniform random batches from an episode store into torch: transitions and windows.

Transitions follow d3rlpy's episode semantics: within an episode, row t gives
(s_t, a_t, r_t, s_{t+1}, terminated_t). An episode's last row has no s_{t+1}: if it is
``terminated`` it still gives a transition, with next_obs = its own obs (the learner
masks the bootstrap with terminated = 1); otherwise (``truncated`` by a time limit or an
operator stop) it gives none.

Recording gaps: an episode's provenance may list ``gap_rows``, rows r after which rows
were lost (the recorder's queue overflowed), so row r + 1 does not follow row r. Row r
then gives no transition, and no window spans from r to r + 1: a window that reaches the
gap is edge-padded there (mask 0), as at an episode's end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robot_rl.data.batch import TransitionBatch, WindowBatch
from robot_rl.data.episode_store import EpisodeStore


def _resolve_obs_keys(store: EpisodeStore, obs_keys: list[str] | None) -> list[str]:
    keys = list(store.obs_keys if obs_keys is None else obs_keys)
    unknown = [k for k in keys if k not in store.obs_keys]
    if unknown or not keys:
        raise ValueError(
            f"obs_keys: {unknown or keys} not observation keys of {store.path}; "
            f"expected a non-empty subset of {store.obs_keys}"
        )
    return keys


def _flat_obs(store: EpisodeStore, keys: list[str], rows: np.ndarray | None = None) -> np.ndarray:
    """float32 (N, obs_dim): keys concatenated in ``keys`` order, each flattened.

    ``rows`` (sorted, unique) selects rows through zarr; None loads every committed row.
    """
    parts = []
    for k in keys:
        x = store.array(k) if rows is None else store.zarr_array(k).oindex[rows]
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


def _read_rows(store: EpisodeStore, key: str, rows: np.ndarray) -> np.ndarray:
    """float32 rows of ``data/<key>`` (any order, repeats allowed), one sorted read."""
    uniq, inv = np.unique(rows, return_inverse=True)
    x = np.asarray(store.zarr_array(key).oindex[uniq], np.float32)
    return x[inv.reshape(rows.shape)]


def _obs_dim(store: EpisodeStore, keys: list[str]) -> int:
    return int(sum(np.prod(store.obs_spec[k][0], dtype=np.int64) for k in keys))


class TransitionSampler:
    """Uniform batches of transitions over a whole store, reproducible by seed.

    Args:
        store: the episode store; only its committed episodes (at construction) are used.
        obs_keys: observation keys to concatenate into the flat obs, in this order;
            default all of the store's, in the store's order.
        batch_size: transitions per batch.
        device: torch device of the returned tensors.
        seed: seed of the index generator.
        in_memory: load the committed arrays once (fast); False reads each batch's rows
            through zarr, for stores larger than RAM.
    """

    def __init__(
        self,
        store: EpisodeStore,
        *,
        obs_keys: list[str] | None = None,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        seed: int = 0,
        in_memory: bool = True,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
        self.store = store
        self.obs_keys = _resolve_obs_keys(store, obs_keys)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.in_memory = in_memory
        self._rng = np.random.default_rng(seed)
        self.obs_dim = _obs_dim(store, self.obs_keys)
        self.action_dim = store.action_dim
        self._n_steps = store.n_steps

        terminated = store.array("terminated")
        ends = store.episode_ends
        is_last = np.zeros(self._n_steps, dtype=bool)
        is_last[ends - 1] = True
        valid = ~is_last | terminated
        # Rows before a recording gap: their next stored row is not s_{t+1}.
        valid[_gap_rows(store)] = False
        self.valid_rows = np.flatnonzero(valid).astype(np.int64)
        self.valid_rows.setflags(write=False)
        # s' is the next row, except at a terminal last row, which has none: reuse s.
        self._next_row = np.arange(self._n_steps, dtype=np.int64) + (~is_last)

        self._terminated = terminated.astype(np.float32)
        if in_memory:
            self._obs = _flat_obs(store, self.obs_keys)
            self._action = store.array("action").astype(np.float32, copy=False)
            self._reward = store.array("reward").astype(np.float32, copy=False)

    @property
    def n_transitions(self) -> int:
        """Number of valid transitions (the population :meth:`sample` draws from)."""
        return len(self.valid_rows)

    def sample(self) -> TransitionBatch:
        """A batch of ``batch_size`` transitions drawn uniformly with replacement."""
        if self.n_transitions == 0:
            raise ValueError(f"{self.store.path}: no valid transitions to sample")
        pick = self._rng.integers(0, self.n_transitions, size=self.batch_size)
        return self.gather(self.valid_rows[pick])

    def state_dict(self) -> dict[str, Any]:
        """The index generator's state, so a resumed training run draws the same batches."""
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]

    def gather(self, rows: np.ndarray) -> TransitionBatch:
        """The transitions starting at store rows ``rows`` (each must be in ``valid_rows``)."""
        rows = np.asarray(rows, dtype=np.int64)
        next_rows = self._next_row[rows]
        if self.in_memory:
            obs, next_obs = self._obs[rows], self._obs[next_rows]
            action, reward = self._action[rows], self._reward[rows]
        else:
            # One sorted, de-duplicated read per key: zarr groups the rows by chunk and
            # decodes each touched chunk once.
            need, inverse = np.unique(np.concatenate([rows, next_rows]), return_inverse=True)
            flat = _flat_obs(self.store, self.obs_keys, need)
            obs, next_obs = flat[inverse[: len(rows)]], flat[inverse[len(rows) :]]
            uniq, inv = np.unique(rows, return_inverse=True)
            action = np.asarray(self.store.zarr_array("action").oindex[uniq], np.float32)[inv]
            reward = np.asarray(self.store.zarr_array("reward").oindex[uniq], np.float32)[inv]
        return TransitionBatch(
            obs=self._to_torch(obs),
            action=self._to_torch(action),
            reward=self._to_torch(reward),
            next_obs=self._to_torch(next_obs),
            terminated=self._to_torch(self._terminated[rows]),
        )

    def _to_torch(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)


class WindowSampler:
    """Uniform batches of ``horizon``-step windows from within single episodes.

    Every committed row starts a window; rows past the episode's end (or past a recording
    gap, see the module docstring) repeat the last step before it (edge padding, as
    Diffusion Policy's sequence sampler) with mask 0.

    Args:
        store: the episode store.
        horizon: steps per window (H).
        obs_keys: observation keys of the flat obs, in order; default all.
        batch_size: windows per batch.
        device: torch device of the returned tensors.
        seed: seed of the index generator.
        in_memory: load the committed arrays once (fast); False reads each batch's rows
            through zarr, for stores larger than RAM.
    """

    def __init__(
        self,
        store: EpisodeStore,
        horizon: int,
        *,
        obs_keys: list[str] | None = None,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        seed: int = 0,
        in_memory: bool = True,
    ):
        if horizon <= 0 or batch_size <= 0:
            raise ValueError(
                f"horizon and batch_size: expected positive ints, got {horizon}, {batch_size}"
            )
        self.store = store
        self.horizon = int(horizon)
        self.obs_keys = _resolve_obs_keys(store, obs_keys)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self._rng = np.random.default_rng(seed)
        self.obs_dim = _obs_dim(store, self.obs_keys)
        self.action_dim = store.action_dim
        self.in_memory = in_memory
        # Segments: episodes, cut after every recording gap. End row (exclusive) of the
        # segment each row belongs to.
        seg_ends = np.union1d(store.episode_ends, _gap_rows(store) + 1).astype(np.int64)
        lengths = np.diff(seg_ends, prepend=0)
        self._episode_end = np.repeat(seg_ends, lengths)
        if in_memory:
            self._obs = _flat_obs(store, self.obs_keys)
            self._action = store.array("action").astype(np.float32, copy=False)
            self._reward = store.array("reward").astype(np.float32, copy=False)

    @property
    def n_windows(self) -> int:
        """Number of distinct windows (one per committed row)."""
        return len(self._episode_end)

    def sample(self) -> WindowBatch:
        """A batch of ``batch_size`` windows, start rows drawn uniformly with replacement."""
        if self.n_windows == 0:
            raise ValueError(f"{self.store.path}: no committed steps to sample windows from")
        starts = self._rng.integers(0, self.n_windows, size=self.batch_size)
        return self.gather(starts)

    def gather(self, starts: np.ndarray) -> WindowBatch:
        """The windows starting at store rows ``starts``."""
        starts = np.asarray(starts, dtype=np.int64)
        idx = starts[:, None] + np.arange(self.horizon)[None, :]
        end = self._episode_end[starts][:, None]
        mask = idx < end
        idx = np.minimum(idx, end - 1)

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

        if self.in_memory:
            obs, action, reward = self._obs[idx], self._action[idx], self._reward[idx]
        else:
            uniq, inv = np.unique(idx, return_inverse=True)
            obs = _flat_obs(self.store, self.obs_keys, uniq)[inv.reshape(idx.shape)]
            action = _read_rows(self.store, "action", idx)
            reward = _read_rows(self.store, "reward", idx)
        return WindowBatch(
            obs=t(obs),
            action=t(action),
            reward=t(reward),
            mask=t(mask.astype(np.float32)),
        )
