"""Uniform random batches of ``horizon``-step windows from an episode store into torch
(:class:`WindowSampler`); gaps, rewards and out-of-core reading as for transitions
(:mod:`robot_rl.data.sampler`)."""

from __future__ import annotations

import os

import numpy as np
import torch

from robot_rl.data.batch import WindowBatch
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.sampler_rows import _gap_rows, _load_rows, _obs_dim, _to_device, resolve_obs_keys


class WindowSampler:
    """Uniform batches of ``horizon``-step windows from within single episodes.

    Every committed row starts a window; rows past the episode's end (or past a recording
    gap, see :mod:`robot_rl.data.sampler`) repeat the last step before it (edge padding, as
    Diffusion Policy's sequence sampler) with mask 0.

    Args:
        store: the episode store.
        horizon: steps per window (H).
        obs_keys: observation keys of the flat obs, in order; default all.
        batch_size: windows per batch.
        device: torch device of the returned tensors.
        seed: seed of the index generator.
        in_memory: load the committed arrays into RAM once; False gathers from a
            memory-mapped uncompressed copy on disk (built on first use, then reused),
            for stores larger than RAM. Same batches either way.
        cache_dir: root directory of that copy when not ``in_memory``; default
            ``$ROBOT_RL_CACHE_DIR/sampler`` or ``~/.cache/robot_rl/sampler``. It needs
            about ``4 * (obs_dim + action_dim + 1) + 1`` bytes per committed row.
        require_rewards: refuse a store without rewards (NoRewardsError, naming
            ``robot-rl-data relabel``); False, for learners that ignore rewards (BC),
            gives NaN rewards instead (in memory only).
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
        cache_dir: str | os.PathLike[str] | None = None,
        require_rewards: bool = True,
    ):
        if horizon <= 0 or batch_size <= 0:
            raise ValueError(
                f"horizon and batch_size: expected positive ints, got {horizon}, {batch_size}"
            )
        if require_rewards:
            store.require_rewards()
        self.store = store
        self.horizon = int(horizon)
        self.obs_keys = resolve_obs_keys(store, obs_keys)
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
        self._obs, self._action, self._reward, self.cache = _load_rows(
            store, self.obs_keys, in_memory, cache_dir, require_rewards
        )

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
            return _to_device(x, self.device)

        obs, action, reward = self._obs[idx], self._action[idx], self._reward[idx]
        return WindowBatch(
            obs=t(obs),
            action=t(action),
            reward=t(reward),
            mask=t(mask.astype(np.float32)),
        )
