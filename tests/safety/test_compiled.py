"""The compiled filter (:mod:`robot_rl.safety.compiled`) is the array code, bit for bit:
on the fuzz of ``test_filter_fuzz`` (every kind of stream, corrupted states, torques
beyond the limit, malformed calls) both give the same commands, the same reports and
keep the same state, period after period. The safety properties themselves are tested on
the default (compiled) path by the property and fuzz tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.safety import compiled
from robot_rl.safety.filter import CONSTRAINTS, RobotState, SafetyFilter
from tests.safety.test_filter_fuzz import PANDA, Fuzzer, _panda_worlds
from tests.safety.test_filter_properties import Arm, random_arm, reset_history


def test_the_kernel_flags_are_the_report_constraints():
    assert compiled.FLAGS == CONSTRAINTS


def _same(f_kernel: SafetyFilter, f_array: SafetyFilter, arm: Arm, q0, steps: int, seed: int):
    """Both filters on one fuzz; everything they return or keep must be identical."""
    assert f_kernel.compiled and not f_array.compiled
    fz = Fuzzer(arm, q0.shape[0], seed)
    z = np.zeros_like(q0)
    for f in (f_kernel, f_array):
        f.reset(RobotState(q0, z, z))
    traj = list(reset_history(q0, z, arm.dt, arm.vel))
    acted = dict.fromkeys(CONSTRAINTS, 0)
    for k in range(steps):
        cmd, state, *_ = fz.inputs(np.stack(traj[-3:]), k)
        out, rep = f_kernel.filter(state, cmd)
        ref, rep_ref = f_array.filter(state, cmd)
        where = f"period {k}"
        np.testing.assert_array_equal(out, ref, err_msg=where)
        for name in CONSTRAINTS:
            np.testing.assert_array_equal(rep.acted[name], rep_ref.acted[name], f"{where} {name}")
        np.testing.assert_array_equal(rep.clipped, rep_ref.clipped, err_msg=where)
        np.testing.assert_array_equal(f_kernel._history, f_array._history, err_msg=where)
        np.testing.assert_array_equal(f_kernel._given, f_array._given, err_msg=where)
        for name in CONSTRAINTS:
            acted[name] += int(rep.acted[name].sum())
        traj.append(ref)
    assert fz.counts  # every kind of stream ran (see Fuzzer)
    return acted


JOINT = ("invalid_input", "torque", "position", "velocity", "acceleration", "jerk", "stop")


def test_panda_at_1khz_is_the_array_code():
    f, ref = (SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False, compiled=c) for c in (1, 0))
    arm = Arm.of(f)
    q0 = _panda_worlds(f, 48, 11)
    acted = _same(f, ref, arm, q0, 400, seed=12)
    assert all(acted[name] > 0 for name in JOINT), acted


def test_nine_joints_at_20hz_is_the_array_code():
    arm = random_arm(np.random.default_rng(21), 9, 0.05)
    f, ref = arm.filter(), arm.filter()
    ref.compiled = False
    q0 = np.random.default_rng(22).uniform(arm.lo, arm.hi, (24, arm.n))
    acted = _same(f, ref, arm, q0, 120, seed=23)
    assert all(acted[name] > 0 for name in JOINT), acted


@pytest.mark.parametrize("dt,worlds,steps", [(0.05, 12, 120), (0.01, 24, 200)])
def test_panda_with_geometry_is_the_array_code(dt, worlds, steps):
    f, ref = (SafetyFilter.from_yaml(PANDA, dt=dt, compiled=c) for c in (True, False))
    q0 = _panda_worlds(f, worlds, 31)
    acted = _same(f, ref, Arm.of(f), q0, steps, seed=32)
    cartesian = ("workspace", "cartesian_speed", "table", "self_distance")
    assert all(acted[name] > 0 for name in JOINT + cartesian), acted


def test_a_float32_filter_keeps_the_array_code():
    f = SafetyFilter.from_yaml(PANDA, dt=0.001, geometry=False)
    q = np.tile(f.description.limits.home_joint_pos_rad, (2, 1)).astype(np.float32)
    z = np.zeros_like(q)
    f.reset(RobotState(q, z, z))
    out, _ = f.filter(RobotState(q, z, z), q.copy())
    assert out.dtype == np.float32 and f._kernel is None
