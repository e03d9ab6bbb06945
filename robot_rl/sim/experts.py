"""Scripted experts: the stand-in teleoperators, one per task.

Each expert sees only the observation dict (as a policy would) and keeps a small phase
state machine. They command the ``ee_delta`` action mode; their actions are normalized to
[-1, 1] like any policy's. Dataset recipes add noise on top (see ``robot_rl.data``).
"""

from __future__ import annotations

import numpy as np

from robot_rl.sim.tasks.base import CUBE_REST_Z_M

OPEN, CLOSE = 1.0, -1.0


class ScriptedExpert:
    """Base: turns a desired TCP position into a bounded ``ee_delta`` action.

    Args:
        max_ee_step_m: the env's ``task.max_ee_step_m`` (action 1.0 = this many metres).
    """

    def __init__(self, max_ee_step_m: float = 0.02) -> None:
        self.max_step = max_ee_step_m
        self.reset()

    def reset(self) -> None:
        self.phase = "start"
        self.counter = 0

    #: Share of the remaining distance the expert asks to cover per control step (capped
    #: at the step size): a smooth approach, as a person's, rather than a deadbeat one
    #: whose last-step stops ask more acceleration than the arm has (the safety filter
    #: would hold them back).
    GAIN = 0.5

    def _move(self, ee: np.ndarray, target: np.ndarray, gripper: float) -> np.ndarray:
        v = self.GAIN * (np.asarray(target, np.float64) - ee) / self.max_step
        n = np.linalg.norm(v)
        if n > 1.0:
            v /= n
        return np.append(v, gripper).astype(np.float32)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError


class ReachExpert(ScriptedExpert):
    """Moves straight to the goal with the gripper open."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self._move(obs["ee_pos"], obs["goal"], OPEN)


class PushExpert(ScriptedExpert):
    """Closes the jaws, goes behind the cube on the cube-goal line, lowers, pushes.

    If the cube slides off the pushing line (it turns under an off-centre contact), the
    expert lifts, goes behind it again and resumes.
    """

    #: TCP height while pushing: the pads then span 1-5.4 cm above the table.
    PUSH_Z_M = 0.015
    HOVER_Z_M = 0.07
    #: Distance from the cube centre at which the closed pads stand before pushing.
    STANDOFF_M = 0.055

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        ee = obs["ee_pos"].astype(np.float64)
        cube = obs["object_pos"][:2].astype(np.float64)
        goal = obs["goal"][:2].astype(np.float64)
        to_goal = goal - cube
        dist = np.linalg.norm(to_goal)
        u = to_goal / max(dist, 1e-6)
        rel = ee[:2] - cube
        along, lateral = rel @ u, rel @ np.array([-u[1], u[0]])
        behind = cube - u * self.STANDOFF_M

        if self.phase == "start":
            self.phase = "approach"
        if self.phase == "push" and (abs(lateral) > 0.02 or along > -0.015):
            self.phase = "retreat"
        if self.phase == "retreat":
            if ee[2] < self.HOVER_Z_M - 0.01:
                return self._move(ee, np.array([*ee[:2], self.HOVER_Z_M]), CLOSE)
            self.phase = "approach"
        if self.phase == "approach":
            if np.linalg.norm(ee[:2] - behind) < 0.01:
                self.phase = "descend"
            else:
                return self._move(ee, np.array([*behind, self.HOVER_Z_M]), CLOSE)
        if self.phase == "descend":
            if ee[2] < self.PUSH_Z_M + 0.008:
                self.phase = "push"
            else:
                return self._move(ee, np.array([*behind, self.PUSH_Z_M]), CLOSE)
        # push: advance along the line, steer back onto it, slow down near the goal.
        if dist < 0.01:
            return self._move(ee, ee, CLOSE)
        advance = min(self.max_step, dist)
        desired_xy = ee[:2] + u * advance - 0.8 * lateral * np.array([-u[1], u[0]])
        return self._move(ee, np.array([*desired_xy, self.PUSH_Z_M]), CLOSE)


class LiftExpert(ScriptedExpert):
    """Hovers over the cube, descends with open jaws, closes, lifts to the goal marker."""

    HOVER_M = 0.08
    GRASP_STEPS = 6

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        ee = obs["ee_pos"].astype(np.float64)
        cube = obs["object_pos"].astype(np.float64)
        goal = obs["goal"].astype(np.float64)
        if self.phase == "start":
            self.phase = "approach"
        if self.phase in ("grasp", "lift") and ee[2] - cube[2] > 0.03:
            self.phase, self.counter = "approach", 0  # dropped it: start over
        if self.phase == "approach":
            above = np.array([cube[0], cube[1], cube[2] + self.HOVER_M])
            if np.linalg.norm(ee[:2] - cube[:2]) < 0.006 and obs["gripper_width"][0] > 0.07:
                self.phase = "descend"
            else:
                return self._move(ee, above, OPEN)
        if self.phase == "descend":
            if abs(ee[2] - cube[2]) < 0.006:
                self.phase, self.counter = "grasp", 0
            else:
                return self._move(ee, np.array([cube[0], cube[1], cube[2]]), OPEN)
        if self.phase == "grasp":
            self.counter += 1
            if self.counter >= self.GRASP_STEPS:
                self.phase = "lift"
            return self._move(ee, np.array([cube[0], cube[1], max(cube[2], CUBE_REST_Z_M)]), CLOSE)
        return self._move(ee, goal, CLOSE)


EXPERTS: dict[str, type[ScriptedExpert]] = {
    "reach": ReachExpert,
    "push": PushExpert,
    "lift": LiftExpert,
}


def make_expert(task: str, max_ee_step_m: float = 0.02) -> ScriptedExpert:
    """The scripted expert for a task name."""
    if task not in EXPERTS:
        raise ValueError(f"no scripted expert for task '{task}'; known: {sorted(EXPERTS)}")
    return EXPERTS[task](max_ee_step_m)
