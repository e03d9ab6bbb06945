"""The braking policy of the safety filter, and where it takes a joint before it rests.

The filter sees a joint's commanded trajectory as finite differences of the commands it
issued, one per period ``dt``: velocity ``v_k = (q_k - q_{k-1}) / dt``, acceleration
``a_k = (v_k - v_{k-1}) / dt`` and jerk ``(a_k - a_{k-1}) / dt``. Every limit is judged on
exactly these quantities, so a new command is the choice of the next acceleration ``a'``:
``v' = v + a' dt`` and ``q' = q + v' dt``.

**The braking policy** B is the fastest stop the jerk and acceleration limits allow, as a
feedback law on ``(v, a)``: with ``δ = J dt`` the largest change of acceleration per
period, let ``ψ(x)`` be the change of velocity from choosing ``a' = x`` and then ramping
the acceleration back to zero by ``δ`` per period. ``ψ`` is continuous and strictly
increasing; B picks the ``a'`` with ``ψ(a') = -v`` (which lands on ``v = 0`` exactly as
the acceleration reaches zero), clipped to what the jerk and acceleration limits allow
this period. Once that root is reachable, the following roots are ``a' ∓ δ``: the ramp
back to rest. Before, B ramps the acceleration by ``δ`` per period, or holds it at the
limit. So every B trajectory is a few ramp periods, a hold at ``±A``, and the landing ramp.

**Why this makes the filter safe.** B is a deterministic function of the state, so the
B trajectory from a state's successor under B is the tail of the B trajectory from the
state: its extremes (lowest and highest position, fastest speed) can only shrink. The
filter lets a state through only if the whole B trajectory from it stays inside the
limits, so B itself is always an admissible next step: there is always a stop that
respects every limit, which is what "a feasible stop" means here.

:func:`brake_extremes` computes those extremes exactly: the ramp periods are stepped (at
most ``2A/δ + 3`` of them, a handful at a robot's driver rate, one or two at a policy's
control rate), the hold and the landing in closed form. Everything is written against the
array API (:mod:`robot_rl.arrays`): the same code runs on numpy arrays on the host and on
torch tensors on the simulator's device, with no data-dependent branch that would make a
GPU wait for the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robot_rl.arrays import Array, array_namespace, clip, const, device_of, is_numpy_array

#: Relative guard band inside the position and velocity limits the filter plans against.
GUARD = 1e-10


@dataclass(frozen=True)
class JointBounds:
    """Per-joint bounds for one period ``dt``, as float64 arrays of shape ``(n,)``.

    ``pos_min``/``pos_max`` already include the margin; ``vel`` includes the envelope's
    speed scale. ``ramp_steps`` bounds the ramp periods of a B trajectory.
    """

    dt: float
    pos_min: np.ndarray
    pos_max: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    jerk: np.ndarray

    def __post_init__(self) -> None:
        for name in ("pos_min", "pos_max", "vel", "acc", "jerk"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        object.__setattr__(self, "dt", float(self.dt))
        # Computed once: the per-call code reads them dozens of times.
        object.__setattr__(self, "delta", self.jerk * self.dt)
        steps = math.ceil(float(np.max(2 * self.acc / self.delta))) + 3
        object.__setattr__(self, "ramp_steps", steps)
        # The filter plans against limits a hair inside the real ones: the next call
        # re-derives velocity and acceleration from stored positions, and that rounding
        # (1e-14 rad) must not carry a trajectory planned onto a limit past it.
        g = GUARD * (1.0 + np.abs(self.pos_min))
        object.__setattr__(self, "_guarded_min", self.pos_min + g)
        object.__setattr__(
            self, "_guarded_max", self.pos_max - GUARD * (1.0 + np.abs(self.pos_max))
        )
        object.__setattr__(self, "_guarded_vel", self.vel * (1.0 - GUARD))

    #: Largest change of acceleration per period, ``J dt``.
    delta: np.ndarray = field(init=False)
    #: Bound on the ramp periods of a B trajectory.
    ramp_steps: int = field(init=False)
    _guarded_min: np.ndarray = field(init=False, repr=False)
    _guarded_max: np.ndarray = field(init=False, repr=False)
    _guarded_vel: np.ndarray = field(init=False, repr=False)


def _psi_unit_inverse(y: Array) -> Array:
    """Inverse of ``Ψ(w) = w + m f + m(m-1)/2`` (``m = floor(w)``, ``f = w - m``) for
    ``y >= 0``: ``Ψ`` is ``ψ`` in units of ``δ`` and ``δ dt``."""
    xp = array_namespace(y)
    m = xp.floor((xp.sqrt(1.0 + 8.0 * y) - 1.0) / 2.0)
    # Rounding in the square root can put m one off near the integers: correct it.
    m = xp.where(m * (m + 1.0) / 2.0 > y, m - 1.0, m)
    m = xp.where((m + 1.0) * (m + 2.0) / 2.0 <= y, m + 1.0, m)
    m = clip(m, 0.0, None)
    f = clip((y - m * (m + 1.0) / 2.0) / (m + 1.0), 0.0, 1.0)
    return m + f


def psi(x: Array, b: JointBounds) -> Array:
    """``ψ(x)``: the change of velocity from the acceleration ``x`` this period followed by
    the fastest ramp of the acceleration back to zero."""
    xp = array_namespace(x)
    delta = const(b.delta, x)
    w = xp.abs(x) / delta
    m = xp.floor(w)
    f = w - m
    return xp.sign(x) * delta * b.dt * (w + m * f + m * (m - 1.0) / 2.0)


def brake_root(v: Array, b: JointBounds) -> Array:
    """The acceleration ``x`` with ``ψ(x) = -v``: the stop that lands exactly at rest."""
    xp = array_namespace(v)
    delta = const(b.delta, v)
    return -xp.sign(v) * delta * _psi_unit_inverse(xp.abs(v) / (delta * b.dt))


def accel_window(a: Array, b: JointBounds) -> tuple[Array, Array]:
    """The accelerations reachable next period within the jerk limit, moved towards
    ``[-A, A]`` (at full jerk when ``a`` is outside it)."""
    delta, acc = const(b.delta, a), const(b.acc, a)
    return clip(-acc, a - delta, a + delta), clip(acc, a - delta, a + delta)


def brake_accel(v: Array, a: Array, b: JointBounds) -> Array:
    """B's next acceleration."""
    lo, hi = accel_window(a, b)
    return clip(brake_root(v, b), lo, hi)


@dataclass
class Extremes:
    """What a B trajectory reaches: lowest and highest position, lowest and highest
    velocity, where it rests, and whether the computation covered it all (``complete``;
    if not, treat the start as unsafe)."""

    pos_min: Array
    pos_max: Array
    vel_min: Array
    vel_max: Array
    complete: Array
    rest: Array


def brake_extremes(q: Array, v: Array, a: Array, b: JointBounds) -> Extremes:
    """Extremes of the B trajectory from ``(q, v, a)`` (any shape ending in the joint
    axis), including the start."""
    xp = array_namespace(q)
    dt = b.dt
    acc = const(b.acc, q)
    pos_min, pos_max, vel_min, vel_max = q, q, v, v
    frozen = xp.zeros(q.shape, dtype=xp.bool, device=device_of(q))
    holding = frozen
    for _ in range(b.ramp_steps):
        root = brake_root(v, b)
        lo, hi = accel_window(a, b)
        land = (root >= lo) & (root <= hi)
        # A hold starts at the bound itself; from beyond it B first ramps back at full jerk.
        hold = ~land & (((root < lo) & (a == -acc)) | ((root > hi) & (a == acc)))
        holding = holding | (hold & ~frozen)
        frozen = frozen | land | hold
        a_next = clip(root, lo, hi)
        v_next = v + a_next * dt
        q_next = q + v_next * dt
        a = xp.where(frozen, a, a_next)
        v = xp.where(frozen, v, v_next)
        q = xp.where(frozen, q, q_next)
        pos_min, pos_max = xp.minimum(pos_min, q), xp.maximum(pos_max, q)
        vel_min, vel_max = xp.minimum(vel_min, v), xp.maximum(vel_max, v)
        if is_numpy_array(frozen) and frozen.all():
            break  # the host may stop early; a GPU runs every period (no host round trip)
    # The hold at +-A until the landing root comes within reach (v only moves towards 0).
    s = xp.sign(a)
    c = psi(acc, b)
    n_hold = xp.where(holding, clip(xp.ceil((-s * v - c) / (acc * dt)), 0.0, None), 0.0)
    q = q + n_hold * v * dt + s * acc * dt * dt * n_hold * (n_hold + 1.0) / 2.0
    v = v + n_hold * s * acc * dt
    pos_min, pos_max = xp.minimum(pos_min, q), xp.maximum(pos_max, q)
    q_rest = rest_position(q, v, b)
    return Extremes(
        pos_min=xp.minimum(pos_min, q_rest),
        pos_max=xp.maximum(pos_max, q_rest),
        vel_min=xp.minimum(vel_min, 0.0),  # it ends at rest
        vel_max=xp.maximum(vel_max, 0.0),
        complete=frozen,
        rest=q_rest,
    )


def rest_position(q: Array, v: Array, b: JointBounds) -> Array:
    """Where the landing ramp from ``(q, v)`` comes to rest, once B's root is reachable:
    accelerations ``r, r ∓ δ, ...`` down to zero, ``m + 1`` periods for ``|r| = (m+f) δ``."""
    xp = array_namespace(q)
    delta = const(b.delta, q)
    root = brake_root(v, b)
    w = xp.abs(root) / delta
    m = xp.floor(w)
    # sum_{u=0..m} (m+1-u)(w-u): the landing accelerations, each weighted by the periods
    # its velocity change is carried over.
    weights = (m + 1.0) ** 2 * w - (m + 1.0 + w) * m * (m + 1.0) / 2.0
    weights = weights + m * (m + 1.0) * (2.0 * m + 1.0) / 6.0
    return q + b.dt * ((m + 1.0) * v + xp.sign(root) * delta * b.dt * weights)
