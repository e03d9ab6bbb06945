"""The compiled single-posture geometry checks against the array code of ArmGeometry, on
random postures and on postures bisected to just either side of each constraint."""

from dataclasses import replace

import numpy as np
import pytest

from robot_rl.safety.compiled_geometry import (
    GeometryPack,
    pack,
    tcp_one,
    violations_batch,
    violations_one,
)
from robot_rl.safety.description import load_description
from robot_rl.safety.geometry import ArmGeometry

FLAGS = ("workspace", "cartesian_speed", "table", "self_distance")
TIE = 1e-9  # margins this close to their threshold may round either way


@pytest.fixture(scope="module")
def description():
    return load_description("franka_panda/robot.yaml")


def _geometry(d, case):
    if case == "canary":
        return ArmGeometry(d, d.envelope("canary"), 0.01)
    if case == "no_table":
        d = replace(d, table_height_m=None)
    if case == "no_pairs":  # every pair is closer than this at home: none is checked
        d = replace(d, link_clearance_m=10.0)
    return ArmGeometry(d, d.envelope("nominal"), 0.05)


def _box_margin(geo, q):
    """Least distance inside the box of the TCP and the pad corners (< 0: outside)."""
    poses, _ = geo._slots(q)
    points = np.concatenate(
        [geo.tcp(q)[:, None], geo._place(poses, geo._pad_slot, geo._pad_local)], axis=1
    )
    return np.minimum(points - geo.box_min, geo.box_max - points).min(axis=(1, 2))


def _margins(geo, q):
    """Per check, the posture's margin (< 0: violated); None for a check geo lacks."""
    return {
        "workspace": _box_margin(geo, q),
        "table": geo.table_margins(q).min(-1) if geo.table_z is not None else None,
        "self_distance": (
            (geo.pair_distances(q) - geo.link_clearance).min(-1) if geo._pair_i.size else None
        ),
    }


def _postures(d, geo, n, seed):
    """Uniform postures, postures near home, and per check pairs of postures bisected to
    either side of its boundary (margins of order 1e-4 and less)."""
    rng = np.random.default_rng(seed)
    lo, hi = d.limits.joint_pos_min_rad, d.limits.joint_pos_max_rad
    uniform = rng.uniform(lo, hi, (n, 7))
    home = np.clip(d.limits.home_joint_pos_rad + rng.normal(0, 0.3, (n, 7)), lo, hi)
    parts = [uniform, home]
    for name in ("workspace", "table", "self_distance"):
        if _margins(geo, home[:1])[name] is None:
            continue
        clear, bad = home[_margins(geo, home)[name] >= 0], uniform[_margins(geo, uniform)[name] < 0]
        m = min(len(clear), len(bad), n // 2)
        a, b = clear[:m].copy(), bad[:m].copy()
        for _ in range(14):
            mid = (a + b) / 2
            ok = _margins(geo, mid)[name] >= 0
            a[ok], b[~ok] = mid[ok], mid[~ok]
        parts += [a, b]
    return np.concatenate(parts)


def _case(d, case, n=1000, seed=0):
    geo = _geometry(d, case)
    q_next = _postures(d, geo, n, seed)
    rng = np.random.default_rng(seed + 1)
    lo, hi = d.limits.joint_pos_min_rad, d.limits.joint_pos_max_rad
    q_rest = np.clip(q_next + rng.normal(0, 0.02, q_next.shape), lo, hi)
    # The current TCP about one period's travel at the speed limit away (a quarter of
    # them within 1e-4 of it).
    scale = rng.uniform(0.5, 1.5, (len(q_next), 1))
    scale[::4] = rng.uniform(1 - 1e-4, 1 + 1e-4, scale[::4].shape)
    step = rng.normal(size=(len(q_next), 3))
    step *= geo.speed_max * geo.dt * scale / np.linalg.norm(step, axis=1, keepdims=True)
    tcp_now = geo.tcp(q_next) + step
    return geo, q_next, q_rest, tcp_now


@pytest.mark.parametrize("case", ["nominal", "canary", "no_table", "no_pairs"])
def test_flags_match_the_array_code(description, case):
    geo, q_next, q_rest, tcp_now = _case(description, case)
    pk = pack(geo)
    ours = violations_batch(q_next, q_rest, tcp_now, pk)
    ref = geo.violations(q_next, q_rest, tcp_now)

    speed = np.linalg.norm(geo.tcp(q_next) - tcp_now, axis=1) / geo.dt - geo.speed_max
    at_next, at_rest = _margins(geo, q_next), _margins(geo, q_rest)
    margins = {"cartesian_speed": -speed}
    for name in ("workspace", "table", "self_distance"):
        if at_next[name] is not None:
            margins[name] = np.minimum(at_next[name], at_rest[name])
    for k, name in enumerate(FLAGS):
        if name not in margins:  # a check this geometry lacks is never raised
            assert name not in ref and not ours[:, k].any()
            continue
        expected = ref[name]
        np.testing.assert_array_equal(expected, margins[name] < 0)  # the margins are right
        clear = np.abs(margins[name]) > TIE
        assert (~clear).sum() <= len(q_next) // 1000, name
        np.testing.assert_array_equal(ours[clear, k], expected[clear], err_msg=name)
        # Both outcomes, and near the boundary too (the bisected postures).
        assert 0.05 < expected.mean() < 0.95, name
        near = clear & (np.abs(margins[name]) < 1e-3)
        assert expected[near].any() and not expected[near].all(), name
    if case in ("no_table", "no_pairs"):
        assert ("table" in ref) == (case == "no_pairs")
        assert ("self_distance" in ref) == (case == "no_table")


def test_one_posture_matches_the_batch(description):
    geo, q_next, q_rest, tcp_now = _case(description, "nominal", n=100, seed=3)
    pk = pack(geo)
    batch = violations_batch(q_next, q_rest, tcp_now, pk)
    for w in range(len(q_next)):
        flags = violations_one(q_next[w], q_rest[w], tcp_now[w], pk)
        assert flags == tuple(bool(x) for x in batch[w])


@pytest.mark.parametrize("case", ["nominal", "no_table"])
def test_tcp_matches_the_array_code(description, case):
    geo, q, _, _ = _case(description, case, n=1000, seed=5)
    pk = pack(geo)
    ours = np.array([tcp_one(x, pk) for x in q])
    np.testing.assert_allclose(ours, geo.tcp(q), rtol=0, atol=1e-12)


def test_pack_is_contiguous_float64_and_int64(description):
    pk = pack(_geometry(description, "no_table"))
    assert isinstance(pk, GeometryPack) and not pk.has_table
    for name, value in pk._asdict().items():
        if isinstance(value, np.ndarray):
            assert value.flags.c_contiguous, name
            want = np.int64 if name.endswith(("_slot", "_i", "_j")) else np.float64
            assert value.dtype == want, name
    assert pk.pre.shape == pk.post.shape == (7, 4, 4)
    assert pk.seg_a.shape == pk.seg_b.shape == (len(pk.seg_slot), 3)
