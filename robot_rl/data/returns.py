"""Returns of the stored episodes: discounted returns-to-go per row, and IQL's
return-range reward scale."""

from __future__ import annotations

import numpy as np

from robot_rl.data.episode_store import EpisodeStore


def discounted_returns(reward: np.ndarray, episode_ends: np.ndarray, gamma: float) -> np.ndarray:
    """Per row, ``sum_{k>=t} gamma^(k-t) r_k`` over the rest of its episode (float32)."""
    out = np.empty(len(reward), dtype=np.float64)
    start = 0
    for end in np.asarray(episode_ends, dtype=np.int64):
        acc = 0.0
        for t in range(end - 1, start - 1, -1):
            acc = float(reward[t]) + gamma * acc
            out[t] = acc
        start = end
    return out.astype(np.float32)


def return_range_scale(store: EpisodeStore, target: float = 1000.0) -> float:
    """``target / (max - min episode return)`` of ``store`` (1.0 when all returns are
    equal): IQL's reward normalization for dense-reward data (Kostrikov et al. 2022, as
    for D4RL locomotion), which makes advantage weights independent of the reward's
    units."""
    store.require_rewards()
    reward, ends = store.array("reward").astype(np.float64), np.asarray(store.episode_ends)
    if len(ends) == 0:
        return 1.0
    returns = np.add.reduceat(reward, np.r_[0, ends[:-1]])
    spread = float(returns.max() - returns.min())
    return target / spread if spread > 0 else 1.0
