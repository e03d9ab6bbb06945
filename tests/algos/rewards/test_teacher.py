"""The synthetic teacher: prefers the higher true return, flips at the asked rate, seeded,
labels through the labels API."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.algos.rewards import TEACHER_LABELLER, add_synthetic_preferences, episode_returns
from robot_rl.data.episode_store import NoRewardsError


def test_teacher_prefers_higher_true_return(make_walk_store):
    store = make_walk_store(n_episodes=10)
    result = add_synthetic_preferences(store, 50, flip_prob=0.0, seed=0)
    returns = episode_returns(store)
    assert result.n_flipped == 0 and len(store.preferences()) == 50
    ids = store.episode_ids()
    for (a, b, preferred), p in zip(result.pairs, store.preferences(), strict=True):
        assert a != b and (p.episode_a, p.episode_b) == (ids[a], ids[b])
        assert p.preferred == preferred == ("a" if returns[a] > returns[b] else "b")
        assert p.labeller == TEACHER_LABELLER


def test_teacher_flips_at_the_given_rate_and_is_seeded(make_walk_store):
    store = make_walk_store(n_episodes=10)
    returns = episode_returns(store)
    r1 = add_synthetic_preferences(store, 200, flip_prob=0.25, seed=3)
    wrong = sum(p != ("a" if returns[a] > returns[b] else "b") for a, b, p in r1.pairs)
    assert wrong == r1.n_flipped and 25 <= wrong <= 75
    r2 = add_synthetic_preferences(store, 200, flip_prob=0.25, seed=3)
    assert r2 == r1


def test_teacher_needs_true_rewards(make_walk_store):
    store = make_walk_store(n_episodes=3, reward_source="none")
    with pytest.raises(NoRewardsError, match="relabel"):
        add_synthetic_preferences(store, 5)
    with pytest.raises(ValueError, match="flip_prob"):
        add_synthetic_preferences(store, 5, flip_prob=1.5)


def test_episode_returns_sum_each_episode(make_walk_store):
    store = make_walk_store(n_episodes=4)
    r = store.array("reward").astype(np.float64)
    ends = store.episode_ends
    want = [r[s:e].sum() for s, e in zip(np.r_[0, ends[:-1]], ends, strict=True)]
    np.testing.assert_allclose(episode_returns(store), want)
