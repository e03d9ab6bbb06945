"""Lift: hold the cube at least 5 cm above the table for 0.5 s.

"Held" means both finger pads touch the cube; the height is the cube centre's rise above
its resting height (so the cube's underside is >= 5 cm above the table).
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.arrays import array_namespace
from robot_rl.sim.scene import Measurements, TabletopScene
from robot_rl.sim.tasks.base import CUBE_REST_Z_M, Task, sample_cube_on_table

LIFT_HEIGHT_M = 0.05
HOLD_TIME_S = 0.5
#: The goal marker shows where to lift to: above the cube's start, with some margin.
GOAL_RISE_M = 0.10


class LiftTask(Task):
    name = "lift"
    default_horizon_steps = 100
    hold_time_s = HOLD_TIME_S

    def reset(self, scene: TabletopScene, data: mujoco.MjData, rng: np.random.Generator) -> None:
        cube, yaw = sample_cube_on_table(rng)
        scene.set_cube_pose(data, cube, yaw)
        scene.set_goal(data, cube + np.array([0.0, 0.0, GOAL_RISE_M]))

    def dense_reward(self, m: Measurements) -> np.ndarray:
        xp = array_namespace(m.ee_pos)
        to_cube = xp.linalg.vector_norm(m.ee_pos - m.cube_pos, axis=-1)
        rise = m.cube_pos[..., 2] - CUBE_REST_Z_M
        held = xp.logical_and(m.left_pad_touches_cube, m.right_pad_touches_cube)
        # A penalty for not holding (rather than a bonus for holding) keeps every step's
        # reward <= 0, so hovering with the cube below the bar never beats succeeding.
        return -to_cube - 2.0 * xp.clip(LIFT_HEIGHT_M - rise, min=0.0) - 0.25 * xp.logical_not(held)

    def condition(self, m: Measurements) -> np.ndarray:
        xp = array_namespace(m.ee_pos)
        held = xp.logical_and(m.left_pad_touches_cube, m.right_pad_touches_cube)
        return held & (m.cube_pos[..., 2] - CUBE_REST_Z_M >= LIFT_HEIGHT_M)
