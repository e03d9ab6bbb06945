"""Batched kinematics of a serial chain of hinge joints, read from the MJCF.

One call computes forward kinematics, the site Jacobian and damped-least-squares IK steps
for any number of worlds at once (arrays with a leading batch axis), which the batched
simulator needs and MuJoCo's per-``MjData`` functions cannot give without a Python loop
over worlds. Written against the array API (:mod:`robot_rl.arrays`): numpy arrays
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

from robot_rl.arrays import Array, array_namespace, as_float, const

_EYE3 = np.eye(3)  # long-lived: ``const`` caches device copies by the array's identity


def quat_to_mat(q: Array) -> Array:
    """Unit quaternions (..., 4) as (w, x, y, z) to rotation matrices (..., 3, 3):
    ``R = (1 - 2|v|²) I + 2 v vᵀ + 2 w [v]ₓ`` with ``v = (x, y, z)``, in a few whole-array
    operations (each one a kernel launch on a GPU)."""
    q = as_float(q)
    xp = array_namespace(q)
    w, v = q[..., :1, None], q[..., 1:]  # (..., 1, 1), (..., 3)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = xp.zeros_like(x)
    skew = xp.reshape(
        xp.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1), (*x.shape, 3, 3)
    )  # [v]ₓ
    eye = const(_EYE3, q)
    diag = 1 - 2 * xp.sum(v * v, axis=-1)[..., None, None]
    return diag * eye + 2 * (v[..., :, None] * v[..., None, :] + w * skew)


def mat_to_quat(m: Array) -> Array:
    """Rotation matrices (..., 3, 3) to unit quaternions (..., 4), (w, x, y, z), w >= 0.

    Shepperd's method: each matrix uses the largest of the four candidate denominators, so
    no branch divides by a small number: row k of ``k4`` is ``4 q_k q``, and the row whose
    diagonal ``4 q_k²`` is largest is normalized (its norm is ``4 |q_k| >= 2``).
    """
    m = as_float(m)
    xp = array_namespace(m)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
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
    k4 = xp.reshape(
        xp.stack(
            [1 + m00 + m11 + m22, d21, d02, d10,
             d21, 1 + m00 - m11 - m22, s10, s02,
             d02, s10, 1 - m00 + m11 - m22, s21,
             d10, s02, s21, 1 - m00 - m11 + m22],
            axis=-1,
        ),
        (*m00.shape, 4, 4),
    )  # fmt: skip
    diag = xp.stack([k4[..., 0, 0], k4[..., 1, 1], k4[..., 2, 2], k4[..., 3, 3]], axis=-1)
    best = xp.argmax(diag, axis=-1)[..., None]
    q = k4[..., 3, :]
    for i in (2, 1, 0):
        q = xp.where(best == i, k4[..., i, :], q)
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
        pre, post = [], []
        for body, j in zip(bodies, ids, strict=True):
            frame = _frame_with_z(model.jnt_axis[j])
            anchor = model.jnt_pos[j]
            body_t = _homogeneous(quat_to_mat(model.body_quat[body]), model.body_pos[body])
            pre.append(previous_post @ body_t @ _homogeneous(frame, anchor))
            previous_post = _homogeneous(frame.T, -frame.T @ anchor)
            post.append(previous_post)
        # The site's fixed pose in the last joint's body, through joint-free bodies.
        site_t = _homogeneous(quat_to_mat(model.site_quat[site_id]), model.site_pos[site_id])
        body = int(model.site_bodyid[site_id])
        while body != bodies[-1]:
            if model.body_jntnum[body] != 0:
                raise ValueError(f"site '{site}' is not rigidly attached to the last joint's body")
            site_t = _homogeneous(quat_to_mat(model.body_quat[body]), model.body_pos[body]) @ site_t
            body = int(model.body_parentid[body])
        self._pre = np.array(pre)  # (n, 4, 4)
        # Joint frame i -> body i (the body's own frame, in which its geoms are placed).
        self._post = np.array(post)  # (n, 4, 4)
        self.bodies = tuple(bodies)
        self.base_pose = _homogeneous(data.xmat[base].reshape(3, 3), data.xpos[base])
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
        frames = self._frames(q)
        end = frames[:, -1] @ const(self._tip, q)
        return end[:, :3, 3], end[:, :3, :3], frames[:, :, :3, 3], frames[:, :, :3, 2]

    def _frames(self, q: Array) -> Array:
        """Joint frames (N, n, 4, 4) in the world: frame i is pre[0]·Rz(q0)···pre[i]·Rz(q_i)."""
        xp = array_namespace(q)
        pre = const(self._pre, q)
        # Every link's pre[i] · Rz(q_i) at once: Rz mixes only the first two columns, so
        # the product's columns are c·x + s·y, c·y − s·x, z, p of pre[i]. Built for all
        # joints in a few array operations, not a few per joint: on a GPU each operation
        # is a kernel launch, and these small arrays are launch-bound.
        c, s = xp.cos(q)[..., None], xp.sin(q)[..., None]  # (N, n, 1)
        x, y = pre[:, :, 0], pre[:, :, 1]  # (n, 4)
        shape = (q.shape[0], self.n_joints, 4)
        links = xp.stack(
            [c * x + s * y, c * y - s * x, xp.broadcast_to(pre[:, :, 2], shape),
             xp.broadcast_to(pre[:, :, 3], shape)],
            axis=-1,
        )  # fmt: skip
        # The chain, one matrix product per joint. Rz(q_i) leaves the z column (the
        # joint's axis) and the position column (its anchor) of frame i unchanged.
        t = links[:, 0]
        frames = [t]
        for i in range(1, self.n_joints):
            t = t @ links[:, i]
            frames.append(t)
        return xp.stack(frames, axis=1)

    def body_poses(self, q: Array) -> Array:
        """World poses (N, n, 4, 4) of the chain's joint bodies (the body of joint i, in
        its own frame, where its geoms are placed), for joint positions (N, n)."""
        q = as_float(q)
        if q.ndim == 1:
            q = q[None]
        frames = self._frames(q)  # (N, n, 4, 4)
        return frames @ const(self._post, q)

    def jacobian(self, q: Array) -> tuple[Array, Array, Array]:
        """Site position (N, 3), rotation (N, 3, 3) and Jacobian (N, 6, n): rows are the
        linear then angular velocity of the site in the world frame per joint velocity."""
        pos, rot, anchors, axes = self.forward(q)
        xp = array_namespace(pos)
        jac_v = xp.linalg.cross(axes, pos[:, None, :] - anchors)  # (N, n, 3)
        return pos, rot, xp.matrix_transpose(xp.concat([jac_v, axes], axis=-1))
