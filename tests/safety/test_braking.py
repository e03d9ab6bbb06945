"""The braking policy B and its closed-form extremes, checked against a plain rollout.

``brake_extremes`` steps the ramp periods and jumps over the hold and the landing in
closed form; here B is instead stepped period by period with ``brake_accel`` until it
rests, and everything the closed form claims (lowest and highest position, fastest speed,
where it rests) is read off that rollout. The rollout itself is judged by finite
differences: every period within the jerk and acceleration limits, and at rest exactly
(velocity and acceleration zero) at the end.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_rl.safety.braking import (
    JointBounds,
    accel_window,
    brake_accel,
    brake_extremes,
    brake_root,
    psi,
)

EPS = np.finfo(np.float64).eps


def random_bounds(rng: np.random.Generator, n: int, dt: float) -> JointBounds:
    """Realistic per-joint limits; ``2A / (J dt)`` (the ramp periods) between 0.02 and 60."""
    acc = rng.uniform(0.5, 40.0, n)
    ramp = np.exp(rng.uniform(np.log(0.02), np.log(60.0), n))
    return JointBounds(
        dt=dt,
        pos_min=np.full(n, -3.0),
        pos_max=np.full(n, 3.0),
        vel=rng.uniform(0.2, 3.0, n),
        acc=acc,
        jerk=2 * acc / (ramp * dt),
    )


def random_states(rng: np.random.Generator, b: JointBounds, k: int, max_hold: float = 300):
    """``k`` states ``(q, v, a)`` of shape ``(k, n)`` with ``|a| <= A``, speeds up to
    ``max_hold`` periods of full deceleration, and the edge cases the filter lives on:
    at rest, accelerations at exactly ``±A``, and speeds that B's root just reaches."""
    n = b.acc.size
    q = rng.uniform(-3.0, 3.0, (k, n))
    a = rng.uniform(-1.0, 1.0, (k, n)) * b.acc
    v = rng.uniform(-1.0, 1.0, (k, n)) * b.acc * b.dt * rng.uniform(0, max_hold, (k, 1))
    edge = rng.integers(0, 6, (k, n))
    a = np.where(edge == 1, np.sign(a) * b.acc, a)  # holding at the limit
    v = np.where(edge == 2, 0.0, v)
    a = np.where(edge == 3, 0.0, a)
    v, a = np.where(edge == 4, 0.0, v), np.where(edge == 4, 0.0, a)  # at rest
    # The landing root exactly at the edge of the jerk window.
    a = np.where(edge == 5, brake_root(v, b) + np.sign(v) * b.delta, a)
    return q, v, np.clip(a, -b.acc, b.acc)


def rest_steps(v: np.ndarray, a: np.ndarray, b: JointBounds) -> int:
    """More periods than any B stop from these states takes: ramps to ``±A`` and back,
    and the hold at ``A`` that removes the speed (plus what ``a`` adds first)."""
    speed = np.abs(v) + b.acc * b.dt * (b.acc / b.delta + 2)
    return int(np.max(4 * np.ceil(b.acc / b.delta) + speed / (b.acc * b.dt))) + 10


def rollout(q, v, a, b: JointBounds, steps: int):
    """B stepped period by period: positions, velocities and accelerations ``(steps+1, ...)``,
    starting with the given state."""
    qs, vs, as_ = [q], [v], [a]
    for _ in range(steps):
        a = brake_accel(v, a, b)
        v = v + a * b.dt
        q = q + v * b.dt
        qs.append(q), vs.append(v), as_.append(a)
    return np.stack(qs), np.stack(vs), np.stack(as_)


def check_extremes_match_rollout(q, v, a, b: JointBounds) -> None:
    ex = brake_extremes(q, v, a, b)
    assert np.all(ex.complete), "a start with |a| <= A must be covered"
    qs, vs, as_ = rollout(q, v, a, b, rest_steps(v, a, b))
    scale = 1.0 + np.abs(qs).max(axis=0)
    # Each period rounds once; the closed form and the rollout agree to that.
    tol_q = 1e-13 * scale * qs.shape[0] + 1e-12
    tol_v = 1e-12 * (1 + np.abs(vs).max(axis=0))
    # The rollout is at rest at the end: exactly where the closed form says.
    assert np.all(np.abs(vs[-1]) <= tol_v), "B did not come to rest"
    assert np.all(np.abs(as_[-1]) <= 1e-9 * b.acc)
    np.testing.assert_allclose(ex.rest, qs[-1], rtol=0, atol=tol_q.max())
    np.testing.assert_allclose(ex.pos_min, qs.min(axis=0), rtol=0, atol=tol_q.max())
    np.testing.assert_allclose(ex.pos_max, qs.max(axis=0), rtol=0, atol=tol_q.max())
    tol = 1e-12 * float(np.abs(vs).max()) + 1e-15
    np.testing.assert_allclose(ex.vel_min, np.minimum(vs.min(axis=0), 0.0), rtol=0, atol=tol)
    np.testing.assert_allclose(ex.vel_max, np.maximum(vs.max(axis=0), 0.0), rtol=0, atol=tol)


def check_rollout_within_limits_and_lands(v, a, b: JointBounds) -> None:
    """Every B period within the jerk and acceleration limits, and the stop lands: the
    velocity reaches zero as the acceleration does, with no crossing of zero on the
    final approach."""
    q = np.zeros_like(v)
    _, vs, as_ = rollout(q, v, a, b, rest_steps(v, a, b))
    assert np.all(np.abs(as_[1:]) <= b.acc * (1 + 1e-12))
    assert np.all(np.abs(np.diff(as_, axis=0)) <= b.delta * (1 + 1e-12) + 4 * EPS * b.acc)
    # At rest and staying there (B of a resting joint is zero, not a dither).
    scale = 1 + np.abs(vs).max(axis=0)
    assert np.all(np.abs(vs[-5:]) <= 1e-12 * scale)
    assert np.all(np.abs(as_[-5:]) <= 1e-9 * b.acc)
    # No dither through zero: B's velocity changes sign at most once (when the starting
    # acceleration already opposes the motion and carries it through zero), never when
    # the start accelerates with the motion or not at all.
    sign = np.where(np.abs(vs) > 1e-12 * scale, np.sign(vs), 0.0)
    for j in np.ndindex(v.shape):
        s = sign[(slice(None), *j)]
        s = s[s != 0]
        changes = int(np.sum(s[1:] != s[:-1]))
        assert changes <= (1 if a[j] * v[j] < 0 else 0), (j, v[j], a[j])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 9),
    dt=st.floats(0.001, 0.1),
    seed=st.integers(0, 2**32 - 1),
)
def test_brake_extremes_equal_a_step_by_step_rollout(n, dt, seed):
    rng = np.random.default_rng(seed)
    b = random_bounds(rng, n, dt)
    q, v, a = random_states(rng, b, 64)
    check_extremes_match_rollout(q, v, a, b)


def test_brake_extremes_equal_a_rollout_on_many_states():
    """10^4 states at once, at a driver rate (many ramp periods) and a policy rate."""
    rng = np.random.default_rng(7)
    for dt in (0.001, 0.05):
        b = random_bounds(rng, 7, dt)
        q, v, a = random_states(rng, b, 1500, max_hold=150)
        check_extremes_match_rollout(q, v, a, b)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), dt=st.floats(0.001, 0.1), seed=st.integers(0, 2**32 - 1))
def test_brake_accel_within_jerk_and_acc_limits_and_lands_at_rest(n, dt, seed):
    rng = np.random.default_rng(seed)
    b = random_bounds(rng, n, dt)
    _, v, a = random_states(rng, b, 64)
    check_rollout_within_limits_and_lands(v, a, b)


def test_brake_root_is_the_landing_stop():
    """``ψ(root(v)) = -v``: choosing the root and ramping back lands exactly at rest;
    ``ψ`` is increasing (so the root is unique)."""
    rng = np.random.default_rng(3)
    b = random_bounds(rng, 9, 0.002)
    v = rng.uniform(-1, 1, (4000, 9)) * b.acc * b.dt * rng.uniform(0, 500, (4000, 1))
    v[:9] = 0.0
    np.testing.assert_allclose(psi(brake_root(v, b), b), -v, rtol=1e-12, atol=1e-15)
    x = np.sort(rng.uniform(-3, 3, (4000, 9)) * b.acc, axis=0)
    assert np.all(np.diff(psi(x, b), axis=0) >= 0)


def test_accel_window_moves_towards_the_box_at_full_jerk():
    b = JointBounds(dt=0.01, pos_min=[-1], pos_max=[1], vel=[1], acc=[2.0], jerk=[50.0])
    d = 0.5  # J dt
    lo, hi = accel_window(np.array([0.0, 1.9, -2.0, 3.0, -3.0]), b)
    np.testing.assert_allclose(lo, [-d, 1.9 - d, -2.0, 3.0 - d, -3.0 + d])
    np.testing.assert_allclose(hi, [d, 2.0, -2.0 + d, 3.0 - d, -3.0 + d])


def _beyond_the_box(seed: int):
    """States whose acceleration is up to 6 A (an acceleration limit that shrank), with a
    rollout long enough for B to bring it back into the box and stop."""
    rng = np.random.default_rng(seed)
    b = random_bounds(rng, 5, 0.004)
    q, v, a = random_states(rng, b, 400)
    a = a * rng.uniform(1.0, 6.0, a.shape)
    steps = rest_steps(v, a, b) + math.ceil(float(np.max(6 * b.acc / b.delta)))
    qs, vs, _ = rollout(q, v, a, b, steps)
    return b, (q, v, a), qs, vs


def test_extremes_beyond_the_acceleration_box_are_conservative():
    """From ``|a| > A`` the filter never starts (its commands keep ``|a| <= A``), but
    where ``brake_extremes`` calls such a start complete, the true B trajectory stays
    within the extremes it gives (so the filter would still be safe)."""
    b, (q, v, a), qs, vs = _beyond_the_box(11)
    ex = brake_extremes(q, v, a, b)
    done = ex.complete
    assert not np.all(done)
    assert np.all((qs.min(axis=0) >= ex.pos_min - 1e-9)[done])
    assert np.all((qs.max(axis=0) <= ex.pos_max + 1e-9)[done])
    slack = 1e-12 * np.abs(vs).max(axis=0)
    assert np.all((vs.min(axis=0) >= ex.vel_min - slack)[done])
    assert np.all((vs.max(axis=0) <= ex.vel_max + slack)[done])


def test_extremes_beyond_the_acceleration_box_are_exact_where_complete():
    b = JointBounds(dt=0.01, pos_min=[-1], pos_max=[1], vel=[1], acc=[1.0], jerk=[10.0])
    q, v, a = np.zeros(1), np.array([-0.5]), np.array([3.0])
    ex = brake_extremes(q, v, a, b)
    qs, _, _ = rollout(q, v, a, b, 400)
    assert not ex.complete[0] or abs(ex.rest[0] - qs[-1, 0]) < 1e-9
    b, (q, v, a), qs, _ = _beyond_the_box(11)
    ex = brake_extremes(q, v, a, b)
    done = ex.complete
    np.testing.assert_allclose(ex.rest[done], qs[-1][done], rtol=0, atol=1e-9)
