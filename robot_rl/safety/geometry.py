"""The Cartesian and distance half of the safety filter, from the robot's MJCF.

Read once at construction: the arm's kinematic chain (:class:`robot_rl.kinematics.SerialChain`)
and its collision geoms, each placed in the frame of the chain body it rides on (geoms on
joint-free descendants, such as the hand, ride on the last link; the fingers' slide
joints are taken fully open, the widest the hand gets). Capsules and spheres are exact;
cylinders are taken as capsules, boxes by their corners against the table and by the
smallest capsule around them against other links, so every distance here is at most the
true one.

Checked for any number of postures at once (arrays ``(..., n)``, numpy or torch):

- ``workspace``: the TCP and the corners of the finger pads inside the envelope's box;
- ``cartesian_speed``: the TCP's speed from the current commanded posture, over ``dt``;
- ``table``: every geom of the moving arm at least its clearance above the table top
  (finger pads: their own, smaller clearance);
- ``self_distance``: every pair of geoms on links that are not neighbours in the chain
  at least ``link_clearance_m`` apart, except the description's ``ignored_link_pairs``
  (pairs already closer at the home posture are part of the arm's build, not a
  collision, and are left out too).
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.arrays import Array, array_namespace, as_float, clip, const, to_numpy
from robot_rl.kinematics import SerialChain
from robot_rl.safety.description import Envelope, RobotDescription

_BOX_CORNERS = np.array(
    [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64
)


def _pose(pos: np.ndarray, mat: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = mat.reshape(3, 3), pos
    return t


class ArmGeometry:
    """See the module docstring.

    Args:
        description: the robot's description (needs ``mjcf`` and ``tcp_site``).
        envelope: the workspace box and speed scale.
        dt: the period between commands in seconds (for the Cartesian speed).
    """

    def __init__(self, description: RobotDescription, envelope: Envelope, dt: float) -> None:
        where = str(description.path)
        if description.tcp_site is None:
            raise ValueError(f"{where}: the Cartesian constraints need 'tcp_site'")
        model = mujoco.MjModel.from_xml_path(str(description.mjcf_path))
        lim = description.limits
        self.chain = SerialChain(model, lim.joint_names, description.tcp_site)
        self.dt = dt
        self.box_min, self.box_max = envelope.workspace_min_m, envelope.workspace_max_m
        self.speed_max = description.limits.cartesian_vel_max_m_s * envelope.speed_scale
        self.table_z = description.table_height_m
        clear_arm = description.table_clearance_m
        clear_finger = description.finger_table_clearance_m
        self.link_clearance = description.link_clearance_m

        # Place every collision geom in its chain body's frame, at the home posture with
        # the fingers open (their slide joints at the top of their range).
        data = mujoco.MjData(model)
        for name, q in zip(lim.joint_names, lim.home_joint_pos_rad, strict=True):
            data.qpos[
                model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)]
            ] = q
        chain_joints = {
            mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in lim.joint_names
        }
        for j in range(model.njnt):
            if j not in chain_joints and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE:
                data.qpos[model.jnt_qposadr[j]] = model.jnt_range[j, 1]
        mujoco.mj_kinematics(model, data)
        slot_of = {b: i + 1 for i, b in enumerate(self.chain.bodies)}  # 0: the fixed base
        finger_bodies = set()
        for j in range(model.njnt):
            if j not in chain_joints and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE:
                finger_bodies.add(int(model.jnt_bodyid[j]))

        seg_slot, seg_body, seg_a, seg_b, seg_r = [], [], [], [], []
        pt_slot, pt_local, pt_clear = [], [], []
        pad_slot, pad_local = [], []
        for g in range(model.ngeom):
            if not (model.geom_contype[g] or model.geom_conaffinity[g]):
                continue
            body, finger = int(model.geom_bodyid[g]), False
            while body not in slot_of and body != 0:
                finger = finger or body in finger_bodies
                body = int(model.body_parentid[body])
            slot = slot_of.get(body, 0)
            parent = _pose(data.xpos[body], data.xmat[body]) if slot else self.chain.base_pose
            rel = np.linalg.inv(parent) @ _pose(data.geom_xpos[g], data.geom_xmat[g])
            size, kind = model.geom_size[g], model.geom_type[g]
            if kind in (mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_CYLINDER):
                ends, radius = np.array([[0, 0, -size[1]], [0, 0, size[1]]]), size[0]
                corners = ends
            elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
                ends, radius = np.zeros((2, 3)), size[0]
                corners = ends[:1]
            elif kind == mujoco.mjtGeom.mjGEOM_BOX:
                axis = int(np.argmax(size))
                ends = np.zeros((2, 3))
                ends[:, axis] = (-size[axis], size[axis])
                radius = float(np.sqrt(np.sum(np.delete(size, axis) ** 2)))
                corners = _BOX_CORNERS * size
            else:
                name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g)
                raise ValueError(
                    f"sim_assets/{description.mjcf}: collision geom '{name}' has a type the "
                    "safety filter does not model (capsule, cylinder, sphere or box only)"
                )
            seg_slot.append(slot)
            seg_body.append(int(model.geom_bodyid[g]))
            a, b = _apply(rel, ends)
            seg_a.append(a), seg_b.append(b), seg_r.append(radius)
            if slot:  # the base does not move: its distance to the table is its build
                box_like = kind == mujoco.mjtGeom.mjGEOM_BOX
                for p in _apply(rel, corners):
                    pt_slot.append(slot), pt_local.append(p)
                    pt_clear.append(
                        (clear_finger if finger else clear_arm) + (0.0 if box_like else radius)
                    )
            if finger:
                pad_slot += [slot] * len(corners)
                pad_local += list(_apply(rel, corners))
        self._seg_slot = np.array(seg_slot)
        self._seg_a, self._seg_b = np.array(seg_a), np.array(seg_b)
        self._seg_r = np.array(seg_r)
        self._pt_slot, self._pt_local = np.array(pt_slot), np.array(pt_local)
        self._pt_clear = np.array(pt_clear)
        self._pad_slot, self._pad_local = np.array(pad_slot, dtype=np.int64), np.array(pad_local)
        # Pairs on links two or more apart in the chain, not already touching at home.
        i, j = np.triu_indices(len(seg_slot), k=1)
        far = np.abs(self._seg_slot[i] - self._seg_slot[j]) >= 2
        ignored = {
            frozenset(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in pair)
            for pair in description.ignored_link_pairs
        }
        body = np.array(seg_body)
        far &= np.array(
            [frozenset((body[a], body[b])) not in ignored for a, b in zip(i, j, strict=True)]
        )
        self._pair_i, self._pair_j = i[far], j[far]
        home = np.asarray(lim.home_joint_pos_rad)[None]
        at_home = to_numpy(self.pair_distances(home))[0]
        keep = at_home >= self.link_clearance
        self._pair_i, self._pair_j = self._pair_i[keep], self._pair_j[keep]
        self.pairs_left_out = int((~keep).sum())

    # --- quantities ------------------------------------------------------------------------
    def _slots(self, q: Array) -> tuple[Array, tuple[int, ...]]:
        """Poses (N, n+1, 4, 4) of the base (slot 0) and the chain bodies."""
        q = as_float(q)
        xp = array_namespace(q)
        lead = tuple(q.shape[:-1])
        flat = xp.reshape(q, (-1, q.shape[-1]))
        bodies = self.chain.body_poses(flat)
        base = xp.broadcast_to(
            const(self.chain.base_pose, flat)[None, None], (flat.shape[0], 1, 4, 4)
        )
        return xp.concat([base, bodies], axis=1), lead

    @staticmethod
    def _place(poses: Array, slots: np.ndarray, local: np.ndarray) -> Array:
        xp = array_namespace(poses)
        t = xp.take(poses, _index(slots, poses), axis=1)
        loc = const(local, poses)
        return (t[..., :3, :3] @ loc[None, :, :, None])[..., 0] + t[..., :3, 3]

    def tcp(self, q: Array) -> Array:
        """TCP positions (..., 3)."""
        q = as_float(q)
        xp = array_namespace(q)
        flat = xp.reshape(q, (-1, q.shape[-1]))
        return xp.reshape(self.chain.forward(flat)[0], (*q.shape[:-1], 3))

    def pair_distances(self, q: Array) -> Array:
        """Surface distances (..., pairs) between the checked geom pairs (capsules)."""
        poses, lead = self._slots(q)
        return array_namespace(poses).reshape(self._pair_distances_at(poses), (*lead, -1))

    def table_margins(self, q: Array) -> Array:
        """Height above the table minus the clearance, per checked point (..., points)."""
        poses, lead = self._slots(q)
        return array_namespace(poses).reshape(self._table_margins_at(poses), (*lead, -1))

    def _pair_distances_at(self, poses: Array) -> Array:
        xp = array_namespace(poses)
        a = self._place(poses, self._seg_slot, self._seg_a)
        b = self._place(poses, self._seg_slot, self._seg_b)
        ii, jj = _index(self._pair_i, poses), _index(self._pair_j, poses)
        d = _segment_distance(
            xp.take(a, ii, axis=1), xp.take(b, ii, axis=1),
            xp.take(a, jj, axis=1), xp.take(b, jj, axis=1),
        )  # fmt: skip
        return d - const(self._seg_r[self._pair_i] + self._seg_r[self._pair_j], d)

    def _table_margins_at(self, poses: Array) -> Array:
        z = self._place(poses, self._pt_slot, self._pt_local)[..., 2]
        return z - self.table_z - const(self._pt_clear, z)

    def violations(self, q_next: Array, q_rest: Array, tcp_now: Array) -> dict[str, Array]:
        """Which constraints the next posture or the braking rest posture breaks
        (``(...,)`` bools; ``tcp_now`` (W, 3) is the current commanded TCP)."""
        xp = array_namespace(q_next)
        both = xp.stack([q_next, q_rest])
        poses, lead = self._slots(both)
        shape = lead
        tcp = xp.reshape(self.chain.forward(xp.reshape(both, (-1, both.shape[-1])))[0], (*shape, 3))
        points = xp.concat(
            [
                tcp[..., None, :],
                xp.reshape(self._place(poses, self._pad_slot, self._pad_local), (*shape, -1, 3)),
            ],
            axis=-2,
        )
        lo, hi = const(self.box_min, points), const(self.box_max, points)
        outside = xp.any((points < lo) | (points > hi), axis=(-2, -1))
        speed = xp.linalg.vector_norm(tcp[0] - tcp_now, axis=-1) / self.dt
        out = {
            "workspace": outside[0] | outside[1],
            "cartesian_speed": speed > self.speed_max,
        }
        # The body poses of both postures serve every check (one kinematics pass).
        if self.table_z is not None:
            low = xp.reshape(xp.any(self._table_margins_at(poses) < 0, axis=-1), shape)
            out["table"] = low[0] | low[1]
        if self._pair_i.size:
            close = xp.any(self._pair_distances_at(poses) < self.link_clearance, axis=-1)
            close = xp.reshape(close, shape)
            out["self_distance"] = close[0] | close[1]
        return out


def _apply(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ pose[:3, :3].T + pose[:3, 3]


def _index(idx: np.ndarray, like: Array) -> Array:
    """An integer index array for ``like``'s library and device."""
    if isinstance(like, np.ndarray):
        return idx
    xp = array_namespace(like)
    return const(idx.astype(np.int64), xp.zeros(1, dtype=xp.int64, device=like.device))


def _dot(x: Array, y: Array) -> Array:
    """Dot products over a last axis of 3, written out: a reduction over so short an
    axis costs more than the three products."""
    return x[..., 0] * y[..., 0] + x[..., 1] * y[..., 1] + x[..., 2] * y[..., 2]


def _segment_distance(p1: Array, q1: Array, p2: Array, q2: Array) -> Array:
    """Distance between segments p1-q1 and p2-q2 (..., 3) -> (...): the closest points
    with both parameters clamped to [0, 1] (Ericson, Real-Time Collision Detection 5.1.9)."""
    xp = array_namespace(p1)
    eps = 1e-12
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a = _dot(d1, d1)
    e = _dot(d2, d2)
    f = _dot(d2, r)
    c = _dot(d1, r)
    b = _dot(d1, d2)
    a_safe, e_safe = clip(a, eps, None), clip(e, eps, None)
    denom = a * e - b * b
    s = xp.where(denom > eps, clip((b * f - c * e) / clip(denom, eps, None), 0.0, 1.0), 0.0)
    t = (b * s + f) / e_safe
    s = xp.where(
        t < 0,
        clip(-c / a_safe, 0.0, 1.0),
        xp.where(t > 1, clip((b - c) / a_safe, 0.0, 1.0), s),
    )
    t = clip(t, 0.0, 1.0)
    # Degenerate segments (spheres): a point against the other segment.
    s = xp.where(e > eps, s, clip(-c / a_safe, 0.0, 1.0))
    s = xp.where(a > eps, s, 0.0)
    t = xp.where(e > eps, t, 0.0)
    diff = (p1 + d1 * s[..., None]) - (p2 + d2 * t[..., None])
    return xp.sqrt(_dot(diff, diff))
