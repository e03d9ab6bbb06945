"""Safety filter cost: one call at the robot's driver rate, and batched calls at the
simulator's control rate against a ``cpu`` ``BatchedSim`` control step, all in one run.

The filter is ``SafetyFilter.from_yaml("franka_panda/robot.yaml", dt, geometry=...)``,
timed twice everywhere: the joint-space part alone (``geometry=False``, the ``joint``
rows) and the full filter with the Cartesian and distance constraints (``geometry=True``,
the ``full`` rows). The Cartesian part's cost is full minus joint.

Every call is made twice on the same inputs: by the filter as users get it (float64
numpy: the compiled kernel, :mod:`robot_rl.safety.compiled`), which is what the goals
judge, and then by the same filter on its array code (``compiled=False``: the code the
GPU path runs, here on numpy), timed apart and reported beside it (``array``; for one
world in a second pass over the recorded inputs, so that the array code's work does not
evict the compiled filter's caches between its calls). The two
must issue the same commands bit for bit (``mismatched_calls``, expected 0), and the
array code's searches name each call's path (below).

**One world at the driver period** (dt = 1 ms): ``--calls`` timed calls (default 20k,
``--quick`` 2k) after ``--warmup`` untimed ones, in a 1 kHz driver loop. The commands
are a 20 Hz policy's waypoints interpolated by the driver: every 50 ms a quintic from
the position, velocity and acceleration of the commands the filter last issued (so the
stream re-joins the filter's trajectory every policy period) to the next waypoint. The
waypoints (seeded) are a smooth motion about the home posture (two sinusoids per joint,
together under 1.2 rad/s and 4.3 rad/s^2), limit hugging (every 8 s the shoulder, the
elbow or the wrist pitch in turn is driven 0.05 rad beyond the end of its range nearer
home, cosine ramps peaking at 1 rad/s, held there 1 s: the filter brakes ahead of the
margin and holds the joint at it) and occasional steps of the target (0.5/s: one joint,
0.05-0.3 rad, kept); on top, a one-period glitch (0.5/s: 1-3 joints, N(0, 0.2 rad), one
call). The measured state is perfect tracking: the last issued positions, their
finite-difference velocities, and torques of N(0, 1 Nm). Each call is timed alone
(``perf_counter_ns``); the joint and full filters run their loops from the same start in
alternating blocks of 1000 calls, so a drift in machine load hits both. Reported:
p50/p99/p99.9/max latency, the fraction of calls whose command was modified, how often
each constraint acted, and the latency by path: ``pass`` (unchanged), ``clipped``
(changed, no search), ``joint_search`` (the joint stage's segment search ran) and
``cartesian_search`` (the Cartesian stage's search ran). The paths are read from the array code's
searches (wrapped; outside the timed call of the compiled filter).

**Batched** (dt = the control period, 0.05 s; ``--worlds``, default 1024, 4096, 16384):
three ``BatchedSim(n, TaskConfig(name="push"), seed=0)`` step the same random actions in
[-1, 1]: ``sim`` without a filter (the baseline), and one each with the joint and the
full filter in its ``command_filter`` hook (so the filter sees the targets the sim's IK
makes from those actions, and its output becomes the sim's command). Inside the hook the
filter call alone is timed; its state is the measured joint positions with zero
velocities and torques (the filter reads the state only for finiteness and the torque
limit), and it is reset at the sim's first step. After one untimed step, ``--repeats``
steps are timed (the three sims take turns going first); every timed step lies inside the
first episode horizon (push: 100 steps), so no world auto-resets except on success.
Reported: median filter call, median sim step without a filter, their ratio (median of
the per-step ratios), how many worlds' commands were modified and which constraints
acted, and the sim step with the filter in the loop as a cross-check. The sim steps its
worlds on ``--threads`` threads; the filter runs in the calling thread.

The Cartesian stage searches every world as soon as one world needs it, which these
first steps of an episode rarely do. So, per world count, ``full_one_world_searching``
times the full filter alone (``--search-repeats`` calls, default 3) where exactly that
happens: every world near home moving a little, world 0 driving its hand down into the
table clearance; its ratio is to the same sim step. And the episode probe
(``--episode-worlds``, default 256, ``--quick`` 64, 0: none) runs one whole push episode
(100 steps) of random actions with the full filter in the hook, beside the sim without
one: in how many steps the Cartesian search ran, and the filter's cost with and without.

``--profile`` adds cProfile tables of the full filter (top functions by own and by
cumulative time, per call): one world at 1 ms over ``--profile-calls`` calls of the
stream, and at ``--profile-worlds`` worlds inside the sim's hook over a few steps and on
one call with world 0 searching.

Goals (reported, not asserted): one call <= 100 us at p99; at 1024 worlds the filter
costs <= 5% of a cpu ``BatchedSim`` control step.

    python benchmarks/safety_filter.py [--quick] [--worlds 1024,4096,16384] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

import robot_rl.safety.filter as filter_module
import robot_rl.safety.joint_space as joint_space
from robot_rl.config.sim import SimConfig, TaskConfig
from robot_rl.safety.filter import RobotState, SafetyFilter
from robot_rl.sim.batched import BatchedSim

ROBOT = "franka_panda/robot.yaml"
DRIVER_DT_S = 0.001
BLOCK = 1000  # calls per turn when the joint and full filters alternate
STEP_RATE_HZ = 0.5
GLITCH_RATE_HZ = 0.5
HUG_JOINTS = (1, 3, 5)  # shoulder, elbow, wrist pitch: each within 1.6 rad of a limit at home
HUG_CYCLE_S, HUG_HOLD_S = 8.0, 1.0
HUG_SPEED_RAD_S = 1.0  # peak speed of the ramps to and from the limit
VARIANTS = {"joint": False, "full": True}
PATHS = ("pass", "clipped", "joint_search", "cartesian_search")


class Paired:
    """A filter and the same filter on its array code, on the same inputs: the first is
    timed and drives the loop; the second is timed apart, tells the path through its
    searches and must issue the same commands."""

    def __init__(self, dt: float, geometry: bool, log: SearchLog) -> None:
        self.f = SafetyFilter.from_yaml(ROBOT, dt=dt, geometry=geometry)
        self.ref = SafetyFilter.from_yaml(ROBOT, dt=dt, geometry=geometry, compiled=False)
        self.log = log
        self.description = self.f.description
        self.mismatched_calls = 0

    def reset(self, state: RobotState, worlds=None) -> None:
        self.f.reset(state, worlds)
        self.ref.reset(state, worlds)

    def filter(self, state: RobotState, command: np.ndarray, profiler=None):
        """``(out, report, seconds, array_seconds)``; the log holds the array code's
        searches."""
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter_ns()
        out, report = self.f.filter(state, command)
        t1 = time.perf_counter_ns()
        if profiler is not None:
            profiler.disable()
        self.log.clear()
        ref, _ = self.ref.filter(state, command)
        t2 = time.perf_counter_ns()
        if not np.array_equal(out, ref):
            self.mismatched_calls += 1
        return out, report, (t1 - t0) * 1e-9, (t2 - t1) * 1e-9


class SearchLog:
    """Which searches the array code's last call ran: wraps ``search_where_needed`` as the
    joint stage's safety search (``fast=True``; its tracking goal's search is not counted)
    and the Cartesian stage look it up (module globals, at call time), and counts the
    worlds each one searched."""

    def __init__(self) -> None:
        self.joint_rows = 0  # worlds the joint stage searched
        self.cartesian = False

    def clear(self) -> None:
        self.joint_rows, self.cartesian = 0, False

    def path(self, clipped: bool) -> str:
        if self.cartesian:
            return "cartesian_search"
        if self.joint_rows:
            return "joint_search"
        return "clipped" if clipped else "pass"

    def __enter__(self) -> SearchLog:
        self._saved = joint_space.search_where_needed, filter_module.search_where_needed
        inner_joint, inner_cart = self._saved

        def searched(ok) -> int:
            return int(np.sum(~np.all(np.reshape(ok, (ok.shape[0], -1)), axis=-1)))

        def joint_search(ok, fraction_ok_on, like, fast):
            if fast:
                self.joint_rows += searched(ok)
            return inner_joint(ok, fraction_ok_on, like, fast)

        def cartesian_search(ok, fraction_ok_on, like, fast):
            self.cartesian = self.cartesian or searched(ok) > 0
            return inner_cart(ok, fraction_ok_on, like, fast)

        joint_space.search_where_needed = joint_search
        filter_module.search_where_needed = cartesian_search
        return self

    def __exit__(self, *exc) -> None:
        joint_space.search_where_needed, filter_module.search_where_needed = self._saved


# --- one world at the driver rate ------------------------------------------------------------
POLICY_PERIOD = 50  # driver periods per policy waypoint (20 Hz)


def waypoints(n: int, f: SafetyFilter, seed: int) -> np.ndarray:
    """``n`` policy waypoints at 20 Hz, ``(n, n_joints)``: the smooth motion, the steps and
    the limit hugging of the module docstring."""
    lim = f.description.limits
    dt = DRIVER_DT_S * POLICY_PERIOD
    n_j = lim.n_joints
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] * dt
    home = lim.home_joint_pos_rad
    ref = np.broadcast_to(home, (n, n_j)).copy()
    for _ in range(2):  # together under 1.2 rad/s and 4.3 rad/s^2
        amp, freq = rng.uniform(0.05, 0.15, n_j), rng.uniform(0.2, 0.6, n_j)
        ref += amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, n_j))
    offset = np.zeros(n_j)  # steps of the target, each kept until that joint's next
    for k in range(n):
        if rng.random() < STEP_RATE_HZ * dt:
            j = rng.integers(n_j)
            change = rng.choice([-1, 1]) * rng.uniform(0.05, 0.3)
            offset[j] = np.clip(offset[j] + change, -0.3, 0.3)
        ref[k] += offset
    # Limit hugging: one joint per cycle, towards the end of its range nearer home.
    lo, hi = lim.joint_pos_min_rad, lim.joint_pos_max_rad
    beyond = np.where(hi - home < home - lo, hi + 0.05, lo - 0.05)
    joint = np.asarray(HUG_JOINTS)[(t[:, 0] // HUG_CYCLE_S).astype(int) % len(HUG_JOINTS)]
    phase = t[:, 0] % HUG_CYCLE_S
    ramp = (np.pi / 2 * np.abs(beyond - home) / HUG_SPEED_RAD_S)[joint]  # cosine ramps
    hold = HUG_HOLD_S
    s = np.select(
        [phase < ramp, phase < ramp + hold, phase < 2 * ramp + hold],
        [
            (1 - np.cos(np.pi * phase / ramp)) / 2,
            np.ones_like(phase),
            (1 + np.cos(np.pi * (phase - ramp - hold) / ramp)) / 2,
        ],
        0.0,
    )
    rows = np.arange(n)
    ref[rows, joint] += s * (beyond[joint] - ref[rows, joint])
    return ref


def glitches(n_calls: int, n_joints: int, seed: int) -> np.ndarray:
    """One-period glitches added to the interpolated commands, ``(n_calls, n_joints)``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_calls, n_joints))
    for k in np.flatnonzero(rng.random(n_calls) < GLITCH_RATE_HZ * DRIVER_DT_S):
        js = rng.choice(n_joints, size=rng.integers(1, 4), replace=False)
        out[k, js] = rng.normal(0.0, 0.2, js.size)
    return out


def quintic(last: np.ndarray, wp: np.ndarray) -> np.ndarray:
    """The driver's interpolation to the next waypoint: the commands of one policy period
    ``(POLICY_PERIOD, n)`` on the quintic that starts at the last three commands issued
    ``last`` ``(3, n)`` (newest first) with their position, velocity and acceleration, and
    ends on ``wp[1]`` with the waypoints' central-difference velocity and acceleration
    (``wp``: ``(3, n)``, the previous waypoint, the next, the one after)."""
    dt, period = DRIVER_DT_S, POLICY_PERIOD * DRIVER_DT_S
    v_fd = (last[0] - last[1]) / dt
    a0 = (v_fd - (last[1] - last[2]) / dt) / dt
    p0, v0 = last[0], v_fd + a0 * dt / 2  # a backward difference is the velocity at -dt/2
    v1 = (wp[2] - wp[0]) / (2 * period)
    a1 = (wp[2] - 2 * wp[1] + wp[0]) / period**2
    d, T = wp[1] - p0, period
    c3 = (20 * d - (8 * v1 + 12 * v0) * T - (3 * a0 - a1) * T**2) / (2 * T**3)
    c4 = (-30 * d + (14 * v1 + 16 * v0) * T + (3 * a0 - 2 * a1) * T**2) / (2 * T**4)
    c5 = (12 * d - 6 * (v1 + v0) * T - (a0 - a1) * T**2) / (2 * T**5)
    tau = (np.arange(1, POLICY_PERIOD + 1) * dt)[:, None]
    return p0 + tau * (v0 + tau * (a0 / 2 + tau * (c3 + tau * (c4 + tau * c5))))


class Driver:
    """One world's 1 kHz loop around a filter: the commands (interpolated waypoints plus
    glitches, each policy period starting from what the filter issued) and the measured
    state (perfect tracking of the issued commands), built outside the timed call."""

    def __init__(self, f: Paired, n_calls: int, seed: int = 0) -> None:
        self.f = f
        self.wps = waypoints(n_calls // POLICY_PERIOD + 3, f, seed)  # (Paired: resets both)
        n = self.wps.shape[1]
        self.glitch = glitches(n_calls, n, seed + 1)
        self.tau = np.random.default_rng(seed + 2).normal(0.0, 1.0, (n_calls, 1, n))
        self.last = np.repeat(self.wps[:1], 3, axis=0)  # (3, n) issued, newest first
        self.dq = np.zeros((1, n))
        f.reset(RobotState(self.wps[:1], self.dq, self.tau[0]))

    def inputs(self, k: int) -> tuple[RobotState, np.ndarray]:
        i, j = divmod(k, POLICY_PERIOD)
        if j == 0:
            self.segment = quintic(self.last, self.wps[i : i + 3])
        command = (self.segment[j] + self.glitch[k])[None]
        return RobotState(self.last[:1], self.dq, self.tau[k]), command

    def issued(self, out: np.ndarray) -> None:
        self.dq = (out - self.last[:1]) / DRIVER_DT_S
        self.last = np.concatenate([out, self.last[:2]])


def latency_stats(ns: np.ndarray) -> dict:
    us = ns / 1e3
    if us.size == 0:
        return {"calls": 0}
    p50, p99, p999 = np.percentile(us, [50, 99, 99.9])
    return {
        "calls": int(us.size),
        "p50_us": float(p50),
        "p99_us": float(p99),
        "p99.9_us": float(p999),
        "mean_us": float(us.mean()),
        "max_us": float(us.max()),
    }


def measure_single(args) -> dict:
    """The compiled filter runs the driver loops alone (so the array code does not evict
    its caches between calls); the array code then replays each loop's recorded inputs
    (they follow from the outputs, so they are the same when the outputs are), timed, its
    searches naming each call's path, and its commands compared."""
    total = args.warmup + args.calls
    runs = {}
    log = SearchLog()
    for name, geo in VARIANTS.items():
        runs[name] = {
            "driver": Driver(Paired(DRIVER_DT_S, geo, log), total),
            "ns": np.zeros(total, dtype=np.int64),
            "ns_array": np.zeros(total, dtype=np.int64),
            "path": np.empty(total, dtype=object),
            "clipped": np.zeros(total, dtype=bool),
            "acted": dict.fromkeys(filter_module.CONSTRAINTS, 0),
            "calls": [],
        }
    clock = time.perf_counter_ns
    for b, k0 in enumerate(range(0, total, BLOCK)):
        for name in list(runs) if b % 2 == 0 else list(runs)[::-1]:
            r = runs[name]
            d, ns, clipped = r["driver"], r["ns"], r["clipped"]
            f = d.f.f
            for k in range(k0, min(k0 + BLOCK, total)):
                state, command = d.inputs(k)
                t0 = clock()
                out, report = f.filter(state, command)
                ns[k] = clock() - t0
                d.issued(out)
                r["calls"].append((state, command, out))
                clipped[k] = bool(report.clipped[0])
                if k >= args.warmup:
                    for c, v in report.acted.items():
                        r["acted"][c] += int(v[0])
    mismatched = {}
    with log:
        for name, r in runs.items():
            ref, path, mismatched[name] = r["driver"].f.ref, r["path"], 0
            for k, (state, command, out) in enumerate(r["calls"]):
                log.clear()
                t0 = clock()
                ref_out, _ = ref.filter(state, command)
                r["ns_array"][k] = clock() - t0
                mismatched[name] += int(not np.array_equal(ref_out, out))
                path[k] = log.path(r["clipped"][k])
    rows = {}
    for name, r in runs.items():
        ns, path = r["ns"][args.warmup :], r["path"][args.warmup :]
        ns_array = r["ns_array"][args.warmup :]
        rows[name] = {
            **latency_stats(ns),
            "modified_fraction": float(np.mean(r["clipped"][args.warmup :])),
            "by_path": {
                p: {"fraction": float(np.mean(path == p)), **latency_stats(ns[path == p])}
                for p in PATHS
            },
            "constraint_acted_calls": r["acted"],
            "array": {
                **latency_stats(ns_array),
                "by_path": {p: latency_stats(ns_array[path == p]) for p in PATHS},
            },
            "mismatched_calls": mismatched[name],
        }
        s = rows[name]
        print(
            f"1 world, dt 1 ms, {name:5s}: p50 {s['p50_us']:7.1f} us  p99 {s['p99_us']:7.1f} us  "
            f"p99.9 {s['p99.9_us']:7.1f} us (array code: p99 {s['array']['p99_us']:7.0f} us)  "
            f"modified {s['modified_fraction']:.1%}  "
            + "  ".join(f"{p} {s['by_path'][p]['fraction']:.1%}" for p in PATHS)
            + f"  mismatched {s['mismatched_calls']}",
            flush=True,
        )
    stream = {
        "policy_period_calls": POLICY_PERIOD,
        "step_rate_hz": STEP_RATE_HZ,
        "glitch_rate_hz": GLITCH_RATE_HZ,
        "hug_joints": list(HUG_JOINTS),
        "hug_cycle_s": HUG_CYCLE_S,
        "hug_hold_s": HUG_HOLD_S,
        "hug_speed_rad_s": HUG_SPEED_RAD_S,
    }
    return {"dt_s": DRIVER_DT_S, "warmup": args.warmup, "block": BLOCK, "stream": stream,
            "variants": rows}  # fmt: skip


# --- batched, at the control rate --------------------------------------------------------------
class TimedHook:
    """``BatchedSim``'s ``command_filter``: the filter, its call timed alone."""

    def __init__(self, f: Paired, log: SearchLog) -> None:
        self.safety, self.log = f, log
        self.calls: list[dict] = []
        self.profiler: cProfile.Profile | None = None

    def reset(self, state: RobotState, worlds=None) -> None:
        self.safety.reset(state, worlds)

    def filter(self, state: RobotState, command: np.ndarray):
        out, report, call = timed_call(self.safety, state, command, self.log, self.profiler)
        self.calls.append(call)
        return out, report


def timed_call(f: Paired, state, command, log, profiler=None) -> tuple[np.ndarray, object, dict]:
    """One batched filter call, timed alone, and what it did."""
    out, report, seconds, array_seconds = f.filter(state, command, profiler)
    return (
        out,
        report,
        {
            "s": seconds,
            "s_array": array_seconds,
            "modified": float(np.mean(report.clipped)),
            "joint_search_worlds": log.joint_rows / command.shape[0],
            "cartesian_search": log.cartesian,
            "acted": {k: float(np.mean(v)) for k, v in report.acted.items()},
        },
    )


def call_summary(calls: list[dict], sim_s: list[float]) -> dict:
    call_s = [c["s"] for c in calls]
    ratios = [c / s for c, s in zip(call_s, sim_s, strict=True)]
    array_s = [c["s_array"] for c in calls]
    return {
        "filter_call_s": statistics.median(call_s),
        "filter_call_s_all": call_s,
        "ratio_filter_over_sim_step": statistics.median(ratios),
        "ratio_min_max": [min(ratios), max(ratios)],
        "array_filter_call_s": statistics.median(array_s),
        "array_ratio_filter_over_sim_step": statistics.median(
            c / s for c, s in zip(array_s, sim_s, strict=True)
        ),
        "modified_fraction": statistics.mean(c["modified"] for c in calls),
        "joint_search_world_fraction": statistics.mean(c["joint_search_worlds"] for c in calls),
        "cartesian_search_calls": sum(c["cartesian_search"] for c in calls),
        "constraint_acted_world_fraction": {
            k: statistics.mean(c["acted"][k] for c in calls) for k in filter_module.CONSTRAINTS
        },
    }


def make_sims(n: int, args, log: SearchLog, variants=VARIANTS) -> tuple[dict, dict]:
    """A ``BatchedSim`` of push without a filter (``sim``) and one per filter variant."""
    task = TaskConfig(name="push")
    hooks = {
        name: TimedHook(Paired(1 / task.control_hz, geo, log), log)
        for name, geo in variants.items()
    }
    # The baseline runs without a filter (BatchedSim's own default filter turned off).
    off = SimConfig(safety_filter=False)
    sims = {"sim": BatchedSim(n, task, sim_config=off, seed=0, n_threads=args.threads)}
    for name, hook in hooks.items():
        sims[name] = BatchedSim(n, task, seed=0, n_threads=args.threads, command_filter=hook)
    return sims, hooks


def timed_step(sim: BatchedSim, actions: np.ndarray) -> tuple[float, int]:
    t0 = time.perf_counter()
    _, _, terminated, truncated, _ = sim.step(actions)
    return time.perf_counter() - t0, int((terminated | truncated).sum())


def measure_sim_steps(n: int, args, log: SearchLog, profiles: dict) -> dict:
    """The three sims of the module docstring, ``--repeats`` timed steps after one."""
    sims, hooks = make_sims(n, args, log)
    rng = np.random.default_rng(0)
    shape = (1 + args.repeats + args.profile_steps, n, *sims["sim"].action_space.shape)
    actions = rng.uniform(-1.0, 1.0, shape)
    for s in sims.values():
        s.reset()
        s.step(actions[0])  # untimed: first-call allocations, the filter's reset
    for h in hooks.values():
        h.calls.clear()
    step_s: dict[str, list[float]] = {k: [] for k in sims}
    ended = 0
    names = list(sims)
    for r in range(args.repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            secs, done = timed_step(sims[name], actions[1 + r])
            step_s[name].append(secs)
            ended += done
    sim_s = step_s["sim"]
    row = {
        "sim_step_s": statistics.median(sim_s),
        "sim_step_s_all": sim_s,
        "worlds_ended_in_timed_steps": ended,
    }
    for name, hook in hooks.items():
        row[name] = call_summary(hook.calls, sim_s)
        row[name]["filter_call_per_world_us"] = row[name]["filter_call_s"] / n * 1e6
        row[name]["mismatched_calls"] = hook.safety.mismatched_calls
        row[name]["sim_step_with_filter_s"] = statistics.median(step_s[name])
    if args.profile and n == args.profile_worlds:
        hooks["full"].profiler = cProfile.Profile()
        for k in range(1 + args.repeats, len(actions)):
            sims["full"].step(actions[k])
        profiles[f"full_{n}_worlds_dt_50ms_sim_stream"] = profile_table(
            hooks["full"].profiler, args.profile_steps, args.profile_top
        )
    for s in sims.values():
        s.close()
    return row


DIVE = np.array([0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.0])  # shoulder forward, elbow opening


def measure_search(n: int, args, log: SearchLog, sim_step_s: float, profiles: dict) -> dict:
    """The full filter at ``n`` worlds when one world needs the Cartesian search: every
    world near home (N(0, 0.05 rad) per joint) moving by U(-0.01, 0.01) rad per step,
    except world 0, which starts with the hand low in front (shoulder 1.4 rad forward,
    elbow 0.7 rad open) and keeps driving it down (0.05 rad per step along the same
    direction), into the table clearance (the search starts after about six steps)."""
    f = Paired(1 / TaskConfig().control_hz, True, log)
    home = f.description.limits.home_joint_pos_rad
    rng = np.random.default_rng(0)
    q = home + rng.normal(0.0, 0.05, (n, home.size))
    q[0] = home + 1.4 * DIVE
    zeros = np.zeros_like(q)
    f.reset(RobotState(q, zeros, zeros))
    calls, untimed = [], 0

    def step(profiler: cProfile.Profile | None = None) -> dict:
        nonlocal q
        command = q + rng.uniform(-0.01, 0.01, q.shape)
        command[0] = q[0] + 0.05 * DIVE
        q, _, call = timed_call(f, RobotState(q, zeros, zeros), command, log, profiler)
        return call

    while len(calls) < args.search_repeats and untimed < 20:
        call = step()
        if call["cartesian_search"]:
            calls.append(call)
        else:
            untimed += 1  # world 0 is not yet close enough
    if not calls:
        return {"error": "the Cartesian search never ran"}
    if args.profile and n == args.profile_worlds:
        profiler = cProfile.Profile()
        if step(profiler)["cartesian_search"]:
            key = f"full_{n}_worlds_dt_50ms_cartesian_search"
            profiles[key] = profile_table(profiler, 1, args.profile_top)
    row = call_summary(calls, [sim_step_s] * len(calls))
    row["untimed_calls_before_search"] = untimed
    row["mismatched_calls"] = f.mismatched_calls
    row["filter_call_per_world_us"] = row["filter_call_s"] / n * 1e6
    return row


def measure_episode(n: int, args, log: SearchLog) -> dict:
    """The full filter in the sim's hook over one whole push episode of random actions,
    against the sim without a filter stepping the same actions."""
    sims, hooks = make_sims(n, args, log, {"full": True})
    horizon = sims["sim"].horizon_steps
    shape = (horizon, n, *sims["sim"].action_space.shape)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, shape)
    step_s: dict[str, list[float]] = {k: [] for k in sims}
    for name, s in sims.items():
        s.reset()
        for a in actions:
            step_s[name].append(timed_step(s, a)[0])
        s.close()
    calls = hooks["full"].calls
    search = [c["cartesian_search"] for c in calls]
    first = search.index(True) if any(search) else None
    by = {}
    for label, pick in (("with_cartesian_search", True), ("without", False)):
        sel = [k for k, x in enumerate(search) if x == pick]
        if sel:
            by[label] = {
                "steps": len(sel),
                "filter_call_s": statistics.median(calls[k]["s"] for k in sel),
                "ratio_filter_over_sim_step": statistics.median(
                    calls[k]["s"] / step_s["sim"][k] for k in sel
                ),
            }
    return {
        "worlds": n,
        "steps": horizon,
        "first_step_with_cartesian_search": first,
        "steps_with_cartesian_search": sum(search),
        "sim_step_s": statistics.median(step_s["sim"]),
        "filter_s_total": sum(c["s"] for c in calls),
        "sim_s_total": sum(step_s["sim"]),
        "by_step": by,
        "self_distance_world_fraction": statistics.mean(c["acted"]["self_distance"] for c in calls),
    }


def measure_batched(args, profiles: dict) -> dict:
    rows, search = {}, {}
    log = SearchLog()
    with log:
        for n in args.worlds:
            t0 = time.perf_counter()
            row = rows[str(n)] = measure_sim_steps(n, args, log, profiles)
            line = f"{n:6d} worlds, dt 50 ms: sim step {row['sim_step_s'] * 1e3:8.1f} ms"
            for name in VARIANTS:
                x = row[name]
                line += (
                    f"  {name} {x['filter_call_s'] * 1e3:8.1f} ms "
                    f"({x['ratio_filter_over_sim_step']:.1%}; array code "
                    f"{x['array_ratio_filter_over_sim_step']:.1%}; "
                    f"modified {x['modified_fraction']:.0%}, mismatched {x['mismatched_calls']})"
                )
            x = search[str(n)] = measure_search(n, args, log, row["sim_step_s"], profiles)
            if "error" not in x:
                line += (
                    f"  full, one world searching {x['filter_call_s'] * 1e3:8.1f} ms "
                    f"({x['ratio_filter_over_sim_step']:.0%})"
                )
            row["wall_s"] = time.perf_counter() - t0
            print(f"{line}  [{row['wall_s']:.0f} s]", flush=True)
        episode = measure_episode(args.episode_worlds, args, log) if args.episode_worlds else None
    if episode:
        e = episode
        print(
            f"{e['worlds']} worlds, one push episode with the full filter: Cartesian search in "
            f"{e['steps_with_cartesian_search']}/{e['steps']} steps (first at step "
            f"{e['first_step_with_cartesian_search']}); filter total {e['filter_s_total']:.1f} s "
            f"vs sim total {e['sim_s_total']:.1f} s",
            flush=True,
        )
    return {
        "task": "push",
        "dt_s": 1 / TaskConfig().control_hz,
        "threads": args.threads,
        "worlds": rows,
        "full_one_world_searching": search,
        "episode": episode,
    }


# --- profiles ----------------------------------------------------------------------------------
def _where(file: str, line: int, func: str) -> str:
    """A profiled function, its file relative to the checkout or to site-packages."""
    for marker, keep in (("/site-packages/", ""), ("/robot_rl/", "robot_rl/"),
                         ("/benchmarks/", "benchmarks/")):  # fmt: skip
        if marker in file:
            file = keep + file.split(marker, 1)[1]
            break
    return f"{file}:{line}({func})"


def profile_table(profiler: cProfile.Profile, calls: int, top: int) -> dict:
    """The top functions of ``profiler`` by own and by cumulative time, per filter call."""
    st = pstats.Stats(profiler)
    entries = [
        {
            "function": _where(*key),
            "ncalls_per_call": nc / calls,
            "tottime_per_call_us": tt / calls * 1e6,
            "cumtime_per_call_us": ct / calls * 1e6,
        }
        for key, (_, nc, tt, ct, _) in st.stats.items()
    ]
    total = sum(e["tottime_per_call_us"] for e in entries)
    return {
        "filter_calls": calls,
        "total_per_call_us": total,
        "note": "under cProfile: every Python call costs more, so small calls look heavier",
        "by_tottime": sorted(entries, key=lambda e: -e["tottime_per_call_us"])[:top],
        "by_cumtime": sorted(entries, key=lambda e: -e["cumtime_per_call_us"])[:top],
    }


def profile_single(args) -> dict:
    total = args.warmup + args.profile_calls
    d = Driver(Paired(DRIVER_DT_S, True, SearchLog()), total)
    profiler = cProfile.Profile()
    for k in range(total):
        state, command = d.inputs(k)
        out, *_ = d.f.filter(state, command, profiler if k >= args.warmup else None)
        d.issued(out)
    return profile_table(profiler, args.profile_calls, args.profile_top)


# --- main --------------------------------------------------------------------------------------
def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def goal(value: float, limit: float) -> dict:
    return {"value": value, "goal": limit, "met": value <= limit}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="2k calls; 256, 1024 worlds; episode at 64"
    )
    parser.add_argument("--calls", type=int, default=None, help="timed 1-world calls")
    parser.add_argument("--warmup", type=int, default=None, help="untimed 1-world calls first")
    parser.add_argument("--worlds", type=int_list, default=None, help="batched world counts")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per world count")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="sim threads")
    parser.add_argument(
        "--search-repeats", type=int, default=None, help="timed calls with one world searching"
    )
    parser.add_argument(
        "--episode-worlds", type=int, default=None, help="worlds of the episode probe (0: none)"
    )
    parser.add_argument("--profile", action="store_true", help="add cProfile tables")
    parser.add_argument("--profile-calls", type=int, default=3000)
    parser.add_argument("--profile-worlds", type=int, default=1024)
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--profile-top", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args()
    quick = {"calls": 2000, "warmup": 500, "worlds": [256, 1024], "repeats": 3,
             "search_repeats": 2, "episode_worlds": 64}  # fmt: skip
    full = {"calls": 20_000, "warmup": 2000, "worlds": [1024, 4096, 16384], "repeats": 5,
            "search_repeats": 3, "episode_worlds": 256}  # fmt: skip
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.profile:
        args.profile_steps = 0

    load_before = os.getloadavg()
    start = time.perf_counter()
    single = measure_single(args)
    profiles: dict[str, dict] = {}
    if args.profile:
        profiles["full_1_world_dt_1ms"] = profile_single(args)
    batched = measure_batched(args, profiles)
    goals = {
        "note": "reported, not asserted",
        "one_call_p99_us_at_1khz": {
            name: goal(single["variants"][name]["p99_us"], 100.0) for name in VARIANTS
        },
    }
    if "1024" in batched["worlds"]:
        row = batched["worlds"]["1024"]
        goals["filter_over_sim_step_at_1024"] = {
            name: goal(row[name]["ratio_filter_over_sim_step"], 0.05) for name in VARIANTS
        }
        searching = batched["full_one_world_searching"]["1024"]
        if "error" not in searching:
            goals["filter_over_sim_step_at_1024"]["full_one_world_searching"] = goal(
                searching["ratio_filter_over_sim_step"], 0.05
            )
    print({k: v for k, v in goals.items() if k != "note"}, flush=True)
    result = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "robot": ROBOT,
        "filter_version": filter_module.VERSION,
        "load_avg_1_5_15": {"before": list(load_before), "after": list(os.getloadavg())},
        "timed": (
            "single: each filter call alone (perf_counter_ns), state and stream built outside; "
            "batched: the filter call inside BatchedSim's command_filter hook, and sim.step of "
            "a BatchedSim without a filter (the baseline), the same actions, inside the first "
            "episode horizon"
        ),
        "single": single,
        "batched": batched,
        "goals": goals,
    }
    if profiles:
        result["profile"] = profiles
    result["elapsed_s"] = time.perf_counter() - start
    write_result("safety_filter", result, args.out)


if __name__ == "__main__":
    main()
