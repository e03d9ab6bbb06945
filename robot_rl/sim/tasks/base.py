"""What a task is: how it sets up an episode, how it scores a state, when it succeeds.

Tasks see the scene through :class:`~robot_rl.sim.scene.Measurements`, so reward and
success are plain array functions of positions, independent of how the physics ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import mujoco
import numpy as np

from robot_rl.sim.scene import CUBE_HALF_SIZE_M, Measurements, TabletopScene

#: Where the TCP may be commanded (world frame, metres): the box above the table in which
#: the arm reaches every point with the hand pointing down, away from joint limits (beyond
#: x = 0.68 m the far upper corners need a straight elbow).
WORKSPACE_MIN_M = np.array([0.30, -0.30, 0.01])
WORKSPACE_MAX_M = np.array([0.68, 0.30, 0.40])
#: Episodes start with the TCP here, pointing down: above the reach goal box (so no goal
#: is solved at the first step) and the cube area.
START_TCP_M = np.array([0.45, 0.0, 0.35])
#: The cube's centre height when it rests on the table.
CUBE_REST_Z_M = CUBE_HALF_SIZE_M


class Task(ABC):
    """One task on the tabletop scene. Stateless: reward and success condition are pure
    functions of one instant, so batched backends and relabelling can call them freely.
    They are vectorized: the :class:`Measurements` arrays may carry a leading batch axis
    (one row per world), and so do the results; they are numpy arrays or torch tensors
    (written against the array API, :mod:`robot_rl.arrays`), and results follow.

    Attributes:
        name: registry name.
        default_horizon_steps: episode length at the default 20 Hz control rate.
        hold_time_s: how long the success condition must hold without a break before
            the episode counts as a success (0: at the first control step it holds). The
            env keeps the timer: with a control period dt, success needs the condition
            on ``1 + ceil(hold_time_s / dt)`` consecutive control steps, i.e. held from
            the first of them to the last for at least ``hold_time_s``.
    """

    name: str
    default_horizon_steps: int
    hold_time_s: float = 0.0

    @abstractmethod
    def reset(self, scene: TabletopScene, data: mujoco.MjData, rng: np.random.Generator) -> None:
        """Places the cube and the goal for a new episode (the arm is placed by the env)."""

    @abstractmethod
    def dense_reward(self, m: Measurements) -> np.ndarray:
        """Shaped reward per control step, never positive: with episodes that end on
        success, a positive per-step reward would pay a policy to avoid succeeding."""

    @abstractmethod
    def condition(self, m: Measurements) -> np.ndarray:
        """Whether the success condition holds at this instant."""


def sample_cube_on_table(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A cube position in the 20 x 30 cm area in front of the robot and a small yaw.

    The yaw stays within ±0.3 rad because the action space has no wrist rotation: the
    parallel jaws, closing along the world y axis, square up a cube turned that little.
    """
    pos = np.array([rng.uniform(0.40, 0.60), rng.uniform(-0.15, 0.15), CUBE_REST_Z_M])
    return pos, float(rng.uniform(-0.3, 0.3))
