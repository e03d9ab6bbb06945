"""The safety filter compiled for the host: the same algorithm as the array code, one world
at a time in numba.

The array code (:mod:`~robot_rl.safety.braking`, :mod:`~robot_rl.safety.joint_space`,
:mod:`~robot_rl.safety.filter`) runs whole batches as a few hundred array operations,
which is what a GPU wants and what a single arm at 1 kHz cannot afford: each numpy
operation costs about a microsecond whatever the array's size. Here every step of that
algorithm is written out as scalar code over joints and worlds and compiled once, so one
filter call for one arm costs microseconds, and a batch of worlds costs what its
arithmetic costs.

It is the same algorithm, operation for operation, in the same order: on float64 numpy
inputs its outputs and reports are those of the array code, bit for bit (a test compares
both on a fuzzed stream), and the array code stays the reference and the torch/GPU path.
:class:`~robot_rl.safety.filter.SafetyFilter` picks this path for float64 numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from robot_rl.safety.compiled_geometry import tcp_one, violations_one

#: Order of the per-world flags the kernel returns (a prefix of ``CONSTRAINTS`` minus
#: ``invalid_input``/``torque``/``internal_error``, which are written separately).
JOINT_FLAGS = ("position", "velocity", "acceleration", "jerk", "stop")
CARTESIAN_FLAGS = ("workspace", "cartesian_speed", "table", "self_distance")
#: Columns of the kernel's flag array.
FLAGS = ("invalid_input", "torque", *JOINT_FLAGS, *CARTESIAN_FLAGS, "internal_error")

_INF = math.inf


# --- numpy's semantics for NaN, written out ---------------------------------------------
@njit(cache=True, inline="always")
def _sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else x)


@njit(cache=True, inline="always")
def _clip(x, lo, hi):  # np.clip: minimum(maximum(x, lo), hi), NaN propagates
    if x < lo:
        x = lo
    if x > hi:
        x = hi
    return x


@njit(cache=True, inline="always")
def _min(a, b):  # np.minimum
    if a != a or b != b:
        return a + b
    return a if a <= b else b


@njit(cache=True, inline="always")
def _max(a, b):  # np.maximum
    if a != a or b != b:
        return a + b
    return a if a >= b else b


# --- braking (robot_rl.safety.braking) --------------------------------------------------
@njit(cache=True)
def _psi_unit_inverse(y):
    m = math.floor((math.sqrt(1.0 + 8.0 * y) - 1.0) / 2.0)
    if m * (m + 1.0) / 2.0 > y:
        m = m - 1.0
    if (m + 1.0) * (m + 2.0) / 2.0 <= y:
        m = m + 1.0
    m = _clip(m, 0.0, _INF)
    f = _clip((y - m * (m + 1.0) / 2.0) / (m + 1.0), 0.0, 1.0)
    return m + f


@njit(cache=True)
def _psi(x, delta, dt):
    w = abs(x) / delta
    m = math.floor(w)
    f = w - m
    return _sign(x) * delta * dt * (w + m * f + m * (m - 1.0) / 2.0)


@njit(cache=True)
def _brake_root(v, delta, dt):
    return -_sign(v) * delta * _psi_unit_inverse(abs(v) / (delta * dt))


@njit(cache=True)
def _brake_accel(v, a, delta, acc, dt):
    lo, hi = _clip(-acc, a - delta, a + delta), _clip(acc, a - delta, a + delta)
    return _clip(_brake_root(v, delta, dt), lo, hi)


@njit(cache=True)
def _rest_position(q, v, delta, dt):
    root = _brake_root(v, delta, dt)
    w = abs(root) / delta
    m = math.floor(w)
    weights = (m + 1.0) ** 2 * w - (m + 1.0 + w) * m * (m + 1.0) / 2.0
    weights = weights + m * (m + 1.0) * (2.0 * m + 1.0) / 6.0
    return q + dt * ((m + 1.0) * v + _sign(root) * delta * dt * weights)


@njit(cache=True)
def _extremes(q, v, a, delta, acc, dt, steps):
    """brake_extremes for one joint: (pos_min, pos_max, vel_min, vel_max, complete,
    rest)."""
    pos_min, pos_max, vel_min, vel_max = q, q, v, v
    frozen = False
    holding = False
    for _ in range(steps):
        root = _brake_root(v, delta, dt)
        lo, hi = _clip(-acc, a - delta, a + delta), _clip(acc, a - delta, a + delta)
        land = (root >= lo) and (root <= hi)
        hold = (not land) and (((root < lo) and (a == -acc)) or ((root > hi) and (a == acc)))
        if hold:
            holding = True
        if land or hold:
            frozen = True
            break
        a = _clip(root, lo, hi)
        v = v + a * dt
        q = q + v * dt
        pos_min, pos_max = _min(pos_min, q), _max(pos_max, q)
        vel_min, vel_max = _min(vel_min, v), _max(vel_max, v)
    s = _sign(a)
    n_hold = 0.0
    if holding:
        c = _psi(acc, delta, dt)
        n_hold = _clip(math.ceil((-s * v - c) / (acc * dt)), 0.0, _INF)
    q = q + n_hold * v * dt + s * acc * dt * dt * n_hold * (n_hold + 1.0) / 2.0
    v = v + n_hold * s * acc * dt
    pos_min, pos_max = _min(pos_min, q), _max(pos_max, q)
    rest = _rest_position(q, v, delta, dt)
    vel_min, vel_max = _min(vel_min, 0.0), _max(vel_max, 0.0)  # it ends at rest
    return _min(pos_min, rest), _max(pos_max, rest), vel_min, vel_max, frozen, rest


@njit(cache=True)
def _successor_ok(q, v, a_next, lo, hi, vlo, vhi, delta, acc, dt, steps):
    """Whether the braking trajectory after the acceleration ``a_next`` stays inside
    ``[lo, hi]`` with its velocity inside ``[vlo, vhi]``."""
    v1 = v + a_next * dt
    pmin, pmax, vmin, vmax, done, _ = _extremes(q + v1 * dt, v1, a_next, delta, acc, dt, steps)
    return done and pmin >= lo and pmax <= hi and vmin >= vlo and vmax <= vhi


@njit(cache=True)
def _largest_fraction(q, v, a_from, a_to, lo, hi, vlo, vhi, delta, acc, dt, steps, grid):
    """joint_space.search for one joint on the segment a_from -> a_to. Each pass keeps
    its largest admissible point, so it is scanned from the top and stops at the first."""
    best = 0.0
    for k in range(grid, 0, -1):
        lam = k / grid
        x = a_from + lam * (a_to - a_from)
        if _successor_ok(q, v, x, lo, hi, vlo, vhi, delta, acc, dt, steps):
            best = lam
            break
    if best >= 1.0:
        return best
    for i in range(grid - 1, 0, -1):
        lam = _clip(best + i / grid**2, 0.0, 1.0)
        x = a_from + lam * (a_to - a_from)
        if _successor_ok(q, v, x, lo, hi, vlo, vhi, delta, acc, dt, steps):
            return _max(best, lam)
    return best


# --- the joint-space stage (robot_rl.safety.joint_space) --------------------------------
@njit(cache=True)
def _tracking_goal(q, v, a, command, previous, a_cmd, vel, delta, acc, dt, steps, grid):
    """joint_space.tracking_goal for one joint."""
    v_target = _clip((command - previous) / dt, -vel, vel)
    rq, rv = q - (command - v_target * dt), v - v_target
    a_rel_brake = _brake_accel(rv, a, delta, acc, dt)
    v1 = rv + a_rel_brake * dt
    pmin, pmax, _, _, _, side = _extremes(rq + v1 * dt, v1, a_rel_brake, delta, acc, dt, steps)
    lo = _min(pmin, 0.0) if side >= 0 else -_INF
    hi = _max(pmax, 0.0) if side <= 0 else _INF
    a_to = _clip(a_cmd, _clip(-acc, a - delta, a + delta), _clip(acc, a - delta, a + delta))
    if _successor_ok(rq, rv, a_to, lo, hi, -_INF, _INF, delta, acc, dt, steps):
        return a_to
    lam = _largest_fraction(
        rq, rv, a_rel_brake, a_to, lo, hi, -_INF, _INF, delta, acc, dt, steps, grid
    )
    return a_to if lam >= 1.0 else a_rel_brake + lam * (a_to - a_rel_brake)


# Rows of the per-joint limit table the kernel takes (``limit_table``).
_POS_MIN, _POS_MAX, _VEL, _ACC, _DELTA, _G_MIN, _G_MAX, _G_VEL, _TORQUE = range(9)
# Rows of the per-world scratch table.
_Q, _V, _A, _A_BRAKE, _Q_BRAKE, _CMD, _A_CMD, _A_BOX, _EXACT, _ACCEL = range(10)
_ADM_MIN, _ADM_MAX, _ADM_VMIN, _ADM_VMAX, _FINITE, _Q_NEXT, _REST, _TRY = range(10, 18)
_SCRATCH_ROWS = 18


def limit_table(bounds, torque_max: np.ndarray) -> np.ndarray:
    """The per-joint limits of a :class:`~robot_rl.safety.braking.JointBounds` as one
    contiguous float64 table for the kernel."""
    return np.ascontiguousarray(
        np.stack(
            [
                bounds.pos_min, bounds.pos_max, bounds.vel, bounds.acc, bounds.delta,
                bounds._guarded_min, bounds._guarded_max, bounds._guarded_vel,
                np.asarray(torque_max, dtype=np.float64),
            ]
        )
    )  # fmt: skip


@njit(cache=True)
def _braking_ok(s, accel, lim, dt, steps):
    """The joint bounds on the braking trajectories after ``accel`` (one world); leaves
    the next and the rest postures in the scratch rows."""
    ok = True
    for j in range(s.shape[1]):
        v1 = s[_V, j] + accel[j] * dt
        q1 = s[_Q, j] + v1 * dt
        pmin, pmax, vmin, vmax, done, rest = _extremes(
            q1, v1, accel[j], lim[_DELTA, j], lim[_ACC, j], dt, steps
        )
        s[_Q_NEXT, j], s[_REST, j] = q1, rest
        ok = ok and done and pmin >= s[_ADM_MIN, j] and pmax <= s[_ADM_MAX, j]
        ok = ok and vmin >= s[_ADM_VMIN, j] and vmax <= s[_ADM_VMAX, j]
    return ok


@njit(cache=True)
def _cartesian_check(s, accel, lim, dt, steps, tcp_now, geo):
    """The Cartesian stage's check of one world for the accelerations ``accel``: the joint
    bounds on the braking trajectory, then the geometry at the next and the rest posture
    (``(ok, flags)``)."""
    ok = _braking_ok(s, accel, lim, dt, steps)
    bad = violations_one(s[_Q_NEXT], s[_REST], tcp_now, geo)
    for flag in bad:
        ok = ok and not flag
    return ok, bad


@njit(cache=True)
def _cartesian_ok(s, lam, lim, dt, steps, tcp_now, geo):
    """The check at the fraction ``lam`` of the segment from the braking accelerations
    towards the chosen ones; the geometry only once the joint bounds hold."""
    for j in range(s.shape[1]):
        s[_TRY, j] = s[_A_BRAKE, j] + lam * (s[_ACCEL, j] - s[_A_BRAKE, j])
    if not _braking_ok(s, s[_TRY], lim, dt, steps):
        return False
    bad = violations_one(s[_Q_NEXT], s[_REST], tcp_now, geo)
    return not (bad[0] or bad[1] or bad[2] or bad[3])


@njit(cache=True)
def _cartesian_fraction(s, lim, dt, steps, grid, tcp_now, geo):
    """joint_space.search over one world's fraction of the segment, scanned from the top
    as in :func:`_largest_fraction`."""
    best = 0.0
    for k in range(grid, 0, -1):
        lam = k / grid
        if _cartesian_ok(s, lam, lim, dt, steps, tcp_now, geo):
            best = lam
            break
    if best >= 1.0:
        return best
    for i in range(grid - 1, 0, -1):
        lam = _clip(best + i / grid**2, 0.0, 1.0)
        if _cartesian_ok(s, lam, lim, dt, steps, tcp_now, geo):
            return _max(best, lam)
    return best


@njit(cache=True)
def _filter_world(c1, c2, c3, given, command, sq, sdq, stau, lim, dt, steps, grid, plausible,
                  geo, s, out, given_out, flags):  # fmt: skip
    """SafetyFilter._filter for one world; writes ``out``, ``given_out`` and ``flags``
    (columns as :data:`FLAGS`) and returns whether the command was changed."""
    n = c1.shape[0]
    invalid, torque, state_ok = False, False, True
    for j in range(n):
        s[_Q, j] = c1[j]
        v1, v0 = (c1[j] - c2[j]) / dt, (c2[j] - c3[j]) / dt
        s[_V, j], s[_A, j] = v1, (v1 - v0) / dt
        fin = math.isfinite(command[j]) and abs(command[j]) <= plausible
        s[_FINITE, j] = 1.0 if fin else 0.0
        invalid = invalid or not fin
        state_ok = state_ok and math.isfinite(sq[j]) and math.isfinite(sdq[j])
        state_ok = state_ok and math.isfinite(stau[j])
        torque = torque or abs(stau[j]) > lim[_TORQUE, j]
    invalid = invalid or not state_ok
    stop = invalid or torque

    all_exact = True
    for j in range(n):
        q, v, a = s[_Q, j], s[_V, j], s[_A, j]
        vel, acc, delta = lim[_VEL, j], lim[_ACC, j], lim[_DELTA, j]
        a_brake = _brake_accel(v, a, delta, acc, dt)
        q_brake = q + (v + a_brake * dt) * dt
        s[_A_BRAKE, j], s[_Q_BRAKE, j] = a_brake, q_brake
        cmd = q_brake if (stop or s[_FINITE, j] == 0.0) else command[j]
        s[_CMD, j] = cmd
        # The admissible bounds: the limits, widened to what braking reaches.
        v1 = v + a_brake * dt
        pmin, pmax, vmin, vmax, done, _ = _extremes(q + v1 * dt, v1, a_brake, delta, acc, dt, steps)
        g_vel = lim[_G_VEL, j]
        if done:
            s[_ADM_MIN, j] = _min(lim[_G_MIN, j], pmin)
            s[_ADM_MAX, j] = _max(lim[_G_MAX, j], pmax)
            s[_ADM_VMIN, j], s[_ADM_VMAX, j] = _min(-g_vel, vmin), _max(g_vel, vmax)
        else:
            s[_ADM_MIN, j], s[_ADM_MAX, j] = lim[_G_MIN, j], lim[_G_MAX, j]
            s[_ADM_VMIN, j], s[_ADM_VMAX, j] = -g_vel, g_vel
        a_cmd = ((cmd - q) / dt - v) / dt
        s[_A_CMD, j] = a_cmd
        lo, hi = _clip(-acc, a - delta, a + delta), _clip(acc, a - delta, a + delta)
        box_lo, box_hi = _max(lo, (-vel - v) / dt), _min(hi, (vel - v) / dt)
        a_box = _clip(a_cmd, box_lo, box_hi) if box_lo <= box_hi else a_brake
        ok = _successor_ok(q, v, a_box, s[_ADM_MIN, j], s[_ADM_MAX, j], s[_ADM_VMIN, j],
                           s[_ADM_VMAX, j], delta, acc, dt, steps)  # fmt: skip
        exact = ok and a_box == a_cmd
        s[_EXACT, j] = 1.0 if exact else 0.0
        all_exact = all_exact and exact

    position = velocity = acceleration = jerk = braked = False
    for j in range(n):
        q, v, a = s[_Q, j], s[_V, j], s[_A, j]
        vel, acc, delta = lim[_VEL, j], lim[_ACC, j], lim[_DELTA, j]
        cmd, a_cmd, a_brake = s[_CMD, j], s[_A_CMD, j], s[_A_BRAKE, j]
        exact = s[_EXACT, j] != 0.0
        lam = 1.0
        if exact:
            a_box = a_cmd
        else:
            goal = a_cmd
            if not all_exact:  # the world steers for the command stream
                goal = _tracking_goal(q, v, a, cmd, given[j], a_cmd, vel, delta, acc, dt,
                                      steps, grid)  # fmt: skip
            lo, hi = _clip(-acc, a - delta, a + delta), _clip(acc, a - delta, a + delta)
            box_lo, box_hi = _max(lo, (-vel - v) / dt), _min(hi, (vel - v) / dt)
            a_box = _clip(goal, box_lo, box_hi) if box_lo <= box_hi else a_brake
            lo, hi = s[_ADM_MIN, j], s[_ADM_MAX, j]
            vlo, vhi = s[_ADM_VMIN, j], s[_ADM_VMAX, j]
            if not _successor_ok(q, v, a_box, lo, hi, vlo, vhi, delta, acc, dt, steps):
                lam = _largest_fraction(q, v, a_brake, a_box, lo, hi, vlo, vhi, delta, acc,
                                        dt, steps, grid)  # fmt: skip
        accel = a_box if lam >= 1.0 else a_brake + lam * (a_box - a_brake)
        outside = cmd < lim[_POS_MIN, j] or cmd > lim[_POS_MAX, j]
        position = position or outside
        velocity = velocity or abs(v + a_cmd * dt) > vel
        acceleration = acceleration or abs(a_cmd) > acc
        jerk = jerk or abs(a_cmd - a) > delta
        braked = braked or (lam < 1.0 and not outside)
        s[_ACCEL, j] = a_brake if stop else accel
        if stop:
            s[_EXACT, j] = 0.0

    for c in range(flags.shape[0]):
        flags[c] = False
    if geo is not None:
        tcp_now = tcp_one(s[_Q], geo)
        ok_full, bad = _cartesian_check(s, s[_ACCEL], lim, dt, steps, tcp_now, geo)
        if not ok_full:
            mu = _cartesian_fraction(s, lim, dt, steps, grid, tcp_now, geo)
            if mu < 1.0:
                for j in range(n):
                    s[_ACCEL, j] = s[_A_BRAKE, j] + mu * (s[_ACCEL, j] - s[_A_BRAKE, j])
                    s[_EXACT, j] = 0.0
            if not stop:
                for c in range(4):
                    flags[2 + len(JOINT_FLAGS) + c] = bad[c]
    if not stop:
        flags[2], flags[3], flags[4], flags[5], flags[6] = (
            position,
            velocity,
            acceleration,
            jerk,
            braked,
        )

    broken, changed = False, False
    for j in range(n):
        if s[_EXACT, j] != 0.0:
            out[j] = command[j]
        else:
            changed = True
            out[j] = s[_Q, j] + (s[_V, j] + s[_ACCEL, j] * dt) * dt
        broken = broken or not math.isfinite(out[j])
    for j in range(n):
        if broken:
            out[j] = s[_Q_BRAKE, j]
        keep = stop or broken or s[_FINITE, j] == 0.0
        given_out[j] = out[j] if keep else command[j]
    flags[0], flags[1] = invalid, torque and not invalid
    flags[flags.shape[0] - 1] = broken
    return changed or broken


@njit(cache=True)
def filter_worlds(history, given, command, sq, sdq, stau, lim, dt, steps, grid, plausible,
                  geo, out, given_out, history_out, flags, clipped):  # fmt: skip
    """The filter over every world (float64, ``(W, n)``; ``history`` ``(3, W, n)``):
    writes the safe commands ``out``, the stream's last command ``given_out``, the
    commands issued after this call ``history_out``, the ``flags`` ``(W, len(FLAGS))``
    and ``clipped`` ``(W,)``."""
    n = command.shape[1]
    s = np.empty((_SCRATCH_ROWS, n))
    for w in range(command.shape[0]):
        clipped[w] = _filter_world(
            history[0, w], history[1, w], history[2, w], given[w], command[w], sq[w], sdq[w],
            stau[w], lim, dt, steps, grid, plausible, geo, s, out[w], given_out[w], flags[w],
        )  # fmt: skip
        for j in range(n):
            history_out[0, w, j] = out[w, j]
            history_out[1, w, j] = history[0, w, j]
            history_out[2, w, j] = history[1, w, j]
