"""evaluate() on the toy 1-D reach env: seeding, per-episode records, frames, errors."""

import json

import numpy as np
import pytest

from robot_rl.eval.runner import EvalResult, evaluate
from robot_rl.policies.base import Policy

from .conftest import FRAME_HW, GOAL, PointReach1D


def _starts(seed: int, n: int) -> list[int]:
    """Start cells the toy env draws for episodes seeded seed .. seed + n - 1."""
    env = PointReach1D()
    return [int(env.reset(seed=seed + i)[0]["position"][0]) for i in range(n)]


def test_known_policy_gives_known_returns_lengths_and_success(env_factory, constant_policy):
    policy = constant_policy(+1.0)
    assert isinstance(policy, Policy)
    result = evaluate(env_factory(), policy, n_episodes=6, seed=100, progress=False)

    starts = _starts(100, 6)
    assert len(set(starts)) > 1  # the seeds really vary the episodes
    for i, (rec, start) in enumerate(zip(result.episodes, starts, strict=True)):
        steps = GOAL - start
        assert (rec.index, rec.seed) == (i, 100 + i)
        assert rec.length == steps
        assert rec.episode_return == pytest.approx(-0.1 * (steps - 1) + 1.0)
        assert rec.success and rec.final_success and rec.terminated
    assert result.stats.n == 6 and result.stats.success_rate == 1.0
    assert result.stats.mean_length == pytest.approx(np.mean([GOAL - s for s in starts]))
    assert policy.n_resets == 6


def test_failing_policy_is_truncated_and_counted_as_failure(env_factory, constant_policy):
    result = evaluate(env_factory(), constant_policy(-1.0), n_episodes=4, seed=0, progress=False)
    for rec in result.episodes:
        assert rec.length == 12 and not rec.terminated
        assert rec.episode_return == pytest.approx(-1.2)
        assert not rec.success and not rec.final_success
    assert result.stats.n_success == 0
    assert result.stats.success_ci[0] == 0.0 and result.stats.success_ci[1] > 0.0


def test_success_at_any_step_differs_from_final_success(env_factory, constant_policy):
    # Without termination the point passes the goal and ends beyond it.
    factory = env_factory(terminate_on_success=False)
    result = evaluate(factory, constant_policy(+1.0), n_episodes=3, seed=5, progress=False)
    for rec in result.episodes:
        assert rec.success and not rec.final_success
        assert rec.length == 12 and rec.episode_return == pytest.approx(1.0 - 0.1 * 11)
    assert result.stats.success_rate == 1.0


def test_episode_i_is_reset_with_seed_plus_i_and_runs_reproduce(env_factory, constant_policy):
    p1, p2 = constant_policy(+1.0), constant_policy(+1.0)
    r1 = evaluate(env_factory(), p1, n_episodes=8, seed=42, progress=False)
    r2 = evaluate(env_factory(), p2, n_episodes=8, seed=42, progress=False)
    first_positions = [int(o["position"][0]) for o in p1.first_obs]
    assert first_positions == _starts(42, 8)
    assert r1.episodes == r2.episodes
    assert r1.stats == r2.stats
    r3 = evaluate(env_factory(), constant_policy(1.0), n_episodes=8, seed=43, progress=False)
    assert [e.length for e in r3.episodes[:-1]] == [e.length for e in r1.episodes[1:]]


def test_frames_only_for_requested_episodes(env_factory, constant_policy):
    factory = env_factory(render_mode="rgb_array")
    result = evaluate(
        factory,
        constant_policy(+1.0),
        n_episodes=5,
        seed=3,
        record_video_episodes=2,
        progress=False,
    )
    assert len(result.frames) == 2
    env = factory.built[0]
    assert env.closed
    # One frame after reset plus one per step, for episodes 0 and 1 only.
    assert env.render_calls == sum(e.length + 1 for e in result.episodes[:2])
    starts = _starts(3, 2)
    for frames, rec, start in zip(result.frames, result.episodes[:2], starts, strict=True):
        assert frames.shape == (rec.length + 1, *FRAME_HW, 3) and frames.dtype == np.uint8
        # The white point is drawn at the start cell first and at the goal last.
        assert frames[0, 4, start * 4 + 1].tolist() == [255, 255, 255]
        assert frames[-1, 4, GOAL * 4 + 1].tolist() == [255, 255, 255]
    assert result.to_dict()["recorded_episodes"] == [0, 1]


def test_record_more_episodes_than_run_is_capped(env_factory, constant_policy):
    factory = env_factory(render_mode="rgb_array")
    result = evaluate(
        factory,
        constant_policy(1.0),
        n_episodes=2,
        seed=0,
        record_video_episodes=9,
        progress=False,
    )
    assert len(result.frames) == 2


def test_no_render_calls_without_recording(env_factory, constant_policy):
    factory = env_factory(render_mode="rgb_array")
    result = evaluate(factory, constant_policy(1.0), n_episodes=3, seed=0, progress=False)
    assert result.frames == [] and factory.built[0].render_calls == 0


def test_frames_need_rgb_array_env(env_factory, constant_policy):
    factory = env_factory()  # render_mode=None
    with pytest.raises(ValueError, match='render_mode="rgb_array"'):
        evaluate(factory, constant_policy(1.0), n_episodes=2, seed=0, record_video_episodes=1)
    assert factory.built[0].closed  # the env is closed even when evaluate fails


def test_missing_is_success_names_episode_and_seed(env_factory, constant_policy):
    with pytest.raises(ValueError, match=r"is_success.*step 1 of episode 0 \(seed 9\)"):
        evaluate(
            env_factory(report_success=False),
            constant_policy(1.0),
            n_episodes=1,
            seed=9,
            progress=False,
        )


def test_bad_arguments(env_factory, constant_policy):
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(env_factory(), constant_policy(1.0), n_episodes=-1, seed=0)
    with pytest.raises(ValueError, match="record_video_episodes"):
        evaluate(
            env_factory(), constant_policy(1.0), n_episodes=1, seed=0, record_video_episodes=-1
        )


def test_to_dict_is_strict_json_with_the_numbers(env_factory, constant_policy):
    result = evaluate(env_factory(), constant_policy(1.0), n_episodes=3, seed=7, progress=True)
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["seeds"] == [7, 9] and d["n_episodes"] == 3
    assert [e["length"] for e in d["episodes"]] == [e.length for e in result.episodes]
    assert d["stats"]["success_rate"] == 1.0
    assert d["stats"]["success_ci"] == list(result.stats.success_ci)


def test_zero_episodes(env_factory, constant_policy):
    result = evaluate(env_factory(), constant_policy(1.0), n_episodes=0, seed=0, progress=False)
    assert isinstance(result, EvalResult) and result.n_episodes == 0
    assert result.stats.success_ci == (0.0, 1.0)
    assert result.to_dict()["stats"]["mean_return"] is None
