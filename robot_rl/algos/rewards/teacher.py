"""A synthetic teacher: pairwise preferences from the store's true rewards, for benchmarks
and tests of preference learning (the labels a careful but fallible human would give).

For each pair it prefers the episode with the higher true return (undiscounted sum of
``data/reward``), calls exact ties ``"equal"``, and flips the verdict with probability
``flip_prob`` (label noise). Preferences are written through the store's labels API under
the labeller pseudonym ``"synthetic-teacher"``, so they are told apart from human ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from robot_rl.data.episode_store import EpisodeStore

TEACHER_LABELLER = "synthetic-teacher"


@dataclass(frozen=True)
class TeacherResult:
    """What :func:`add_synthetic_preferences` wrote.

    Attributes:
        pairs: (index a, index b, preferred) per preference, in the order written.
        n_flipped: how many verdicts were flipped.
    """

    pairs: list[tuple[int, int, str]]
    n_flipped: int


def episode_returns(store: EpisodeStore) -> np.ndarray:
    """float64 (n_episodes,): each committed episode's undiscounted sum of rewards."""
    reward = store.array("reward").astype(np.float64)  # NoRewardsError without rewards
    return np.add.reduceat(reward, np.r_[0, store.episode_ends[:-1]]) if len(reward) else reward


def add_synthetic_preferences(
    store: EpisodeStore,
    n_pairs: int,
    *,
    flip_prob: float = 0.1,
    seed: int = 0,
    labeller: str = TEACHER_LABELLER,
) -> TeacherResult:
    """Add ``n_pairs`` preferences between random episode pairs of ``store``.

    Pairs are drawn uniformly among pairs of distinct episodes (with replacement between
    draws), with a ``numpy.random.default_rng(seed)``; the same store and seed give the
    same preferences.

    Args:
        store: a store with true rewards, opened with mode ``"a"``.
        n_pairs: preferences to add.
        flip_prob: probability of reversing a verdict ("equal" stays "equal").
        seed: seeds the pairs and the flips.
        labeller: the labeller pseudonym recorded.

    Raises:
        NoRewardsError: the store has no rewards.
        ValueError: fewer than 2 episodes, or a bad ``n_pairs`` or ``flip_prob``.
    """
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs <= 0:
        raise ValueError(f"n_pairs: expected a positive int, got {n_pairs!r}")
    if not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"flip_prob: expected a probability in [0, 1], got {flip_prob!r}")
    returns = episode_returns(store)
    n = store.n_episodes
    if n < 2:
        raise ValueError(f"{store.path}: {n} episode(s); preferences need at least 2")
    ids = store.episode_ids()
    rng = np.random.default_rng(seed)
    pairs, flipped = [], 0
    for _ in range(n_pairs):
        a, b = (int(x) for x in rng.choice(n, size=2, replace=False))
        higher = "a" if returns[a] > returns[b] else "b"
        preferred = "equal" if returns[a] == returns[b] else higher
        if rng.random() < flip_prob and preferred != "equal":
            preferred = "b" if preferred == "a" else "a"
            flipped += 1
        store.add_preference(ids[a], ids[b], preferred, labeller)
        pairs.append((a, b, preferred))
    return TeacherResult(pairs, flipped)
