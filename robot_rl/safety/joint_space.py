"""The joint-space half of the safety filter: position (with margin), velocity,
acceleration and jerk limits, and the feasible stop, per joint.

A new command is a choice of the next acceleration (see :mod:`robot_rl.safety.braking`).
The command's own acceleration is first clipped to the box the jerk, acceleration and
velocity limits leave this period. If the braking trajectory from the resulting state
leaves the position range or the velocity limit, the filter searches along the segment
from the braking policy's own acceleration (always admissible) towards the clipped one,
and keeps the admissible point closest to the command: a grid of ``GRID`` points, then a
finer grid inside the bracket it found.

**A state already outside a limit** (a robot switched on outside the margin, an envelope
that just shrank) is never made worse: the admissible set is widened to what the
braking policy itself reaches from there, so the arm may move back in but not further
out, and brakes within its acceleration and jerk limits meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_rl.arrays import Array, array_namespace, clip, const
from robot_rl.safety.braking import (
    Extremes,
    JointBounds,
    accel_window,
    brake_accel,
    brake_extremes,
)

#: Grid points per search pass (two passes: resolution 1 / GRID**2 of the segment).
GRID = 8


@dataclass
class Motion:
    """A commanded trajectory's last point: position, velocity and acceleration, each
    ``(..., n)``, as finite differences of the last three commands."""

    q: Array
    v: Array
    a: Array

    @classmethod
    def from_commands(cls, c1: Array, c2: Array, c3: Array, dt: float) -> Motion:
        v1, v0 = (c1 - c2) / dt, (c2 - c3) / dt
        return cls(c1, v1, (v1 - v0) / dt)

    def step(self, accel: Array, dt: float) -> Motion:
        v = self.v + accel * dt
        return Motion(self.q + v * dt, v, accel)


@dataclass
class Admissible:
    """The bounds a successor state's braking trajectory must stay within."""

    pos_min: Array
    pos_max: Array
    speed: Array

    def rows(self, rows: np.ndarray) -> Admissible:
        """The bounds of the worlds ``rows`` (numpy)."""
        return Admissible(self.pos_min[rows], self.pos_max[rows], self.speed[rows])

    def __call__(self, ex: Extremes) -> Array:
        return (
            ex.complete
            & (ex.pos_min >= self.pos_min)
            & (ex.pos_max <= self.pos_max)
            & (ex.speed_max <= self.speed)
        )


def admissible_bounds(brake_ex: Extremes, b: JointBounds, like: Array) -> Admissible:
    """The limits, widened to what the braking successor reaches (never worse)."""
    xp = array_namespace(like)
    ok = brake_ex.complete
    lo, hi, vel = const(b.pos_min, like), const(b.pos_max, like), const(b.vel, like)
    return Admissible(
        pos_min=xp.where(ok, xp.minimum(lo, brake_ex.pos_min), lo),
        pos_max=xp.where(ok, xp.maximum(hi, brake_ex.pos_max), hi),
        speed=xp.where(ok, xp.maximum(vel, brake_ex.speed_max), vel),
    )


def search(fraction_ok: Callable[[Array], Array], like: Array, shape: tuple[int, ...]) -> Array:
    """The largest fraction ``λ`` in [0, 1] on a two-pass grid with ``fraction_ok(λ)``
    true, where ``fraction_ok`` takes ``λ`` of shape ``(K, *shape)`` and answers per entry;
    ``λ = 0`` is assumed admissible (the braking policy)."""
    xp = array_namespace(like)
    coarse = np.arange(GRID, 0, -1, dtype=np.float64) / GRID  # 1, 7/8, ..., 1/8
    lam = xp.reshape(const(coarse, like), (GRID,) + (1,) * len(shape))
    lam = xp.broadcast_to(lam, (GRID, *shape))
    ok = fraction_ok(lam)
    best = xp.max(xp.where(ok, lam, 0.0), axis=0)
    fine = np.arange(1, GRID, dtype=np.float64) / GRID**2  # inside [best, best + 1/GRID)
    lam = best[None] + xp.reshape(const(fine, like), (GRID - 1,) + (1,) * len(shape))
    lam = clip(lam, 0.0, 1.0)
    ok = fraction_ok(lam)
    return xp.maximum(best, xp.max(xp.where(ok, lam, 0.0), axis=0))


@dataclass
class JointStep:
    """The joint-space stage's choice for every joint of every world."""

    accel: Array  # (W, n) next acceleration
    brake_accel: Array  # (W, n) the braking policy's next acceleration
    exact: Array  # (W, n) bool: the command's own acceleration, unchanged
    acted: dict[str, Array]  # constraint -> (W,) bool
    admissible: Admissible


def joint_step(m: Motion, command: Array, b: JointBounds, *, fast: bool) -> JointStep:
    """Chooses each joint's next acceleration for ``command`` (finite, ``(W, n)``).

    Args:
        fast: numpy only: search only the worlds whose command is not admissible as is
            (on a GPU every world runs the same kernels instead, with no host round trip).
    """
    xp = array_namespace(command)
    dt = b.dt
    a_brake = brake_accel(m.v, m.a, b)
    bounds = admissible_bounds(brake_extremes(*_succ(m, a_brake, dt), b), b, command)
    a_cmd = ((command - m.q) / dt - m.v) / dt
    lo, hi = accel_window(m.a, b)
    acc = const(b.acc, command)
    delta = const(b.delta, command)
    vel = const(b.vel, command)
    box_lo = xp.maximum(lo, (-vel - m.v) / dt)
    box_hi = xp.minimum(hi, (vel - m.v) / dt)
    a_box = xp.where(box_lo <= box_hi, clip(a_cmd, box_lo, box_hi), a_brake)
    ok_full = bounds(brake_extremes(*_succ(m, a_box, dt), b))

    def fraction_ok(lam: Array) -> Array:
        accel = a_brake + lam * (a_box - a_brake)
        return bounds(brake_extremes(*_succ(m, accel, dt), b))

    if fast:
        rows = np.flatnonzero(~np.all(ok_full, axis=-1))
        lam = np.ones_like(a_cmd)
        if rows.size:
            sub = Motion(m.q[rows], m.v[rows], m.a[rows])
            sub_bounds = Admissible(
                *(x[rows] for x in (bounds.pos_min, bounds.pos_max, bounds.speed))
            )
            ab, ax = a_brake[rows], a_box[rows]

            def sub_ok(lam_: Array) -> Array:
                return sub_bounds(brake_extremes(*_succ(sub, ab + lam_ * (ax - ab), dt), b))

            lam[rows] = np.where(ok_full[rows], 1.0, search(sub_ok, ax, ax.shape))
    else:
        lam = xp.where(ok_full, 1.0, search(fraction_ok, a_cmd, tuple(a_cmd.shape)))
    accel = xp.where(lam >= 1.0, a_box, a_brake + lam * (a_box - a_brake))
    q_lo, q_hi = const(b.pos_min, command), const(b.pos_max, command)
    outside = (command < q_lo) | (command > q_hi)
    v_cmd = m.v + a_cmd * dt
    acted = {
        "position": outside,
        "velocity": xp.abs(v_cmd) > vel,
        "acceleration": xp.abs(a_cmd) > acc,
        "jerk": xp.abs(a_cmd - m.a) > delta,
        "stop": (lam < 1.0) & ~outside,
    }
    exact = (lam >= 1.0) & (a_box == a_cmd)
    return JointStep(
        accel=accel,
        brake_accel=a_brake,
        exact=exact,
        acted={k: xp.any(v, axis=-1) for k, v in acted.items()},
        admissible=bounds,
    )


def _succ(m: Motion, accel: Array, dt: float) -> tuple[Array, Array, Array]:
    nxt = m.step(accel, dt)
    return nxt.q, nxt.v, nxt.a
