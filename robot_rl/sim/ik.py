"""Differential inverse kinematics for the arm: damped least squares with a posture task.

Pure numpy + MuJoCo (no torch) so that the robot-side bridge can run it too. Each
iteration linearizes the TCP pose at the current joint guess, solves

    dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e  +  (I - J⁺ J) k (q_nominal - q)

for the 6-D pose error ``e`` (position, orientation), and clips the result to the joint
range shrunk by a margin, so targets never leave the joint limits.
"""

from __future__ import annotations

import mujoco
import numpy as np


class DifferentialIK:
    """Pose IK for one site over a subset of joints.

    Args:
        model: the MuJoCo model (a private ``MjData`` is kept for linearization).
        site_id: the site to place (the TCP).
        qpos_adr: qpos addresses of the controlled joints.
        dof_adr: dof addresses of the same joints (columns of the Jacobian).
        q_min, q_max: joint range in radians.
        q_nominal: posture the null space is pulled towards, radians.
        damping: λ in metres (and radians); larger is slower but safer near singularities.
        nullspace_gain: k, fraction of the posture error corrected per iteration.
        orientation_weight: weight of the orientation error (1/m), relative to position.
        limit_margin_rad: distance kept from each joint limit.
        max_err_per_iter: largest (weighted) pose error, in metres, corrected by one
            iteration; far targets are approached in several bounded steps.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        site_id: int,
        qpos_adr: np.ndarray,
        dof_adr: np.ndarray,
        q_min: np.ndarray,
        q_max: np.ndarray,
        q_nominal: np.ndarray,
        *,
        damping: float = 0.01,
        nullspace_gain: float = 0.2,
        orientation_weight: float = 0.5,
        limit_margin_rad: float = 0.02,
        max_err_per_iter: float = 0.05,
    ) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.site_id = site_id
        self.qpos_adr = np.asarray(qpos_adr)
        self.dof_adr = np.asarray(dof_adr)
        self.q_lo = np.asarray(q_min) + limit_margin_rad
        self.q_hi = np.asarray(q_max) - limit_margin_rad
        self.q_nominal = np.asarray(q_nominal, dtype=np.float64)
        self.damping = damping
        self.nullspace_gain = nullspace_gain
        self.orientation_weight = orientation_weight
        self.max_err_per_iter = max_err_per_iter
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._quat = np.zeros(4)
        self._quat_err = np.zeros(3)
        self._eye = np.eye(len(self.qpos_adr))

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position and rotation matrix at joint positions ``q``."""
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)
        return (
            self.data.site_xpos[self.site_id].copy(),
            self.data.site_xmat[self.site_id].reshape(3, 3).copy(),
        )

    def solve(
        self,
        q_init: np.ndarray,
        target_pos: np.ndarray,
        target_quat: np.ndarray | None = None,
        iters: int = 1,
        tol_m: float = 1e-4,
    ) -> np.ndarray:
        """Joint positions that move the site towards ``target_pos`` (and orientation).

        Args:
            q_init: starting guess (usually the last commanded joint targets), radians.
            target_pos: desired site position in the world frame, metres.
            target_quat: desired orientation (w, x, y, z); None leaves orientation free.
            iters: iterations; one per control step is enough for small moves, more for
                large ones.
            tol_m: stop early once the position error is below this (and orientation,
                weighted, too).

        Returns:
            Joint positions inside the joint range shrunk by the margin.
        """
        q = np.clip(np.asarray(q_init, dtype=np.float64), self.q_lo, self.q_hi)
        for _ in range(iters):
            pos, rot = self.forward(q)
            err_p = target_pos - pos
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            jp = self._jacp[:, self.dof_adr]
            if target_quat is not None:
                mujoco.mju_mat2Quat(self._quat, rot.ravel())
                # subQuat gives the rotation in the current site frame; the Jacobian is in world.
                mujoco.mju_subQuat(self._quat_err, np.asarray(target_quat, float), self._quat)
                err_r = rot @ self._quat_err
                w = self.orientation_weight
                jac = np.vstack([jp, w * self._jacr[:, self.dof_adr]])
                err = np.concatenate([err_p, w * err_r])
            else:
                jac, err = jp, err_p
            if np.linalg.norm(err) < tol_m:
                break
            # Linearization holds only near q: walk towards far targets in bounded steps.
            norm = np.linalg.norm(err)
            if norm > self.max_err_per_iter:
                err *= self.max_err_per_iter / norm
            jjt = jac @ jac.T + (self.damping**2) * np.eye(jac.shape[0])
            dq = jac.T @ np.linalg.solve(jjt, err)
            # The pseudo-inverse of the damped system gives the null-space projector.
            j_pinv = jac.T @ np.linalg.inv(jjt)
            dq += (self._eye - j_pinv @ jac) @ (self.nullspace_gain * (self.q_nominal - q))
            q = np.clip(q + dq, self.q_lo, self.q_hi)
        return q
