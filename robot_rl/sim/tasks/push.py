"""Push: slide the 4 cm cube so its centre is within 3 cm (xy) of a goal 10-20 cm away."""

from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.arrays import array_namespace
from robot_rl.sim.scene import Measurements, TabletopScene
from robot_rl.sim.tasks.base import CUBE_REST_Z_M, Task, sample_cube_on_table

GOAL_DIST_RANGE_M = (0.10, 0.20)
#: Goals stay where the pusher can still get behind the cube (x + 5.5 cm <= workspace).
GOAL_AREA_MIN_M = np.array([0.35, -0.25])
GOAL_AREA_MAX_M = np.array([0.60, 0.25])
SUCCESS_DIST_M = 0.03


class PushTask(Task):
    name = "push"
    default_horizon_steps = 100

    def reset(self, scene: TabletopScene, data: mujoco.MjData, rng: np.random.Generator) -> None:
        cube, yaw = sample_cube_on_table(rng)
        scene.set_cube_pose(data, cube, yaw)
        # Rejection sampling keeps the distance distribution exact inside the goal area;
        # from any cube start in the sampling area most directions qualify.
        while True:
            dist = rng.uniform(*GOAL_DIST_RANGE_M)
            angle = rng.uniform(-np.pi, np.pi)
            goal_xy = cube[:2] + dist * np.array([np.cos(angle), np.sin(angle)])
            if np.all(goal_xy >= GOAL_AREA_MIN_M) and np.all(goal_xy <= GOAL_AREA_MAX_M):
                break
        scene.set_goal(data, np.array([goal_xy[0], goal_xy[1], CUBE_REST_Z_M]))

    def dense_reward(self, m: Measurements) -> np.ndarray:
        xp = array_namespace(m.ee_pos)
        to_goal = xp.linalg.vector_norm(m.cube_pos[..., :2] - m.goal[..., :2], axis=-1)
        to_cube = xp.linalg.vector_norm(m.ee_pos - m.cube_pos, axis=-1)
        return -(to_goal + 0.5 * xp.clip(to_cube - 0.04, min=0.0))

    def condition(self, m: Measurements) -> np.ndarray:
        xp = array_namespace(m.ee_pos)
        return (
            xp.linalg.vector_norm(m.cube_pos[..., :2] - m.goal[..., :2], axis=-1) < SUCCESS_DIST_M
        )
