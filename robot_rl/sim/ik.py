"""Differential inverse kinematics for the arm: damped least squares with a posture task,
batched over worlds, on numpy arrays (host, float64; no ``MjData``, so the robot-side bridge
runs it too) or torch tensors (their device; see :mod:`robot_rl.arrays`).

Each iteration linearizes the TCP pose at the current joint guess, solves

    dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e  +  (I - J⁺ J) k (q_nominal - q)

for the 6-D pose error ``e`` (position, orientation), and clips the result to the joint
range shrunk by a margin, so targets never leave the joint limits. Every world is solved
independently (a world's result never depends on the others in the batch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_rl.arrays import Array, array_namespace, as_float, const, device_of, is_numpy_array
from robot_rl.kinematics import SerialChain, quat_to_mat


def quat_error(target: Array, current: Array) -> Array:
    """Rotation vectors (..., 3), world frame, that turn ``current`` into ``target``
    (quaternions (..., 4), w x y z): the log map of target ⊗ current⁻¹."""
    target, current = as_float(target), as_float(current)
    xp = array_namespace(target, current)
    tw, tv = target[..., :1], target[..., 1:]
    cw, cv = current[..., :1], -current[..., 1:]  # conjugate of current
    w = tw * cw - xp.sum(tv * cv, axis=-1, keepdims=True)
    v = tw * cv + cw * tv + xp.linalg.cross(tv, cv)
    # q and -q are one rotation: take the short way round.
    w, v = xp.where(w < 0, -w, w), xp.where(w < 0, -v, v)
    norm_v = xp.linalg.vector_norm(v, axis=-1, keepdims=True)
    angle = 2.0 * xp.atan2(norm_v, w)
    scale = xp.where(norm_v > 1e-12, angle / xp.clip(norm_v, min=1e-12), 2.0)
    return v * scale


def rotation_error(target: Array, current: Array) -> Array:
    """Rotation vectors (..., 3), world frame, that turn rotation matrices ``current`` into
    ``target`` (..., 3, 3): the log map of target · currentᵀ, via its axis and angle."""
    xp = array_namespace(target, current)
    r = target @ xp.matrix_transpose(current)
    vee = xp.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                    r[..., 1, 0] - r[..., 0, 1]], axis=-1)  # fmt: skip
    cos = xp.clip((r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2] - 1.0) / 2.0, min=-1.0, max=1.0)
    angle = xp.acos(cos)
    sin = xp.sin(angle)[..., None]
    # vee = 2 sin(angle) axis; near 0 the ratio tends to 1/2. (Near pi the axis is
    # ill-conditioned; IK steps are bounded, so errors stay far from pi.)
    scale = xp.where(sin > 1e-9, angle[..., None] / (2.0 * xp.clip(sin, min=1e-9)), 0.5)
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
        self._eye_n = np.eye(len(self.q_nominal))
        self._eye_task = {3: np.eye(3), 6: np.eye(6)}

    def forward(self, q: Array) -> tuple[Array, Array]:
        """TCP positions (N, 3) and rotation matrices (N, 3, 3) at joint positions (N, n)."""
        pos, rot, _, _ = self.chain.forward(q)
        return pos, rot

    def clip(self, q: Array) -> Array:
        """Joint positions clipped to the range shrunk by the margin."""
        q = as_float(q)
        xp = array_namespace(q)
        return xp.clip(q, min=const(self.q_lo, q), max=const(self.q_hi, q))

    def solve(
        self,
        q_init: Array,
        target_pos: Array,
        target_quat: Array | None = None,
        iters: int = 1,
        tol_m: float = 1e-4,
        *,
        target_rot: Array | None = None,
    ) -> Array:
        """Joint positions that move the site towards ``target_pos`` (and orientation).

        numpy inputs are solved in float64 on the host; torch tensors in their dtype on
        their device (targets are converted to ``q_init``'s library).

        Args:
            q_init: starting guesses (N, n) or (n,) (usually the last commanded targets).
            target_pos: desired site positions, world frame, metres: (N, 3) or (3,).
            target_quat: desired orientation(s) (w, x, y, z), (N, 4) or (4,); None leaves
                orientation free.
            iters: iterations; one or two per control step suffice for small moves.
            tol_m: a world whose (weighted) pose error is below this stops moving.
            target_rot: the desired orientation(s) as rotation matrices, (N, 3, 3) or
                (3, 3), in place of ``target_quat`` (for a constant one kept on the
                device, which then is not converted on every call).

        Returns:
            Joint positions inside the joint range shrunk by the margin, shaped like
            ``q_init``.
        """
        q_init = as_float(q_init)
        single = q_init.ndim == 1
        q = self.clip(q_init[None] if single else q_init)
        xp = array_namespace(q)
        n = q.shape[0]
        target_pos = xp.broadcast_to(_like(target_pos, q), (n, 3))
        if target_quat is not None:
            if target_rot is not None:
                raise ValueError("IK.solve: give target_quat or target_rot, not both")
            target_rot = quat_to_mat(_like(target_quat, q))
        elif target_rot is not None:
            target_rot = _like(target_rot, q)
        eye_n, q_nominal = const(self._eye_n, q), const(self.q_nominal, q)
        lo, hi = const(self.q_lo, q), const(self.q_hi, q)
        for _ in range(iters):
            pos, rot, jac = self.chain.jacobian(q)
            err = target_pos - pos
            if target_rot is not None:
                w = self.orientation_weight
                err = xp.concat([err, w * rotation_error(target_rot, rot)], axis=-1)
                jac = xp.concat([jac[:, :3], w * jac[:, 3:]], axis=1)
            else:
                jac = jac[:, :3]
            norm = xp.linalg.vector_norm(err, axis=-1, keepdims=True)
            active = norm[:, 0] >= tol_m
            # Linearization holds only near q: walk towards far targets in bounded steps.
            err = err * xp.clip(self.max_err_per_iter / xp.clip(norm, min=1e-300), max=1.0)
            jac_t = xp.matrix_transpose(jac)
            eye_task = const(self._eye_task[jac.shape[1]], q)
            jjt_inv = _inv(jac @ jac_t + (self.damping**2) * eye_task)
            dq = (jac_t @ (jjt_inv @ err[..., None]))[..., 0]
            # The pseudo-inverse of the damped system gives the null-space projector.
            null = eye_n - jac_t @ jjt_inv @ jac
            dq = dq + (null @ (self.nullspace_gain * (q_nominal - q))[..., None])[..., 0]
            q = xp.where(active[:, None], xp.clip(q + dq, min=lo, max=hi), q)
        return q[0] if single else q


def _inv(a: Array) -> Array:
    """Inverse of (damped, so always invertible) matrices. For tensors, without the
    singularity check of ``linalg.inv``, which on a GPU waits for the device."""
    if is_numpy_array(a):
        return np.linalg.inv(a)
    import torch

    return torch.linalg.inv_ex(a).inverse


def _like(x: Any, like: Array) -> Array:
    """``x`` (array or sequence) as an array of ``like``'s library, dtype and device."""
    if is_numpy_array(like):
        return np.asarray(x, dtype=np.float64)
    xp = array_namespace(like)
    if isinstance(x, np.ndarray):
        return const(x, like)
    return xp.asarray(x, dtype=like.dtype, device=device_of(like))
