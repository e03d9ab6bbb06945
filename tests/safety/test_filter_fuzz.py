"""The safety filter under abuse, batched: random jumps, NaN/inf bursts, huge values,
limit hugging, chatter at the Nyquist rate, corrupted states, torques beyond the limit,
and inputs of the wrong shape, dtype or library. Whatever comes in, nothing raises, every
command issued stays inside every joint limit (finite differences, as in
``test_filter_properties``), and what cannot be trusted is reported and braked. Also: the
same code on torch tensors, a torque stop in one world of many, and that the package
never imports torch.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
import torch

from robot_rl.safety.braking import JointBounds, brake_accel
from robot_rl.safety.filter import CONSTRAINTS, PLAUSIBLE_RAD, RobotState, SafetyFilter
from tests.safety.test_filter_properties import (
    Arm,
    assert_within_limits,
    derivatives,
    random_arm,
    reset_history,
    smooth_stream,
)

PANDA = "franka_panda/robot.yaml"

# Huge finite commands make the filter's numpy arithmetic overflow (to inf, which it then
# clips): expected here, and reported as a bug where warnings are errors (see
# test_a_huge_command_stops_no_other_world_where_warnings_are_errors).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")

KINDS = ("track", "jump", "nonfinite", "huge", "hug", "chatter", "beyond", "walk")
HUGE = np.array([1e300, 1e308, np.finfo(np.float64).max, 1e-300])


def _malformed_command(c: np.ndarray):
    return {
        "float32": lambda: c.astype(np.float32),
        "int64": lambda: np.rint(np.clip(np.nan_to_num(c), -9, 9)).astype(np.int64),
        "bool": lambda: c > 0,
        "object": lambda: c.astype(object),
        "list": lambda: c.tolist(),
        "None": lambda: None,
        "torch": lambda: torch.from_numpy(c.copy()),
        "masked": lambda: np.ma.masked_array(c),
        "joint fewer": lambda: c[:, :-1],
        "joint more": lambda: np.concatenate([c, c[:, :1]], axis=1),
        "world more": lambda: np.concatenate([c, c[:1]]),
        "flat": lambda: c.reshape(-1),
        "3-d": lambda: c[None],
        "float": lambda: 0.5,
        "numpy scalar": lambda: np.float64(0.5),
        "string": lambda: "0.5",
    }


def _malformed_state(s: RobotState):
    return {
        "state None": lambda: None,
        "state pair": lambda: (s.q, s.dq),
        "state list": lambda: [s.q, s.dq, s.tau],
        "state dict": lambda: s._asdict(),
        "state float32": lambda: RobotState(s.q, s.dq, s.tau.astype(np.float32)),
        "state torch": lambda: RobotState(*(torch.from_numpy(x.copy()) for x in s)),
        "state joint fewer": lambda: RobotState(*(x[:, :-1] for x in s)),
        "state world fewer": lambda: RobotState(*(x[:-1] for x in s)),
    }


MALFORMED = tuple(_malformed_command(None)) + tuple(_malformed_state(None))


class Fuzzer:
    """Inputs for one period of ``W`` worlds, from the commanded trajectory so far: each
    world follows a kind of stream for a while (``KINDS``), its state is sometimes
    corrupted or its torque beyond the limit, and now and then the whole call is
    malformed. Also says what the filter must report."""

    def __init__(self, arm: Arm, worlds: int, seed: int, malformed: float = 0.02):
        self.arm, self.w, self.malformed = arm, worlds, malformed
        self.rng = np.random.default_rng(seed)
        self.kind = self.rng.integers(0, len(KINDS), worlds)
        self.center = self.rng.uniform(arm.lo, arm.hi, (worlds, arm.n))
        self.amp = self.rng.uniform(1e-6, 1.0, (worlds, 1)) * arm.span
        self.counts: Counter = Counter()

    def inputs(self, traj: np.ndarray, k: int):
        """``traj``: the trajectory so far (last row the last command issued); ``k``:
        the period. Returns ``(command, state, invalid, torque, malformed name)``."""
        arm, rng, w, n = self.arm, self.rng, self.w, self.arm.n
        lo, hi, span = arm.lo, arm.hi, arm.span
        last = traj[-1]
        switch = rng.random(w) < 0.05
        self.kind = np.where(switch, rng.integers(0, len(KINDS), w), self.kind)
        self.center = np.where(
            switch[:, None], rng.uniform(lo - 0.2 * span, hi + 0.2 * span, (w, n)), self.center
        )
        u = rng.random((w, n))
        options = {
            "track": last + rng.normal(0, 1e-5, (w, n)) * span,
            "jump": rng.uniform(lo - span, hi + span, (w, n)),
            "nonfinite": np.where(
                (u < 0.3) | (np.arange(n) == rng.integers(0, n, (w, 1))),
                rng.choice([np.nan, np.inf, -np.inf], (w, n)),
                last,
            ),
            "huge": np.where(u < 0.5, rng.choice([-1, 1], (w, n)) * rng.choice(HUGE, (w, n)), last),
            "hug": np.nextafter(
                np.where(u < 0.5, lo, hi), rng.choice([np.inf, -np.inf, 0.0], (w, n))
            ),
            "chatter": self.center + self.amp * (-1.0) ** k,
            "beyond": np.where(self.center > (lo + hi) / 2, hi + 10 * span, lo - 10 * span),
            "walk": last + rng.normal(0, 0.02, (w, n)) * span,
        }
        cmd = np.empty((w, n))
        for i, name in enumerate(KINDS):
            cmd = np.where((self.kind == i)[:, None], options[name], cmd)
        self.counts.update(KINDS[i] for i in self.kind)

        dt = arm.dt
        q, dq, tau = last.copy(), (last - traj[-2]) / dt, np.zeros((w, n))
        # Corrupt states, torques beyond the limit, torques exactly at it (not a stop).
        what = rng.choice(8, w, p=[0.94, 0.01, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005])
        j = rng.integers(0, n, w)
        rows = np.arange(w)
        sign = rng.choice([-1.0, 1.0], w)
        q[rows[what == 1], j[what == 1]] = np.nan
        dq[rows[what == 2], j[what == 2]] = sign[what == 2] * np.inf
        tau[rows[what == 3], j[what == 3]] = np.nan
        tau[rows[what == 4], j[what == 4]] = (sign * 1.5 * arm.torque[j])[what == 4]
        tau[rows[what == 5], j[what == 5]] = (sign * arm.torque[j])[what == 5]
        tau[rows[what == 6], j[what == 6]] = (sign * np.nextafter(arm.torque[j], np.inf))[what == 6]
        q[rows[what == 7], j[what == 7]] = 1e300  # a wild but finite measurement
        self.counts.update(f"state {i}" for i in what)
        state = RobotState(q, dq, tau)
        # Targets beyond PLAUSIBLE_RAD are malformed input, as non-finite ones are.
        plausible = np.all(np.isfinite(cmd) & (np.abs(cmd) <= PLAUSIBLE_RAD), -1)
        finite = plausible & np.all(np.isfinite(q) & np.isfinite(dq), -1)
        invalid = ~(finite & np.all(np.isfinite(tau), -1))
        torque = np.any(np.abs(tau) > arm.torque, -1) & ~invalid

        bad = None
        if rng.random() < self.malformed:
            bad = MALFORMED[sum(self.counts[m] for m in MALFORMED) % len(MALFORMED)]
            with np.errstate(all="ignore"):  # float32 of 1e300 is inf: as malformed
                if bad.startswith("state"):
                    state = _malformed_state(state)[bad]()
                else:
                    cmd = _malformed_command(cmd)[bad]()
            invalid, torque = np.ones(w, bool), np.zeros(w, bool)
            self.counts[bad] += 1
        return cmd, state, invalid, torque, bad


def brake_step(traj: np.ndarray, arm: Arm) -> np.ndarray:
    """The next command of the braking policy from the last three commands, worked out
    here from the arm's limits."""
    b = JointBounds(arm.dt, arm.lo, arm.hi, arm.vel, arm.acc, arm.jerk)
    v1 = (traj[-1] - traj[-2]) / arm.dt
    v0 = (traj[-2] - traj[-3]) / arm.dt
    a = (v1 - v0) / arm.dt
    return traj[-1] + (v1 + brake_accel(v1, a, b) * arm.dt) * arm.dt


def fuzz(f: SafetyFilter, arm: Arm, q0, steps: int, seed: int, keep: list | None = None) -> Counter:
    """Runs the fuzz (every kind of malformed call in turn); checks every period's report
    and braking, then the whole trajectory's limits. Returns what was exercised; the
    commands issued are appended to ``keep``."""
    worlds = q0.shape[0]
    fz = Fuzzer(arm, worlds, seed)
    f.reset(RobotState(q0, np.zeros_like(q0), np.zeros_like(q0)))
    traj = np.empty((steps + 3, worlds, arm.n))
    traj[:3] = reset_history(q0, np.zeros_like(q0), arm.dt, arm.vel)
    for k in range(steps):
        hist = traj[: k + 3]
        cmd, state, invalid, torque, bad = fz.inputs(hist, k)
        out, report = f.filter(state, cmd)
        where = f"period {k}, malformed: {bad}"
        assert isinstance(out, np.ndarray) and out.shape == q0.shape, where
        assert out.dtype == np.float64, where
        stop = invalid | torque
        np.testing.assert_array_equal(report.acted["invalid_input"], invalid, err_msg=where)
        np.testing.assert_array_equal(report.acted["torque"], torque, err_msg=where)
        assert not np.any(report.acted["internal_error"]), where
        for name in CONSTRAINTS[2:]:
            assert not np.any(report.acted[name][stop]), (where, name)
        assert np.all(report.clipped[stop]), where
        np.testing.assert_allclose(
            out[stop], brake_step(hist, arm)[stop], rtol=0, atol=1e-12, err_msg=where
        )
        traj[k + 3] = out
        fz.counts.update({f"acted {name}": int(np.sum(v)) for name, v in report.acted.items()})
    assert_within_limits(traj, arm)
    if keep is not None:
        keep.extend(traj[3:])
    return fz.counts


def _panda_worlds(f: SafetyFilter, worlds: int, seed: int) -> np.ndarray:
    """Start postures: anywhere in the joint range (the limits bind within a second at
    1 kHz); with geometry, near home (clear of the table and of the arm itself)."""
    rng = np.random.default_rng(seed)
    if f.geometry is None:
        arm = Arm.of(f)
        return rng.uniform(arm.lo, arm.hi, (worlds, arm.n))
    home = f.description.limits.home_joint_pos_rad
    return home + rng.uniform(-0.05, 0.05, (worlds, home.size))


def _check_coverage(counts: Counter, malformed_calls: int) -> None:
    for kind in KINDS:
        assert counts[kind] > 0, kind
    assert sum(counts[m] for m in MALFORMED) >= malformed_calls


def test_fuzz_a_million_commands():
    """10^6 filtered commands of the Panda at its 1 kHz driver rate: 1000 worlds x 1000
    periods, every kind of malformed call among them (10-15 s on 2 cores)."""
    f = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
    counts = fuzz(f, Arm.of(f), _panda_worlds(f, 1000, 1), 1000, seed=2)
    _check_coverage(counts, len(MALFORMED))


@pytest.mark.parametrize(
    "worlds,steps",
    [(40, 150), pytest.param(200, 500, marks=pytest.mark.slow, id="1e5")],
)
def test_fuzz_nine_joints_at_a_policy_rate(worlds, steps):
    """A random nine-joint arm at 20 Hz, where a jerk-limited ramp spans up to 60
    periods (each filter call steps them: the slow case takes ~40 s)."""
    arm = random_arm(np.random.default_rng(8), 9, 0.05)
    q0 = np.random.default_rng(9).uniform(arm.lo, arm.hi, (worlds, arm.n))
    _check_coverage(fuzz(arm.filter(), arm, q0, steps, seed=3), 2)


def test_fuzz_panda_with_geometry():
    """At a 20 Hz policy rate, with the MJCF's Cartesian and distance constraints on top:
    the joint limits still hold and bad input is still braked; and every command issued
    keeps the table and link clearances, the TCP in the workspace box and under the
    Cartesian speed (as the filter's own geometry measures them), each of which acted."""
    f = SafetyFilter.from_yaml(PANDA, dt=0.05)
    geo = f.geometry
    assert geo is not None
    q0 = _panda_worlds(f, 12, 2)
    kept: list = []
    counts = fuzz(f, Arm.of(f), q0, 120, seed=4, keep=kept)
    _check_coverage(counts, 1)
    for name in ("workspace", "cartesian_speed", "table", "self_distance"):
        assert counts[f"acted {name}"] > 0, name
    issued = np.stack(kept)
    assert np.all(geo.table_margins(issued) >= -1e-12)
    assert np.all(geo.pair_distances(issued) >= geo.link_clearance - 1e-12)
    tcp = geo.tcp(np.concatenate([q0[None], issued]))
    assert np.all((tcp >= geo.box_min) & (tcp <= geo.box_max))
    speed = np.linalg.norm(np.diff(tcp, axis=0), axis=-1) / f.dt
    assert np.all(speed <= geo.speed_max * (1 + 1e-9))


# --- numpy and torch ------------------------------------------------------------------


def _same_on_torch(f_np: SafetyFilter, f_t: SafetyFilter, arm: Arm, q0, steps, seed):
    """Runs both filters on the same fuzz (well-formed calls) and compares every
    period's commands and reports."""
    fz = Fuzzer(arm, q0.shape[0], seed, malformed=0.0)
    z = np.zeros_like(q0)
    f_np.reset(RobotState(q0, z, z))
    f_t.reset(RobotState(*(torch.from_numpy(x.copy()) for x in (q0, z, z))))
    traj = list(reset_history(q0, z, arm.dt, arm.vel))
    for k in range(steps):
        cmd, state, *_ = fz.inputs(np.stack(traj[-3:]), k)
        out, rep = f_np.filter(state, cmd)
        out_t, rep_t = f_t.filter(
            RobotState(*(torch.from_numpy(x.copy()) for x in state)), torch.from_numpy(cmd)
        )
        assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
        np.testing.assert_allclose(out_t.numpy(), out, rtol=1e-12, atol=1e-12, err_msg=str(k))
        for name in CONSTRAINTS:
            assert isinstance(rep_t.acted[name], torch.Tensor)
            np.testing.assert_array_equal(rep_t.acted[name].numpy(), rep.acted[name], name)
        np.testing.assert_array_equal(rep_t.clipped.numpy(), rep.clipped)
        traj.append(out)
    # Each library's arrays are the other's malformed input.
    state = RobotState(*(torch.from_numpy(x) for x in (traj[-1], z, z)))
    _, rep_t = f_t.filter(state, traj[-1])
    assert bool(rep_t.acted["invalid_input"].all())
    _, rep_t = f_t.filter(state, torch.from_numpy(traj[-1]).float())
    assert bool(rep_t.acted["invalid_input"].all())
    _, rep = f_np.filter(RobotState(traj[-1], z, z), torch.from_numpy(traj[-1]))
    assert rep.acted["invalid_input"].all()


@pytest.mark.parametrize("case", ["panda_1khz", "nine_joints_20hz"])
def test_torch_tensors_give_the_numpy_results(case):
    if case == "panda_1khz":
        f_np = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
        f_t = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
        arm = Arm.of(f_np)
        # Within 0.02 rad of a limit, so that 150 ms bring the stop search into play.
        rng = np.random.default_rng(3)
        q0 = np.where(rng.random((16, arm.n)) < 0.5, arm.lo + 0.02, arm.hi - 0.02)
    else:
        arm = random_arm(np.random.default_rng(12), 9, 0.05)
        f_np, f_t = arm.filter(), arm.filter()
        q0 = np.random.default_rng(13).uniform(arm.lo, arm.hi, (16, arm.n))
    _same_on_torch(f_np, f_t, arm, q0, 150 if case == "panda_1khz" else 50, seed=5)


def test_torch_tensors_give_the_numpy_results_with_geometry():
    f_np, f_t = (SafetyFilter.from_yaml(PANDA, dt=0.01) for _ in range(2))
    _same_on_torch(f_np, f_t, Arm.of(f_np), _panda_worlds(f_np, 4, 4), 40, 6)


def test_the_safety_package_does_not_import_torch():
    code = (
        "import sys, robot_rl.safety.filter, robot_rl.safety.geometry, "
        "robot_rl.safety.braking, robot_rl.safety.joint_space, robot_rl.safety.description; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- torque ----------------------------------------------------------------------------


def test_torque_beyond_the_limit_stops_that_world_only():
    """Four Panda worlds at 1 kHz on one smooth stream; from period 20 world 2 reports a
    torque beyond the limit (negative, on one joint) and world 1 a torque exactly at it.
    World 2 brakes within the acceleration and jerk limits to rest; every other world
    issues exactly what it issues without the torque; only world 2 reports ``torque``."""
    f = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
    arm = Arm.of(f)
    q0, dq0, commands = smooth_stream(arm, np.random.default_rng(0), 4, 400)
    q0, dq0 = q0[[0, 0, 0, 0]], dq0[[0, 0, 0, 0]]  # one stream, four worlds
    commands = commands[:, [0, 0, 0, 0]]

    def run(torque_on: bool):
        f.reset(RobotState(q0, dq0, np.zeros_like(q0)))
        traj = list(reset_history(q0, dq0, arm.dt, arm.vel))
        reports = []
        for k, cmd in enumerate(commands):
            tau = np.zeros_like(q0)
            if torque_on and k >= 20:
                tau[1] = arm.torque
                tau[2, 4] = -arm.torque[4] * 1.01
            dq = (traj[-1] - traj[-2]) / arm.dt
            out, report = f.filter(RobotState(traj[-1], dq, tau), cmd)
            traj.append(out), reports.append(report)
        return np.stack(traj), reports

    ref, _ = run(False)
    traj, reports = run(True)
    others = [0, 1, 3]
    assert np.array_equal(traj[:, others], ref[:, others])
    assert np.array_equal(traj[:23, 2], ref[:23, 2])
    assert not np.array_equal(traj[23:, 2], ref[23:, 2])
    assert_within_limits(traj, arm)
    vel, acc = derivatives(traj[:, 2:3], arm.dt)
    assert np.all(np.abs(vel[-20:]) <= 1e-9) and np.all(np.abs(acc[-20:]) <= 1e-6), "no rest"
    for k, report in enumerate(reports):
        assert report.constraints(2) == (["torque"] if k >= 20 else [])
        assert report.constraints(1) == []
        np.testing.assert_array_equal(report.acted["torque"], [False, False, k >= 20, False])
        assert report.counts()["torque"] == (1 if k >= 20 else 0)
    # Braked by the braking policy itself, period by period.
    for k in range(23, traj.shape[0]):
        np.testing.assert_allclose(
            traj[k, 2], brake_step(traj[k - 3 : k, 2], arm), rtol=0, atol=1e-12
        )


# --- dtypes and warnings ---------------------------------------------------------------


def test_a_float32_numpy_filter_accepts_float32_commands():
    f = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
    q = np.tile(f.description.limits.home_joint_pos_rad, (2, 1)).astype(np.float32)
    z = np.zeros_like(q)
    f.reset(RobotState(q, z, z))
    for _ in range(3):
        out, report = f.filter(RobotState(q, z, z), q.copy())
        assert not report.acted["invalid_input"].any()
        assert out.dtype == np.float32


def test_a_huge_command_stops_no_other_world_where_warnings_are_errors():
    f = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
    q = np.tile(f.description.limits.home_joint_pos_rad, (2, 1))
    z = np.zeros_like(q)
    f.reset(RobotState(q, z, z))
    cmd = q.copy()
    cmd[0, 0] = 1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, report = f.filter(RobotState(q, z, z), cmd)
    assert not report.acted["internal_error"].any()
    assert report.constraints(1) == [] and np.array_equal(out[1], q[1])


def test_resetting_some_worlds_leaves_the_others_alone():
    f = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
    arm = Arm.of(f)
    q0, dq0, commands = smooth_stream(arm, np.random.default_rng(1), 3, 30)
    z = np.zeros_like(q0)
    f.reset(RobotState(q0, dq0, z))
    traj = list(reset_history(q0, dq0, arm.dt, arm.vel))
    for cmd in commands[:20]:
        out, _ = f.filter(RobotState(traj[-1], (traj[-1] - traj[-2]) / arm.dt, z), cmd)
        traj.append(out)
    q1 = traj[-1] + 0.01  # world 1 is found elsewhere, moving fast
    f.reset(RobotState(q1, 10 * np.ones_like(q1), z), worlds=[1])
    start = reset_history(q1, 10 * np.ones_like(q1), arm.dt, arm.vel)
    traj[-3:] = [
        np.where(np.arange(3)[:, None] == 1, s, t) for s, t in zip(start, traj[-3:], strict=True)
    ]
    for cmd in commands[20:]:
        out, report = f.filter(RobotState(traj[-1], (traj[-1] - traj[-2]) / arm.dt, z), cmd)
        traj.append(out)
        assert np.array_equal(out[[0, 2]], cmd[[0, 2]])
        assert report.constraints(0) == report.constraints(2) == []
    assert_within_limits(np.stack(traj[20:]), arm)
