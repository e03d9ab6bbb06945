"""Batched evaluation plays exactly the episodes of the sequential runner."""

import numpy as np
import pytest
import torch

from robot_rl.config.schema import TaskConfig
from robot_rl.eval.batched import evaluate_batched
from robot_rl.eval.runner import evaluate
from robot_rl.sim.env import make_env
from robot_rl.sim.rendering import rendering_unavailable_reason


class GoalSeeker:
    """A deterministic policy with both interfaces: a proportional step towards the goal
    (a little too weak to always make it, so episodes end both ways)."""

    obs_keys = ("ee_pos", "goal")

    def reset(self) -> None:
        pass

    def act(self, obs):
        return self.act_batch(np.concatenate([obs["ee_pos"], obs["goal"]])[None])[0]

    def act_batch(self, flat):
        x = torch.as_tensor(np.asarray(flat), dtype=torch.float32)
        arm = torch.clamp(4.0 * (x[:, 3:6] - x[:, 0:3]), -1, 1)
        return torch.cat([arm, torch.ones(len(x), 1)], dim=1).numpy()


def test_batched_evaluation_equals_the_sequential_runner():
    task = TaskConfig(name="reach", horizon_steps=25)
    seq = evaluate(lambda: make_env(task), GoalSeeker(), n_episodes=7, seed=500, progress=False)
    # 3 worlds: three rounds, the last with one world's worth of episodes.
    bat = evaluate_batched(GoalSeeker(), task, n_episodes=7, seed=500, max_worlds=3, n_threads=1)
    assert [r.seed for r in bat.episodes] == list(range(500, 507))
    for a, b in zip(seq.episodes, bat.episodes, strict=True):
        assert (a.index, a.seed, a.length, a.success, a.final_success, a.terminated) == (
            b.index, b.seed, b.length, b.success, b.final_success, b.terminated,
        )  # fmt: skip
        assert a.episode_return == pytest.approx(b.episode_return, abs=1e-5)
    assert 0 < sum(r.success for r in seq.episodes) < 7  # both outcomes occur
    assert bat.stats.success_rate == seq.stats.success_rate


def test_batched_evaluation_names_missing_observation_keys():
    class Blind(GoalSeeker):
        obs_keys = ("ee_pos", "camera")

    with pytest.raises(ValueError, match=r"no observation keys \['camera'\]"):
        evaluate_batched(Blind(), TaskConfig(name="reach"), n_episodes=2, seed=0)
    with pytest.raises(ValueError, match="n_episodes must be >= 1"):
        evaluate_batched(GoalSeeker(), TaskConfig(name="reach"), n_episodes=0, seed=0)


class NoisyGoalSeeker(GoalSeeker):
    """A single-env policy with its own seeded randomness."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs):
        return np.clip(super().act(obs) + 0.3 * self.rng.standard_normal(4), -1, 1)


def test_per_world_policies_and_discounted_returns_match_a_sequential_rollout():
    from robot_rl.eval.batched import PerWorldPolicies

    task, gamma = TaskConfig(name="reach", horizon_steps=20), 0.9
    bat = evaluate_batched(
        PerWorldPolicies(NoisyGoalSeeker),
        task,
        n_episodes=5,
        seed=40,
        max_worlds=2,
        n_threads=1,
        discount=gamma,
    )
    env = make_env(task)
    for rec in bat.episodes:
        policy = NoisyGoalSeeker(rec.seed)
        obs, _ = env.reset(seed=rec.seed)
        disc, t, done = 0.0, 0, False
        while not done:
            obs, r, term, trunc, _ = env.step(policy.act(obs))
            disc += gamma**t * r
            t, done = t + 1, term or trunc
        assert rec.length == t
        assert rec.discounted_return == pytest.approx(disc, abs=1e-5)
        assert rec.discounted_return != pytest.approx(rec.episode_return)
    # Without a discount there is none in the records.
    plain = evaluate_batched(GoalSeeker(), task, n_episodes=2, seed=40, n_threads=1)
    assert all(r.discounted_return is None for r in plain.episodes)
    with pytest.raises(ValueError, match=r"discount must be in \(0, 1\]"):
        evaluate_batched(GoalSeeker(), task, n_episodes=2, seed=40, discount=1.5)


@pytest.mark.skipif(rendering_unavailable_reason() is not None, reason="no rendering here")
def test_batched_films_are_the_sequential_runners_frames():
    """The first episodes filmed in the batched simulator are, frame for frame, the
    single env's: after reset, then after every step, the last one before the world's
    auto-reset (an episode that ends early stops its film there)."""
    task = TaskConfig(name="reach", horizon_steps=12)
    view = {"camera": "front", "width": 64, "height": 48}
    seq = evaluate(
        lambda: make_env(task, render=True, **view),
        GoalSeeker(),
        n_episodes=3,
        seed=40,
        record_video_episodes=2,
        progress=False,
    )
    bat = evaluate_batched(
        GoalSeeker(), task, n_episodes=3, seed=40, n_threads=1, record_video_episodes=2, **view
    )
    assert len(bat.frames) == 2
    for a, b, rec in zip(seq.frames, bat.frames, bat.episodes, strict=False):
        assert b.shape == (rec.length + 1, 48, 64, 3) and b.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(bat.frames[0][0], bat.frames[0][-1])  # the arm moved
    with pytest.raises(ValueError, match="record_video_episodes must be in"):
        evaluate_batched(GoalSeeker(), task, n_episodes=3, seed=40, record_video_episodes=4)
