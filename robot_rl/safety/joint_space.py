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

    def rows(self, rows: np.ndarray | None) -> Motion:
        """The worlds ``rows`` (all of them for None)."""
        return self if rows is None else Motion(self.q[rows], self.v[rows], self.a[rows])

    def step(self, accel: Array, dt: float) -> Motion:
        v = self.v + accel * dt
        return Motion(self.q + v * dt, v, accel)


@dataclass
class Admissible:
    """The bounds a successor state's braking trajectory must stay within."""

    pos_min: Array
    pos_max: Array
    vel_min: Array
    vel_max: Array

    def rows(self, rows: np.ndarray) -> Admissible:
        """The bounds of the worlds ``rows`` (numpy)."""
        return Admissible(
            self.pos_min[rows], self.pos_max[rows], self.vel_min[rows], self.vel_max[rows]
        )

    def __call__(self, ex: Extremes) -> Array:
        return (
            ex.complete
            & (ex.pos_min >= self.pos_min)
            & (ex.pos_max <= self.pos_max)
            & (ex.vel_min >= self.vel_min)
            & (ex.vel_max <= self.vel_max)
        )


def admissible_bounds(brake_ex: Extremes, b: JointBounds, like: Array) -> Admissible:
    """The limits, widened to what the braking successor reaches (never worse), each
    direction on its own: an arm braking from beyond the speed limit one way may not
    swing beyond it the other way."""
    xp = array_namespace(like)
    ok = brake_ex.complete
    lo, hi, vel = (
        const(b._guarded_min, like),
        const(b._guarded_max, like),
        const(b._guarded_vel, like),
    )
    return Admissible(
        pos_min=xp.where(ok, xp.minimum(lo, brake_ex.pos_min), lo),
        pos_max=xp.where(ok, xp.maximum(hi, brake_ex.pos_max), hi),
        vel_min=xp.where(ok, xp.minimum(-vel, brake_ex.vel_min), -vel),
        vel_max=xp.where(ok, xp.maximum(vel, brake_ex.vel_max), vel),
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


def joint_step(
    m: Motion, command: Array, b: JointBounds, *, fast: bool, previous_command: Array | None = None
) -> JointStep:
    """Chooses each joint's next acceleration for ``command`` (finite, ``(W, n)``).

    A command whose own acceleration is admissible passes exactly. Otherwise the goal is
    the target stream's, approached without overshoot (:func:`tracking_goal`), and the
    safety search runs from the braking acceleration towards that goal.

    Args:
        fast: numpy only: search only the worlds whose command is not admissible as is
            (on a GPU every world runs the same kernels instead, with no host round trip).
        previous_command: the command given one period earlier (the target's velocity);
            None: the target is taken to move as the commanded trajectory does.
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

    def boxed(goal: Array) -> Array:
        return xp.where(box_lo <= box_hi, clip(goal, box_lo, box_hi), a_brake)

    a_box = boxed(a_cmd)
    ok_full = bounds(brake_extremes(*_succ(m, a_box, dt), b))
    exact = ok_full & (a_box == a_cmd)
    # The rest steer for the command stream: its own acceleration when it only needed a
    # clip would, after the clip, chase the stream with one-period dead-beat steps that
    # overshoot and oscillate; the tracking goal lands on it instead.
    if previous_command is None:
        previous_command = command - m.v * dt
    goal = _on_rows(
        ~xp.all(exact, axis=-1) if fast else None,
        lambda r: tracking_goal(
            m.rows(r), take_rows(command, r), take_rows(previous_command, r), take_rows(a_cmd, r), b
        ),
        a_cmd,
    )
    a_box = xp.where(exact, a_cmd, boxed(goal))
    ok_full = exact | bounds(brake_extremes(*_succ(m, a_box, dt), b))
    lam = largest_fraction(m, a_brake, a_box, bounds, b, ok_full, fast)
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
    return JointStep(
        accel=accel,
        brake_accel=a_brake,
        exact=exact,
        acted={k: xp.any(v, axis=-1) for k, v in acted.items()},
        admissible=bounds,
    )


def tracking_goal(
    m: Motion, command: Array, previous_command: Array, a_cmd: Array, b: JointBounds
) -> Array:
    """The acceleration that closes on the command stream fastest without overshooting it,
    within the jerk and acceleration limits (safety is the caller's next stage).

    In the stream's frame (the target moving at ``(command - previous_command) / dt``),
    the braking policy brings the relative velocity to rest; the goal is the point of the
    segment from that braking acceleration to the dead-beat one whose relative braking
    trajectory does not cross the target (or crosses it no further than braking now
    would), so an error closes monotonically and the command passes exactly again once it
    is small enough for one period.
    """
    xp = array_namespace(command)
    dt = b.dt
    # The stream's velocity, no faster than the arm may move: beyond that the stream
    # jumped (a new target) rather than moved.
    vel = const(b.vel, command)
    v_target = clip((command - previous_command) / dt, -vel, vel)
    rel = Motion(m.q - (command - v_target * dt), m.v - v_target, m.a)
    a_rel_brake = brake_accel(rel.v, rel.a, b)
    ex = brake_extremes(*_succ(rel, a_rel_brake, dt), b)
    side = ex.rest  # where braking in the stream's frame ends: below (< 0) or above it
    inf = xp.full_like(command, float("inf"))
    tracking = Admissible(
        pos_min=xp.where(side >= 0, xp.minimum(ex.pos_min, 0.0), -inf),
        pos_max=xp.where(side <= 0, xp.maximum(ex.pos_max, 0.0), inf),
        vel_min=-inf,
        vel_max=inf,
    )
    lo, hi = accel_window(m.a, b)
    a_to = clip(a_cmd, lo, hi)
    ok = tracking(brake_extremes(*_succ(rel, a_to, dt), b))
    lam = largest_fraction(rel, a_rel_brake, a_to, tracking, b, ok, fast=False)
    return xp.where(lam >= 1.0, a_to, a_rel_brake + lam * (a_to - a_rel_brake))


def largest_fraction(
    m: Motion, a_from: Array, a_to: Array, adm: Admissible, b: JointBounds, ok: Array, fast: bool
) -> Array:
    """Per joint: 1 where ``ok``, else the largest admissible fraction of the segment from
    ``a_from`` (admissible) to ``a_to``."""

    def on(rows: np.ndarray | None) -> Callable[[Array], Array]:
        mm, af, at = m.rows(rows), take_rows(a_from, rows), take_rows(a_to, rows)
        aa = adm if rows is None else adm.rows(rows)
        return lambda lam: aa(brake_extremes(*_succ(mm, af + lam * (at - af), b.dt), b))

    return search_where_needed(ok, on, a_to, fast)


def search_where_needed(
    ok: Array,
    fraction_ok_on: Callable[[np.ndarray | None], Callable[[Array], Array]],
    like: Array,
    fast: bool,
) -> Array:
    """1 where ``ok`` (worlds on the leading axis), elsewhere the largest fraction
    :func:`search` finds admissible; ``fraction_ok_on(rows)`` is the test on the worlds
    ``rows`` (None: every world). On numpy with ``fast``, only the worlds with an entry
    not ``ok`` are searched; on a GPU every world runs the same kernels instead, with no
    host round trip."""
    xp = array_namespace(like)
    shape = tuple(ok.shape)
    if not fast:
        return xp.where(ok, 1.0, search(fraction_ok_on(None), like, shape))
    lam = np.ones(shape)
    rows = np.flatnonzero(~np.all(np.reshape(ok, (shape[0], -1)), axis=-1))
    if rows.size:
        found = search(fraction_ok_on(rows), like, (rows.size, *shape[1:]))
        lam[rows] = np.where(ok[rows], 1.0, found)
    return lam


def take_rows(x: Array, rows: np.ndarray | None) -> Array:
    """The worlds ``rows`` of ``x`` (all of it for None)."""
    return x if rows is None else x[rows]


def _on_rows(need: Array | None, fn, default: Array) -> Array:
    """``fn(rows)`` on the worlds ``need`` marks (numpy), written into a copy of
    ``default``; with ``need`` None, ``fn(None)`` on every world."""
    if need is None:
        return fn(None)
    rows = np.flatnonzero(need)
    out = default.copy()
    if rows.size:
        out[rows] = fn(rows)
    return out


def _succ(m: Motion, accel: Array, dt: float) -> tuple[Array, Array, Array]:
    nxt = m.step(accel, dt)
    return nxt.q, nxt.v, nxt.a
