"""The Cartesian and distance checks of :mod:`robot_rl.safety.geometry`, compiled for one
posture at a time.

:class:`~robot_rl.safety.geometry.ArmGeometry` checks batches of postures in array code,
which a single arm at its driver rate cannot afford (each numpy operation costs about a
microsecond). Here the same checks are scalar numba code, called from the compiled
filter (:mod:`robot_rl.safety.compiled`) once per world and period.

:func:`pack` copies what the checks read out of an ``ArmGeometry`` into one
:class:`GeometryPack`, a named tuple of contiguous arrays and scalars that passes into
njit code as a single argument. The kernels follow the array code step for step: joint
frames ``pre[0]·Rz(q0)·pre[1]·Rz(q1)···``, body poses ``frame_i·post_i`` (slot 0 the
fixed base), points ``R·local + p``, and Ericson's segment distance with the same eps and
the same order of clamps. Every transform is rigid (last row ``0 0 0 1``), so only the
top three rows are multiplied; the terms left out are exact zeros. The results agree with
the array code to rounding (~1e-12), and the flags are the same but where a margin lies
within rounding of its threshold. A flag already raised is not checked again, and the
rest posture is skipped when every flag it could raise is already raised.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from robot_rl.safety.geometry import ArmGeometry

_EPS = 1e-12  # as geometry._segment_distance


class GeometryPack(NamedTuple):
    """An :class:`~robot_rl.safety.geometry.ArmGeometry`'s data, as :func:`pack` gives it."""

    pre: np.ndarray  # (n, 4, 4) fixed transform before joint i's Rz
    post: np.ndarray  # (n, 4, 4) joint frame i -> body i
    tip: np.ndarray  # (4, 4) last joint frame -> TCP
    base_pose: np.ndarray  # (4, 4) the fixed base (slot 0)
    seg_slot: np.ndarray  # (S,) int64 slot each capsule rides on
    seg_a: np.ndarray  # (S, 3) capsule axis ends in their slot's frame
    seg_b: np.ndarray  # (S, 3)
    seg_r: np.ndarray  # (S,) radii
    pt_slot: np.ndarray  # (P,) int64 table points
    pt_local: np.ndarray  # (P, 3)
    pt_clear: np.ndarray  # (P,) clearance each point keeps above the table
    has_table: bool  # False: no table check (table_z is then 0.0 and unused)
    table_z: float
    pad_slot: np.ndarray  # (K,) int64 finger-pad corners (workspace check)
    pad_local: np.ndarray  # (K, 3)
    pair_i: np.ndarray  # (M,) int64 checked capsule pairs
    pair_j: np.ndarray  # (M,) int64
    link_clearance: float
    box_min: np.ndarray  # (3,) workspace box
    box_max: np.ndarray  # (3,)
    speed_max: float  # m/s
    dt: float  # s


def pack(geo: ArmGeometry) -> GeometryPack:
    """Everything the compiled checks read from ``geo``, as contiguous float64/int64."""
    chain = geo.chain
    last_rows = [chain._pre[:, 3], chain._post[:, 3], chain._tip[3], chain.base_pose[3]]
    if not all((r == (0.0, 0.0, 0.0, 1.0)).all() for r in last_rows):
        raise ValueError("the chain's transforms are not rigid (last row 0 0 0 1)")

    def f(x: np.ndarray, *shape: int) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.float64).reshape(shape or np.shape(x))

    def i(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x, dtype=np.int64).reshape(-1)

    return GeometryPack(
        pre=f(chain._pre), post=f(chain._post), tip=f(chain._tip), base_pose=f(chain.base_pose),
        seg_slot=i(geo._seg_slot), seg_a=f(geo._seg_a, -1, 3), seg_b=f(geo._seg_b, -1, 3),
        seg_r=f(geo._seg_r, -1),
        pt_slot=i(geo._pt_slot), pt_local=f(geo._pt_local, -1, 3), pt_clear=f(geo._pt_clear, -1),
        has_table=geo.table_z is not None,
        table_z=float(geo.table_z) if geo.table_z is not None else 0.0,
        pad_slot=i(geo._pad_slot), pad_local=f(geo._pad_local, -1, 3),
        pair_i=i(geo._pair_i), pair_j=i(geo._pair_j), link_clearance=float(geo.link_clearance),
        box_min=f(geo.box_min, 3), box_max=f(geo.box_max, 3),
        speed_max=float(geo.speed_max), dt=float(geo.dt),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _clip(x, lo, hi):  # np.clip: NaN propagates
    if x < lo:
        x = lo
    if x > hi:
        x = hi
    return x


@njit(cache=True)
def _frames(q, pk, fr):
    """Joint frames (top rows, (n, 3, 4)) into ``fr``: frame i = frame i-1 · pre[i]·Rz(q_i),
    whose columns are c·x + s·y, c·y − s·x, z, p of pre[i]."""
    pre = pk.pre
    for k in range(pre.shape[0]):
        c, s = math.cos(q[k]), math.sin(q[k])
        for col in range(4):
            if col == 0:
                l0 = c * pre[k, 0, 0] + s * pre[k, 0, 1]
                l1 = c * pre[k, 1, 0] + s * pre[k, 1, 1]
                l2 = c * pre[k, 2, 0] + s * pre[k, 2, 1]
            elif col == 1:
                l0 = c * pre[k, 0, 1] - s * pre[k, 0, 0]
                l1 = c * pre[k, 1, 1] - s * pre[k, 1, 0]
                l2 = c * pre[k, 2, 1] - s * pre[k, 2, 0]
            else:
                l0, l1, l2 = pre[k, 0, col], pre[k, 1, col], pre[k, 2, col]
            if k == 0:
                fr[0, 0, col], fr[0, 1, col], fr[0, 2, col] = l0, l1, l2
                continue
            for r in range(3):
                v = fr[k - 1, r, 0] * l0 + fr[k - 1, r, 1] * l1 + fr[k - 1, r, 2] * l2
                if col == 3:
                    v += fr[k - 1, r, 3]
                fr[k, r, col] = v


@njit(cache=True)
def _bodies(pk, fr, poses):
    """Slot poses (n+1, 3, 4) into ``poses``: the base, then frame i · post[i]."""
    post = pk.post
    poses[0] = pk.base_pose[:3]
    for k in range(post.shape[0]):
        for r in range(3):
            for col in range(4):
                v = fr[k, r, 0] * post[k, 0, col] + fr[k, r, 1] * post[k, 1, col]
                v += fr[k, r, 2] * post[k, 2, col]
                if col == 3:
                    v += fr[k, r, 3]
                poses[k + 1, r, col] = v


@njit(cache=True, inline="always")
def _place(poses, slot, local, r):
    """Row ``r`` (x, y or z) of a slot-local point in the world: R·local + p."""
    t = poses[slot]
    return (t[r, 0] * local[0] + t[r, 1] * local[1] + t[r, 2] * local[2]) + t[r, 3]


@njit(cache=True)
def _tcp(pk, fr, out):
    n, tip = fr.shape[0], pk.tip
    for r in range(3):
        v = fr[n - 1, r, 0] * tip[0, 3] + fr[n - 1, r, 1] * tip[1, 3]
        out[r] = v + fr[n - 1, r, 2] * tip[2, 3] + fr[n - 1, r, 3]


@njit(cache=True)
def _segment_distance(ends, i, j):
    """As geometry._segment_distance, between segments ``ends[i]`` and ``ends[j]`` (2, 3),
    in scalars (array temporaries would be allocations in the innermost loop)."""
    p1x, p1y, p1z = ends[i, 0, 0], ends[i, 0, 1], ends[i, 0, 2]
    p2x, p2y, p2z = ends[j, 0, 0], ends[j, 0, 1], ends[j, 0, 2]
    d1x, d1y, d1z = ends[i, 1, 0] - p1x, ends[i, 1, 1] - p1y, ends[i, 1, 2] - p1z
    d2x, d2y, d2z = ends[j, 1, 0] - p2x, ends[j, 1, 1] - p2y, ends[j, 1, 2] - p2z
    rx, ry, rz = p1x - p2x, p1y - p2y, p1z - p2z
    a = d1x * d1x + d1y * d1y + d1z * d1z
    e = d2x * d2x + d2y * d2y + d2z * d2z
    f = d2x * rx + d2y * ry + d2z * rz
    c = d1x * rx + d1y * ry + d1z * rz
    b = d1x * d2x + d1y * d2y + d1z * d2z
    a_safe, e_safe = _clip(a, _EPS, np.inf), _clip(e, _EPS, np.inf)
    denom = a * e - b * b
    s = _clip((b * f - c * e) / _clip(denom, _EPS, np.inf), 0.0, 1.0) if denom > _EPS else 0.0
    t = (b * s + f) / e_safe
    if t < 0:
        s = _clip(-c / a_safe, 0.0, 1.0)
    elif t > 1:
        s = _clip((b - c) / a_safe, 0.0, 1.0)
    t = _clip(t, 0.0, 1.0)
    if not e > _EPS:  # degenerate segments (spheres): a point against the other segment
        s = _clip(-c / a_safe, 0.0, 1.0)
        t = 0.0
    if not a > _EPS:
        s = 0.0
    x = (p1x + d1x * s) - (p2x + d2x * t)
    y = (p1y + d1y * s) - (p2y + d2y * t)
    z = (p1z + d1z * s) - (p2z + d2z * t)
    return math.sqrt(x * x + y * y + z * z)


@njit(cache=True)
def _outside(pk, x, y, z):
    lo, hi = pk.box_min, pk.box_max
    return x < lo[0] or y < lo[1] or z < lo[2] or x > hi[0] or y > hi[1] or z > hi[2]


@njit(cache=True)
def _check(pk, tcp, poses, ends, workspace, table, close):
    """The posture's flags, given its TCP and slot poses; flags already True stay so."""
    if not workspace:
        workspace = _outside(pk, tcp[0], tcp[1], tcp[2])
        for k in range(pk.pad_slot.shape[0]):
            if workspace:
                break
            s, loc = pk.pad_slot[k], pk.pad_local[k]
            x, y = _place(poses, s, loc, 0), _place(poses, s, loc, 1)
            workspace = _outside(pk, x, y, _place(poses, s, loc, 2))
    if not table and pk.has_table:
        for k in range(pk.pt_slot.shape[0]):
            z = _place(poses, pk.pt_slot[k], pk.pt_local[k], 2)
            if z - pk.table_z - pk.pt_clear[k] < 0:
                table = True
                break
    if not close and pk.pair_i.shape[0]:
        for g in range(pk.seg_slot.shape[0]):
            for r in range(3):
                ends[g, 0, r] = _place(poses, pk.seg_slot[g], pk.seg_a[g], r)
                ends[g, 1, r] = _place(poses, pk.seg_slot[g], pk.seg_b[g], r)
        for m in range(pk.pair_i.shape[0]):
            i, j = pk.pair_i[m], pk.pair_j[m]
            d = _segment_distance(ends, i, j)
            if d - (pk.seg_r[i] + pk.seg_r[j]) < pk.link_clearance:
                close = True
                break
    return workspace, table, close


@njit(cache=True)
def tcp_one(q, pk):
    """TCP position (3,) for joint positions ``q`` (n,): ``geo.tcp(q[None])[0]``."""
    fr = np.empty((pk.pre.shape[0], 3, 4))
    out = np.empty(3)
    _frames(q, pk, fr)
    _tcp(pk, fr, out)
    return out


@njit(cache=True)
def violations_one(q_next, q_rest, tcp_now, pk):
    """(workspace, cartesian_speed, table, self_distance) for one world, as
    ``ArmGeometry.violations(q_next[None], q_rest[None], tcp_now[None])`` (a check the
    geometry lacks, no table or no pairs, is False)."""
    n = pk.pre.shape[0]
    fr, poses = np.empty((n, 3, 4)), np.empty((n + 1, 3, 4))
    ends, tcp = np.empty((pk.seg_slot.shape[0], 2, 3)), np.empty(3)
    _frames(q_next, pk, fr)
    _tcp(pk, fr, tcp)
    dx, dy, dz = tcp[0] - tcp_now[0], tcp[1] - tcp_now[1], tcp[2] - tcp_now[2]
    speed = math.sqrt(dx * dx + dy * dy + dz * dz) / pk.dt > pk.speed_max
    _bodies(pk, fr, poses)
    workspace, table, close = _check(pk, tcp, poses, ends, False, False, False)
    if not (workspace and (table or not pk.has_table) and (close or not pk.pair_i.shape[0])):
        _frames(q_rest, pk, fr)
        _tcp(pk, fr, tcp)
        _bodies(pk, fr, poses)
        workspace, table, close = _check(pk, tcp, poses, ends, workspace, table, close)
    return workspace, speed, table, close


@njit(cache=True)
def _violations_batch(q_next, q_rest, tcp_now, pk, out):
    for w in range(q_next.shape[0]):
        out[w, 0], out[w, 1], out[w, 2], out[w, 3] = violations_one(
            q_next[w], q_rest[w], tcp_now[w], pk
        )


def violations_batch(
    q_next: np.ndarray, q_rest: np.ndarray, tcp_now: np.ndarray, pk: GeometryPack
) -> np.ndarray:
    """:func:`violations_one` over worlds: (W, n), (W, n), (W, 3) -> (W, 4) bools."""
    out = np.zeros((len(q_next), 4), dtype=np.bool_)
    args = (np.ascontiguousarray(a, dtype=np.float64) for a in (q_next, q_rest, tcp_now))
    _violations_batch(*args, pk, out)
    return out
