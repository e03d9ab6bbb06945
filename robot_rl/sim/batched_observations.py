"""What the batched simulator's worlds show after a step: the end-effector pose from the
arm's joints, the task's measurements (scored on the true tool centre point), and the
observation every world returns (as the policy sees it: with joint calibration offsets
and observation noise when randomized), in the backend's arrays.

:class:`BatchedObservations` is the part of :class:`~robot_rl.sim.batched.BatchedSim`
that computes them; stepping and resetting are there and in
:mod:`robot_rl.sim.batched_resets`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from robot_rl.kinematics import mat_to_quat
from robot_rl.sim.backends.cpu import CpuPhysics
from robot_rl.sim.backends.warp_physics import WarpPhysics
from robot_rl.sim.ik import DifferentialIK
from robot_rl.sim.randomization import DomainRandomizer
from robot_rl.sim.scene import Measurements, TabletopScene


class BatchedObservations:
    """Poses, measurements and observations of all worlds (part of
    :class:`~robot_rl.sim.batched.BatchedSim`, which sets this state up)."""

    xp: Any  # the array namespace of the backend's arrays
    ik: DifferentialIK
    scene: TabletopScene
    randomizer: DomainRandomizer | None
    _physics: CpuPhysics | WarpPhysics
    # Indices of the backend's arrays.
    _arm_q: Any
    _arm_v: Any
    _finger_q: Any
    _cube_q: Any
    # Per-world arrays of the backend (numpy on the host, or torch on the device).
    _ee_pos: Any
    _ee_quat: Any
    _tcp_true_pos: Any
    _goal: Any
    _joint_offset: Any
    _obs_noise: np.ndarray
    _host_to_backend: Callable[[np.ndarray], Any]
    _out: Callable[..., torch.Tensor]

    def _update_ee_pose(self) -> None:
        xp = self.xp
        q = self._physics.qpos[:, self._arm_q]  # checked finite in _read_flags
        pos, rot = self.ik.forward(q)
        # As in the single env: the task scores the true TCP, the policy sees the pose the
        # (possibly miscalibrated) encoders imply.
        self._tcp_true_pos = pos
        if self.randomizer is not None and self.randomizer.has_joint_offset:
            pos, rot = self.ik.forward(q + self._joint_offset)
        quat = mat_to_quat(rot)
        # Same sign convention as the single env: the pointing-down side, x >= 0.
        self._ee_pos = pos
        self._ee_quat = xp.where(quat[:, 1:2] < 0, -quat, quat)

    def _measure(self) -> Measurements:
        qpos = self._physics.qpos
        left, right = self.scene.pad_contacts(self._physics.sensordata)
        return Measurements(
            ee_pos=self._tcp_true_pos,
            cube_pos=qpos[:, self._cube_q[:3]],
            goal=self._goal,
            gripper_width_m=self.xp.sum(qpos[:, self._finger_q], axis=1),
            left_pad_touches_cube=left,
            right_pad_touches_cube=right,
        )

    def _obs(self) -> dict[str, torch.Tensor]:
        xp, s = self.xp, self.scene
        qpos, qvel = self._physics.qpos, self._physics.qvel
        cube_quat = qpos[:, self._cube_q[3:]]
        width = xp.sum(qpos[:, self._finger_q], axis=1, keepdims=True)
        obs = {
            "joint_pos": qpos[:, self._arm_q],
            "joint_vel": qvel[:, self._arm_v],
            "gripper_width": xp.clip(width, min=0.0, max=s.gripper_width_max_m),
            "ee_pos": self._ee_pos,
            "ee_quat": self._ee_quat,
            "object_pos": qpos[:, self._cube_q[:3]],
            "object_quat": xp.where(cube_quat[:, :1] < 0, -cube_quat, cube_quat),
            "goal": self._goal,
        }
        if self.randomizer is not None:
            obs["joint_pos"] = obs["joint_pos"] + self._joint_offset
            if self.randomizer.has_obs_noise:
                noise = self._host_to_backend(self._obs_noise)
                self.randomizer.add_obs_noise(obs, noise)
        return {k: self._out(xp.astype(v, xp.float32)) for k, v in obs.items()}
