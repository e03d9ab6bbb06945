"""Task definitions: goal sampling matches the stated difficulty, success is exact."""

import numpy as np
import pytest

from robot_rl.sim.env import RobotEnv
from robot_rl.sim.scene import Measurements
from robot_rl.sim.tasks import LiftTask
from robot_rl.sim.tasks.reach import GOAL_BOX_MAX_M, GOAL_BOX_MIN_M


def test_reach_goals_fill_the_30x30x20cm_box():
    env = RobotEnv("reach")
    goals = np.array([env.reset(seed=s)[0]["goal"] for s in range(300)])
    assert np.all(goals >= GOAL_BOX_MIN_M - 1e-6) and np.all(goals <= GOAL_BOX_MAX_M + 1e-6)
    np.testing.assert_allclose(GOAL_BOX_MAX_M - GOAL_BOX_MIN_M, [0.3, 0.3, 0.2])
    span = goals.max(0) - goals.min(0)
    assert np.all(span > 0.9 * (GOAL_BOX_MAX_M - GOAL_BOX_MIN_M))


def test_push_goals_are_10_to_20cm_from_the_cube_on_the_table():
    env = RobotEnv("push")
    for s in range(200):
        obs, _ = env.reset(seed=s)
        d = np.linalg.norm(obs["goal"][:2] - obs["object_pos"][:2])
        assert 0.10 - 1e-6 <= d <= 0.20 + 1e-6
        assert obs["goal"][2] == pytest.approx(0.02)
        assert obs["object_pos"][2] == pytest.approx(0.02, abs=1e-6)


def test_push_success_is_3cm_in_xy():
    env = RobotEnv("push")
    obs, _ = env.reset(seed=0)
    goal = obs["goal"].astype(float)
    env.scene.set_cube_pose(env.data, goal + np.array([0.025, 0, 0]))
    _, _, terminated, _, info = env.step(np.array([0, 0, 0, -1.0]))
    assert info["is_success"] and terminated
    env.reset(seed=0)
    env.scene.set_cube_pose(env.data, goal + np.array([0.035, 0, 0]))
    _, _, terminated, _, info = env.step(np.array([0, 0, 0, -1.0]))
    assert not info["is_success"] and not terminated


def _m(z, left=True, right=True):
    return Measurements(
        ee_pos=np.array([0.5, 0, z]),
        cube_pos=np.array([0.5, 0, z]),
        goal=np.array([0.5, 0, 0.12]),
        gripper_width_m=0.04,
        left_pad_touches_cube=left,
        right_pad_touches_cube=right,
    )


@pytest.mark.parametrize("hz,needed", [(20.0, 10), (10.0, 5), (50.0, 25)])
def test_lift_needs_half_a_second_held_at_5cm(hz, needed):
    task = LiftTask(hz)
    assert task.hold_steps_needed == needed
    results = [task.success(_m(0.0705)) for _ in range(needed)]
    assert results == [False] * (needed - 1) + [True]
    task.held_steps = 0
    # Too low, or one pad off the cube, resets the count.
    assert not any(task.success(_m(0.069)) for _ in range(2 * needed))
    assert not any(task.success(_m(0.08, right=False)) for _ in range(2 * needed))
    for _ in range(needed - 1):
        task.success(_m(0.08))
    assert not task.success(_m(0.08, left=False))
    assert not task.success(_m(0.08))
