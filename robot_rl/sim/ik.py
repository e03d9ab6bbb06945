"""Differential inverse kinematics for the arm: damped least squares with a posture task,
batched over worlds (numpy; no torch, no ``MjData``, so the robot-side bridge runs it too).

Each iteration linearizes the TCP pose at the current joint guess, solves

    dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e  +  (I - J⁺ J) k (q_nominal - q)

for the 6-D pose error ``e`` (position, orientation), and clips the result to the joint
range shrunk by a margin, so targets never leave the joint limits. Every world is solved
independently (a world's result never depends on the others in the batch).
"""

from __future__ import annotations

import numpy as np

from robot_rl.sim.kinematics import SerialChain, quat_to_mat


def quat_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3), world frame, that turn ``current`` into ``target``
    (quaternions (..., 4), w x y z): the log map of target ⊗ current⁻¹."""
    tw, tv = target[..., :1], target[..., 1:]
    cw, cv = current[..., :1], -current[..., 1:]  # conjugate of current
    w = tw * cw - np.sum(tv * cv, axis=-1, keepdims=True)
    v = tw * cv + cw * tv + np.cross(tv, cv)
    # q and -q are one rotation: take the short way round.
    sign = np.where(w < 0, -1.0, 1.0)
    w, v = w * sign, v * sign
    norm_v = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(norm_v, w)
    scale = np.where(norm_v > 1e-12, angle / np.maximum(norm_v, 1e-12), 2.0)
    return v * scale


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vectors (..., 3), world frame, that turn rotation matrices ``current`` into
    ``target`` (..., 3, 3): the log map of target · currentᵀ, via its axis and angle."""
    r = target @ np.swapaxes(current, -1, -2)
    vee = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                    r[..., 1, 0] - r[..., 0, 1]], -1)  # fmt: skip
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    sin = np.sin(angle)[..., None]
    # vee = 2 sin(angle) axis; near 0 the ratio tends to 1/2. (Near pi the axis is
    # ill-conditioned; IK steps are bounded, so errors stay far from pi.)
    scale = np.where(sin > 1e-9, angle[..., None] / (2.0 * np.maximum(sin, 1e-9)), 0.5)
    return vee * scale


class DifferentialIK:
    """Pose IK for one site over a chain of hinge joints, for a batch of worlds.

    Args:
        chain: the arm's kinematic chain (with the TCP site).
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
        chain: SerialChain,
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
        self.chain = chain
        self.q_lo = np.asarray(q_min, dtype=np.float64) + limit_margin_rad
        self.q_hi = np.asarray(q_max, dtype=np.float64) - limit_margin_rad
        self.q_nominal = np.asarray(q_nominal, dtype=np.float64)
        self.damping = damping
        self.nullspace_gain = nullspace_gain
        self.orientation_weight = orientation_weight
        self.max_err_per_iter = max_err_per_iter

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP positions (N, 3) and rotation matrices (N, 3, 3) at joint positions (N, n)."""
        pos, rot, _, _ = self.chain.forward(q)
        return pos, rot

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
            q_init: starting guesses (N, n) or (n,) (usually the last commanded targets).
            target_pos: desired site positions, world frame, metres: (N, 3) or (3,).
            target_quat: desired orientation(s) (w, x, y, z), (N, 4) or (4,); None leaves
                orientation free.
            iters: iterations; one or two per control step suffice for small moves.
            tol_m: a world whose (weighted) pose error is below this stops moving.

        Returns:
            Joint positions inside the joint range shrunk by the margin, shaped like
            ``q_init``.
        """
        single = np.ndim(q_init) == 1
        q = np.clip(np.atleast_2d(np.asarray(q_init, dtype=np.float64)), self.q_lo, self.q_hi)
        n = q.shape[0]
        target_pos = np.broadcast_to(np.asarray(target_pos, dtype=np.float64), (n, 3))
        eye_n = np.eye(q.shape[1])
        target_rot = None if target_quat is None else quat_to_mat(np.asarray(target_quat, float))
        for _ in range(iters):
            pos, rot, jac = self.chain.jacobian(q)
            err = target_pos - pos
            if target_rot is not None:
                w = self.orientation_weight
                err = np.concatenate([err, w * rotation_error(target_rot, rot)], axis=-1)
                jac = np.concatenate([jac[:, :3], w * jac[:, 3:]], axis=1)
            else:
                jac = jac[:, :3]
            norm = np.linalg.norm(err, axis=-1, keepdims=True)
            active = norm[:, 0] >= tol_m
            if not active.any():
                break
            # Linearization holds only near q: walk towards far targets in bounded steps.
            err = err * np.minimum(1.0, self.max_err_per_iter / np.maximum(norm, 1e-300))
            jac_t = jac.transpose(0, 2, 1)
            jjt = jac @ jac_t + (self.damping**2) * np.eye(jac.shape[1])
            jjt_inv = np.linalg.inv(jjt)
            dq = (jac_t @ (jjt_inv @ err[..., None]))[..., 0]
            # The pseudo-inverse of the damped system gives the null-space projector.
            null = eye_n - jac_t @ jjt_inv @ jac
            dq += (null @ (self.nullspace_gain * (self.q_nominal - q))[..., None])[..., 0]
            q = np.where(active[:, None], np.clip(q + dq, self.q_lo, self.q_hi), q)
        return q[0] if single else q
