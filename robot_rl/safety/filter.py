"""The safety filter: one deterministic guard on every joint command, in sim and on the
robot.

``SafetyFilter.filter(state, command) -> (safe_command, report)`` takes the measured
robot state and the proposed joint-position targets for the next period ``dt``, batched
over worlds (leading axis), and returns targets that keep, on the commanded trajectory:

- joint positions inside the range shrunk by the margin, joint velocity, acceleration
  and jerk inside their limits (judged by finite differences of the commands issued,
  one per ``dt``), and always a stop within the acceleration and jerk limits that stays
  inside the position range (:mod:`robot_rl.safety.braking`,
  :mod:`robot_rl.safety.joint_space`);
- with the robot's MJCF: the TCP and the finger pads inside the envelope's workspace box,
  the TCP's speed under the Cartesian limit, and the arm's collision geoms clear of the
  table and of each other (:mod:`robot_rl.safety.geometry`);
- a controlled stop (the braking policy) for a world whose measured torque is beyond its
  limit, or whose state or command is non-finite, wrongly shaped or wrongly typed.

Targets already inside every limit pass unchanged, bit for bit. After a command had to
be changed, the filter closes on the command stream without overshooting it and passes it
exactly again once the remaining error fits one period. The only state kept is the last
commands: the three issued (their finite differences are the commanded velocity and
acceleration) and the one given (the stream's velocity). Nothing in ``filter`` raises:
an unexpected error becomes a controlled stop of every world, reported as
``internal_error``.

The same code runs on numpy arrays (the host: the single env, the CPU batched simulator,
the robot-side bridge at the driver rate) and on torch tensors on the Warp simulator's
device, without copying to the host. This package never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from robot_rl.arrays import (
    Array,
    array_namespace,
    clip,
    const,
    device_of,
    is_numpy_array,
    to_numpy,
)
from robot_rl.safety.braking import JointBounds, brake_accel, brake_extremes
from robot_rl.safety.description import RobotDescription, load_description
from robot_rl.safety.joint_space import (
    GRID,
    Admissible,
    JointStep,
    Motion,
    joint_step,
    search_where_needed,
    take_rows,
)

#: Bumped whenever the filter's behaviour changes; recorded in provenance.
VERSION = "1.1"

#: A joint target beyond this magnitude (radians) is malformed input, not a position.
PLAUSIBLE_RAD = 1e6

#: Every constraint a report can name, in a fixed order.
CONSTRAINTS = (
    "invalid_input",
    "torque",
    "position",
    "velocity",
    "acceleration",
    "jerk",
    "stop",
    "workspace",
    "cartesian_speed",
    "table",
    "self_distance",
    "internal_error",
)


class RobotState(NamedTuple):
    """Measured joint state, each ``(W, n)``: positions (rad), velocities (rad/s) and
    torques (Nm)."""

    q: Array
    dq: Array
    tau: Array


@dataclass
class SafetyReport:
    """Which constraints acted, per world: ``acted[name]`` is a ``(W,)`` bool array of the
    filter's array library; ``clipped`` is true where the command was changed."""

    acted: dict[str, Array]
    clipped: Array

    def counts(self) -> dict[str, int]:
        """Worlds each constraint acted in (copies to the host)."""
        return {k: int(to_numpy(v).sum()) for k, v in self.acted.items()}

    def constraints(self, world: int) -> list[str]:
        """Names of the constraints that acted in ``world`` (copies to the host)."""
        return [k for k, v in self.acted.items() if bool(to_numpy(v)[world])]


class SafetyFilter:
    """See the module docstring.

    Args:
        description: the robot's description.
        dt: the period between commands in seconds (the driver period on the robot, the
            control period in simulation).
        envelope: a named envelope of the description (``nominal``, ``canary``...).
        geometry: check the Cartesian and distance constraints (needs the description's
            MJCF); default: whenever the description names one.
        compiled: run float64 numpy inputs through the compiled kernel
            (:mod:`robot_rl.safety.compiled`, the same algorithm, bit for bit, at a
            fraction of the cost); False keeps them on the array code. Other inputs
            (torch tensors, float32) always take the array code.
    """

    def __init__(
        self,
        description: RobotDescription,
        dt: float,
        envelope: str = "nominal",
        *,
        geometry: bool | None = None,
        compiled: bool = True,
    ) -> None:
        if not (isinstance(dt, (int, float)) and 0 < dt <= 1.0):
            raise ValueError(f"dt: expected a period in (0, 1] seconds, got {dt!r}")
        self.description = description
        self.envelope = description.envelope(envelope)
        self.dt = float(dt)
        lim = description.limits
        margin = description.joint_pos_margin_rad
        self.bounds = JointBounds(
            dt=self.dt,
            pos_min=lim.joint_pos_min_rad + margin,
            pos_max=lim.joint_pos_max_rad - margin,
            vel=lim.joint_vel_max_rad_s * self.envelope.speed_scale,
            acc=lim.joint_acc_max_rad_s2,
            jerk=lim.joint_jerk_max_rad_s3,
        )
        self.n_joints = lim.n_joints
        self._torque_max = np.asarray(lim.joint_torque_max_nm, dtype=np.float64)
        if geometry is None:
            geometry = description.mjcf is not None
        if geometry and description.mjcf is None:
            raise ValueError(
                f"{description.path}: the Cartesian and distance constraints need 'mjcf'"
            )
        self.geometry = None
        if geometry:
            from robot_rl.safety.geometry import ArmGeometry

            self.geometry = ArmGeometry(description, self.envelope, self.dt)
        self.compiled = bool(compiled)
        self._kernel: tuple | None = None  # the compiled path's tables, built on first use
        self._history: Array | None = None  # (3, W, n): last, previous, one before
        self._given: Array | None = None  # (W, n): the last command given (its velocity)

    @classmethod
    def from_yaml(
        cls, path: str | Path, dt: float, envelope: str = "nominal", **kwargs: Any
    ) -> SafetyFilter:
        """A filter for the description at ``path`` (relative to ``hardware/`` or
        absolute)."""
        return cls(load_description(path), dt, envelope, **kwargs)

    @property
    def n_worlds(self) -> int:
        return 0 if self._history is None else int(self._history.shape[1])

    # --- reset ---------------------------------------------------------------------------
    def reset(self, state: RobotState, worlds: Sequence[int] | Array | None = None) -> None:
        """Starts the commanded trajectory of ``worlds`` (default: all, which also sets
        the number of worlds, the array library, dtype and device) at the measured
        positions, moving at the measured velocities (clipped to the limits).

        Raises:
            ValueError: the state is wrongly shaped or not finite in a world being reset.
        """
        q, dq = state.q, state.dq
        xp = array_namespace(q)
        if q.ndim != 2 or q.shape[-1] != self.n_joints or tuple(dq.shape) != tuple(q.shape):
            raise ValueError(
                f"reset: state.q and state.dq must be (worlds, {self.n_joints}), got "
                f"{tuple(q.shape)} and {tuple(dq.shape)}"
            )
        if worlds is None:
            rows_q, rows_dq = q, dq
        else:
            idx = worlds if not isinstance(worlds, Sequence) else np.asarray(worlds, dtype=np.int64)
            rows_q, rows_dq = q[idx], dq[idx]
        finite = xp.all(xp.isfinite(rows_q)) & xp.all(xp.isfinite(rows_dq))
        if not bool(finite):
            raise ValueError("reset: the measured state has non-finite values")
        vel = const(self.bounds.vel, rows_q)
        v = clip(rows_dq, -vel, vel)
        hist = xp.stack([rows_q, rows_q - v * self.dt, rows_q - 2 * v * self.dt])
        hist = xp.astype(hist, q.dtype)  # the limits (float64) must not promote float32
        if worlds is None:
            self._history = hist
            self._given = hist[0]
        else:
            if self._history is None:
                raise ValueError("reset(state, worlds): reset all worlds once first")
            self._history[:, idx] = hist
            self._given[idx] = hist[0]

    # --- filter --------------------------------------------------------------------------
    def filter(self, state: RobotState, command: Array) -> tuple[Array, SafetyReport]:
        """Safe joint targets for the next period, and what acted (see the module doc)."""
        if self._history is None:
            raise RuntimeError(
                "SafetyFilter.filter before reset(): the filter needs the measured state once "
                "to know where the commanded trajectory starts"
            )
        try:
            # Overflow in a world's arithmetic (a huge finite command) is that world's
            # business, caught below; numpy must not warn, which would raise where
            # warnings are errors and stop every world.
            if self._uses_kernel():
                return self._filter_compiled(state, command)
            with np.errstate(all="ignore"):
                return self._filter(state, command)
        except Exception:  # the control path never raises: it stops instead
            return self._stop_all("internal_error")

    def _stop_all(self, reason: str) -> tuple[Array, SafetyReport]:
        hist = self._history
        xp = array_namespace(hist)
        m = Motion.from_commands(hist[0], hist[1], hist[2], self.dt)
        out = m.step(brake_accel(m.v, m.a, self.bounds), self.dt).q
        out = xp.astype(out, hist.dtype)
        self._push(out)
        self._given = out
        w = hist.shape[1]
        acted = {k: xp.zeros(w, dtype=xp.bool, device=device_of(hist)) for k in CONSTRAINTS}
        acted[reason] = xp.ones(w, dtype=xp.bool, device=device_of(hist))
        return out, SafetyReport(acted, acted[reason])

    def _push(self, out: Array) -> None:
        xp = array_namespace(out)
        self._history = xp.stack([out, self._history[0], self._history[1]])

    def _well_formed(self, x: Any) -> bool:
        """Same array library, dtype, device and shape as the commands issued."""
        hist = self._history
        return (
            type(x) is type(hist)
            and x.dtype == hist.dtype
            and tuple(x.shape) == tuple(hist.shape[1:])
            and device_of(x) == device_of(hist)
        )

    def _filter(self, state: RobotState, command: Array) -> tuple[Array, SafetyReport]:
        hist = self._history
        xp = array_namespace(hist)
        w = hist.shape[1]
        if not self._well_formed(command):
            return self._stop_all("invalid_input")
        fields_ok = isinstance(state, tuple) and len(state) == 3
        if not fields_ok or not all(self._well_formed(x) for x in state):
            return self._stop_all("invalid_input")
        m = Motion.from_commands(hist[0], hist[1], hist[2], self.dt)
        # Non-finite targets, or targets no joint could mean (beyond PLAUSIBLE_RAD), are
        # malformed input: that world stops.
        finite_cmd = xp.isfinite(command) & (xp.abs(command) <= PLAUSIBLE_RAD)
        state_ok = xp.all(
            xp.isfinite(state.q) & xp.isfinite(state.dq) & xp.isfinite(state.tau), axis=-1
        )
        invalid = ~xp.all(finite_cmd, axis=-1) | ~state_ok
        torque = xp.any(xp.abs(state.tau) > const(self._torque_max, hist), axis=-1)
        stop = invalid | torque
        a_brake = brake_accel(m.v, m.a, self.bounds)
        q_brake = m.step(a_brake, self.dt).q
        cmd = xp.where(stop[:, None] | ~finite_cmd, q_brake, command)
        fast = is_numpy_array(hist)
        js = joint_step(m, cmd, self.bounds, fast=fast, previous_command=self._given)
        accel = xp.where(stop[:, None], a_brake, js.accel)
        exact = js.exact & ~stop[:, None]
        acted = dict(js.acted)
        if self.geometry is not None:
            accel, exact, cart = self._cartesian(m, a_brake, accel, exact, js, fast)
            acted.update(cart)
        for k in acted:
            acted[k] = acted[k] & ~stop
        out = xp.where(exact, command, m.step(accel, self.dt).q)
        # Last line: a world whose result is not finite stops (never seen; kept because a
        # NaN must never reach an arm).
        broken = ~xp.all(xp.isfinite(out), axis=-1)
        out = xp.where(broken[:, None], q_brake, out)
        out = xp.astype(out, hist.dtype)
        self._push(out)
        self._given = xp.where((stop | broken)[:, None] | ~finite_cmd, out, command)
        zeros = xp.zeros(w, dtype=xp.bool, device=device_of(hist))
        report = {k: acted.get(k, zeros) for k in CONSTRAINTS}
        report["invalid_input"] = invalid
        report["torque"] = torque & ~invalid
        report["internal_error"] = report["internal_error"] | broken
        clipped = ~xp.all(exact, axis=-1) | broken
        return out, SafetyReport(report, clipped)

    def _uses_kernel(self) -> bool:
        hist = self._history
        return self.compiled and type(hist) is np.ndarray and hist.dtype == np.float64

    def _filter_compiled(self, state: RobotState, command: Array) -> tuple[Array, SafetyReport]:
        """``_filter`` for float64 numpy arrays, in the compiled kernel."""
        hist = self._history
        shape = hist.shape[1:]

        def well_formed(x: Any) -> bool:
            return type(x) is np.ndarray and x.dtype == np.float64 and x.shape == shape

        fields_ok = isinstance(state, tuple) and len(state) == 3
        if not (well_formed(command) and fields_ok and all(well_formed(x) for x in state)):
            return self._stop_all("invalid_input")
        if self._kernel is None:  # numba loads on first use: the GPU path never needs it
            from robot_rl.safety import compiled

            geo = None
            if self.geometry is not None:
                from robot_rl.safety.compiled_geometry import pack

                geo = pack(self.geometry)
            lim = compiled.limit_table(self.bounds, self._torque_max)
            self._kernel = (compiled.filter_worlds, lim, geo)
        kernel, lim, geo = self._kernel
        w, n = shape
        out, given, history = np.empty((w, n)), np.empty((w, n)), np.empty((3, w, n))
        flags, clipped = np.empty((w, len(CONSTRAINTS)), dtype=bool), np.empty(w, dtype=bool)
        c = np.ascontiguousarray
        kernel(
            c(hist), c(self._given), c(command), c(state.q), c(state.dq), c(state.tau),
            lim, self.dt, self.bounds.ramp_steps, GRID, PLAUSIBLE_RAD, geo,
            out, given, history, flags, clipped,
        )  # fmt: skip
        self._history, self._given = history, given
        return out, SafetyReport(dict(zip(CONSTRAINTS, flags.T, strict=True)), clipped)

    def _cartesian(
        self, m: Motion, a_brake: Array, accel: Array, exact: Array, js: JointStep, fast: bool
    ) -> tuple[Array, Array, dict[str, Array]]:
        """Per world, the largest step ``μ`` from the braking acceleration towards the
        joint stage's choice whose next point and braking rest point keep the Cartesian
        and distance constraints (and the joint ones: the search segment changes)."""
        xp = array_namespace(accel)
        geo, dt, b = self.geometry, self.dt, self.bounds
        tcp_now = geo.tcp(m.q)

        def check(m_: Motion, adm: Admissible, tcp: Array, acc_: Array) -> tuple[Array, dict]:
            nxt = m_.step(acc_, dt)
            ex = brake_extremes(nxt.q, nxt.v, nxt.a, b)
            bad = geo.violations(nxt.q, ex.rest, tcp)
            ok = xp.all(adm(ex), axis=-1)
            for v in bad.values():
                ok = ok & ~v
            return ok, bad

        ok_full, bad_full = check(m, js.admissible, tcp_now, accel)

        def on(rows: np.ndarray | None) -> Callable[[Array], Array]:
            mm, tcp = m.rows(rows), take_rows(tcp_now, rows)
            adm = js.admissible if rows is None else js.admissible.rows(rows)
            ab, ac = take_rows(a_brake, rows), take_rows(accel, rows)
            return lambda f: check(mm, adm, tcp, ab + f[..., None] * (ac - ab))[0]

        mu = search_where_needed(ok_full, on, accel, fast)
        full = mu[:, None] >= 1.0
        new_accel = xp.where(full, accel, a_brake + mu[:, None] * (accel - a_brake))
        acted = {k: v & ~ok_full for k, v in bad_full.items()}
        return new_accel, exact & full, acted
