"""Scripted experts: the stand-in teleoperators must be reliable (>= 95%)."""

import numpy as np
import pytest

from robot_rl.sim.env import RobotEnv
from robot_rl.sim.experts import make_expert


def success_rate(task, n_episodes, noise_std=0.0, seed0=0):
    env = RobotEnv(task)
    expert = make_expert(task)
    rng = np.random.default_rng(seed0)
    wins = 0
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed0 + ep)
        expert.reset()
        done = False
        while not done:
            action = expert.act(obs) + noise_std * rng.standard_normal(4)
            obs, _, terminated, truncated, info = env.step(np.clip(action, -1, 1))
            done = terminated or truncated
        wins += info["is_success"]
    return wins / n_episodes


@pytest.mark.slow
@pytest.mark.parametrize("task", ["reach", "push", "lift"])
def test_expert_at_least_95_percent_over_100_seeded_episodes(task):
    assert success_rate(task, 100) >= 0.95


@pytest.mark.parametrize("task", ["reach", "push", "lift"])
def test_expert_solves_a_few_episodes(task):
    assert success_rate(task, 5, seed0=500) >= 0.8


def test_expert_rejects_unknown_task():
    with pytest.raises(ValueError, match="no scripted expert for task 'stack'"):
        make_expert("stack")
