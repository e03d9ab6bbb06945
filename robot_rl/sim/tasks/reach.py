"""Reach: bring the TCP within 2 cm of a goal sampled in a 30 x 30 x 20 cm box."""

from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.arrays import array_namespace
from robot_rl.sim.scene import Measurements, TabletopScene
from robot_rl.sim.tasks.base import CUBE_REST_Z_M, Task

GOAL_BOX_MIN_M = np.array([0.35, -0.15, 0.10])
GOAL_BOX_MAX_M = np.array([0.65, 0.15, 0.30])
SUCCESS_DIST_M = 0.02
#: Reach does not use the cube: it rests out of the way, beside the goal box.
PARKED_CUBE_POS_M = np.array([0.35, -0.38, CUBE_REST_Z_M])


class ReachTask(Task):
    name = "reach"
    default_horizon_steps = 50

    def reset(self, scene: TabletopScene, data: mujoco.MjData, rng: np.random.Generator) -> None:
        scene.set_cube_pose(data, PARKED_CUBE_POS_M)
        scene.set_goal(data, rng.uniform(GOAL_BOX_MIN_M, GOAL_BOX_MAX_M))

    def dense_reward(self, m: Measurements) -> np.ndarray:
        xp = array_namespace(m.ee_pos)
        return -xp.linalg.vector_norm(m.ee_pos - m.goal, axis=-1)

    def condition(self, m: Measurements) -> np.ndarray:
        xp = array_namespace(m.ee_pos)
        return xp.linalg.vector_norm(m.ee_pos - m.goal, axis=-1) < SUCCESS_DIST_M
