"""Batched kinematics of a serial chain of hinge joints, read from the MJCF.

One call computes forward kinematics, the site Jacobian and damped-least-squares IK steps
for any number of worlds at once (arrays with a leading batch axis), which the batched
simulator needs and MuJoCo's per-``MjData`` functions cannot give without a Python loop
over worlds. Written against the array API (:mod:`robot_rl.sim.arrays`): numpy arrays
run on the host (no torch, no ``MjData``, so the robot-side bridge can use it too), torch
tensors on their device.

The chain is taken from an ``MjModel``: for each controlled joint, its body's fixed pose
in the parent body (``body_pos``, ``body_quat``), the joint's anchor and axis in that body
(``jnt_pos``, ``jnt_axis``), and finally the site's fixed pose in its body, through any
joint-free bodies in between (the hand). The base is the fixed world pose of the first
joint's parent body. Tests compare every quantity against MuJoCo's own.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.sim.arrays import Array, array_namespace, as_float, const


def quat_to_mat(q: Array) -> Array:
    """Unit quaternions (..., 4) as (w, x, y, z) to rotation matrices (..., 3, 3)."""
    q = as_float(q)
    xp = array_namespace(q)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return xp.stack(
        [
            xp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
            xp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
            xp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=-2,
    )


def mat_to_quat(m: Array) -> Array:
    """Rotation matrices (..., 3, 3) to unit quaternions (..., 4), (w, x, y, z), w >= 0.

    Shepperd's method: each matrix uses the largest of the four candidate denominators, so
    no branch divides by a small number.
    """
    m = as_float(m)
    xp = array_namespace(m)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    cand = xp.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                     1 - m00 - m11 + m22], axis=-1)  # fmt: skip
    best = xp.argmax(cand, axis=-1)
    s = 2.0 * xp.sqrt(xp.clip(xp.max(cand, axis=-1), min=1e-300))
    d21, d02, d10 = (
        m[..., 2, 1] - m[..., 1, 2],
        m[..., 0, 2] - m[..., 2, 0],
        m[..., 1, 0] - m[..., 0, 1],
    )
    s21, s02, s10 = (
        m[..., 2, 1] + m[..., 1, 2],
        m[..., 0, 2] + m[..., 2, 0],
        m[..., 1, 0] + m[..., 0, 1],
    )
    candidates = [
        xp.stack([s / 4, d21 / s, d02 / s, d10 / s], axis=-1),
        xp.stack([d21 / s, s / 4, s10 / s, s02 / s], axis=-1),
        xp.stack([d02 / s, s10 / s, s / 4, s21 / s], axis=-1),
        xp.stack([d10 / s, s02 / s, s21 / s, s / 4], axis=-1),
    ]
    q = candidates[3]
    for i in (2, 1, 0):
        q = xp.where(best[..., None] == i, candidates[i], q)
    q = q / xp.linalg.vector_norm(q, axis=-1, keepdims=True)
    return xp.where(q[..., :1] < 0, -q, q)


def _homogeneous(rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rot, pos
    return t


def _frame_with_z(axis: np.ndarray) -> np.ndarray:
    """A rotation whose third column is the unit ``axis`` (so Rz in it turns about axis)."""
    z = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


class SerialChain:
    """Forward kinematics and Jacobians of one site over a chain of hinge joints.

    Args:
        model: the compiled model (read once; later changes to it are not seen).
        joint_names: the chain's hinge joints, base to tip; each joint's body must be a
            child of the previous joint's body.
        site: name of the site to place (the TCP).
    """

    def __init__(self, model: mujoco.MjModel, joint_names: tuple[str, ...], site: str) -> None:
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names]
        if min(ids) < 0:
            missing = [n for n, i in zip(joint_names, ids, strict=True) if i < 0]
            raise ValueError(f"MJCF model has no joints {missing}")
        bodies = [int(model.jnt_bodyid[j]) for j in ids]
        for j, name in zip(ids, joint_names, strict=True):
            if model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE:
                raise ValueError(f"joint '{name}' is not a hinge; SerialChain needs hinges")
        for parent, child, name in zip(bodies, bodies[1:], joint_names[1:], strict=False):
            if model.body_parentid[child] != parent:
                raise ValueError(f"joint '{name}': its body is not a child of the previous one")
        site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if site_id < 0:
            raise ValueError(f"MJCF model has no site '{site}'")

        # Every hinge becomes "fixed transform, then Rz(q)": a rotation about the joint's
        # axis through its anchor is Trans(a) A Rz(q) Aᵀ Trans(-a), with A a frame whose z is
        # the axis, and the fixed parts fold into the neighbouring transforms. So the chain
        # is base · pre[0] · Rz(q0) · pre[1] · Rz(q1) ... Rz(q_last) · tip.
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        base = int(model.body_parentid[bodies[0]])
        previous_post = _homogeneous(data.xmat[base].reshape(3, 3), data.xpos[base])
        pre = []
        for body, j in zip(bodies, ids, strict=True):
            frame = _frame_with_z(model.jnt_axis[j])
            anchor = model.jnt_pos[j]
            body_t = _homogeneous(quat_to_mat(model.body_quat[body]), model.body_pos[body])
            pre.append(previous_post @ body_t @ _homogeneous(frame, anchor))
            previous_post = _homogeneous(frame.T, -frame.T @ anchor)
        # The site's fixed pose in the last joint's body, through joint-free bodies.
        site_t = _homogeneous(quat_to_mat(model.site_quat[site_id]), model.site_pos[site_id])
        body = int(model.site_bodyid[site_id])
        while body != bodies[-1]:
            if model.body_jntnum[body] != 0:
                raise ValueError(f"site '{site}' is not rigidly attached to the last joint's body")
            site_t = _homogeneous(quat_to_mat(model.body_quat[body]), model.body_pos[body]) @ site_t
            body = int(model.body_parentid[body])
        self._pre = np.array(pre)  # (n, 4, 4)
        self._tip = previous_post @ site_t
        self.n_joints = len(ids)

    def forward(self, q: Array) -> tuple[Array, Array, Array, Array]:
        """Site pose and joint frames for joint positions ``q`` (N, n) in radians.

        ``q`` may be a numpy array (float64 result) or a torch tensor (result in its
        dtype, on its device).

        Returns:
            site position (N, 3), site rotation (N, 3, 3), joint anchors (N, n, 3) and
            joint axes (N, n, 3), all in the world frame.
        """
        q = as_float(q)
        if q.ndim == 1:
            q = q[None]
        xp = array_namespace(q)
        pre, tip = const(self._pre, q), const(self._tip, q)
        cos, sin = xp.cos(q), xp.sin(q)
        t = xp.broadcast_to(pre[0], (q.shape[0], 4, 4))
        anchors, axes = [], []
        for i in range(self.n_joints):
            if i:
                t = t @ pre[i]
            anchors.append(t[:, :3, 3])
            axes.append(t[:, :3, 2])
            # t @ Rz(q) mixes only the first two columns.
            c, s = cos[:, i, None], sin[:, i, None]
            x, y = t[:, :, 0], t[:, :, 1]
            t = xp.stack([c * x + s * y, c * y - s * x, t[:, :, 2], t[:, :, 3]], axis=-1)
        t = t @ tip
        return t[:, :3, 3], t[:, :3, :3], xp.stack(anchors, axis=1), xp.stack(axes, axis=1)

    def jacobian(self, q: Array) -> tuple[Array, Array, Array]:
        """Site position (N, 3), rotation (N, 3, 3) and Jacobian (N, 6, n): rows are the
        linear then angular velocity of the site in the world frame per joint velocity."""
        pos, rot, anchors, axes = self.forward(q)
        xp = array_namespace(pos)
        jac_v = xp.linalg.cross(axes, pos[:, None, :] - anchors)  # (N, n, 3)
        return pos, rot, xp.matrix_transpose(xp.concat([jac_v, axes], axis=-1))
