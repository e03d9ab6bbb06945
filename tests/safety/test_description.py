"""Robot descriptions: the Panda's loads with its datasheet values; a malformed file is
refused naming the file and the key."""

import numpy as np
import pytest
import yaml

from robot_rl.paths import HARDWARE_DIR
from robot_rl.safety.description import load_description, load_limits

PANDA = "franka_panda/robot.yaml"


def test_panda_datasheet_limits_and_envelopes():
    d = load_description(PANDA)
    lim = d.limits
    assert lim.n_joints == 7
    np.testing.assert_allclose(lim.joint_vel_max_rad_s, [2.175] * 4 + [2.61] * 3)
    np.testing.assert_allclose(lim.joint_acc_max_rad_s2, [15, 7.5, 10, 12.5, 15, 20, 20])
    np.testing.assert_allclose(lim.joint_torque_max_nm, [87] * 4 + [12] * 3)
    assert lim.joint_pos_max_rad[3] == pytest.approx(-0.0698)
    assert d.mjcf_path.exists() and d.tcp_site == "tcp"
    canary, nominal = d.envelope("canary"), d.envelope("nominal")
    assert canary.speed_scale < nominal.speed_scale
    assert np.all(canary.workspace_min_m >= nominal.workspace_min_m)
    assert np.all(canary.workspace_max_m <= nominal.workspace_max_m)
    assert load_limits(PANDA).joint_names == lim.joint_names
    with pytest.raises(ValueError, match=r"no envelope 'fast'.*canary"):
        d.envelope("fast")


def _write(tmp_path, drop=(), **changes):
    raw = yaml.safe_load((HARDWARE_DIR / PANDA).read_text())
    raw.update(changes)
    for key in drop:
        raw.pop(key)
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


_SEVEN = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "jointX"]


@pytest.mark.parametrize(
    "changes,drop,message",
    [
        ({"joint_vel_max_rad_s": [2.0] * 6}, (), "'joint_vel_max_rad_s' has 6 entries, expected 7"),
        (
            {"joint_acc_max_rad_s2": [15, 0, 10, 12.5, 15, 20, 20]},
            (),
            "'joint_acc_max_rad_s2' must be finite and > 0 for joints ['joint2']",
        ),
        (
            {"joint_pos_min_rad": [-2.8973, 1.8, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]},
            (),
            "inverted or empty range) for joints ['joint2']",
        ),
        ({"home_joint_pos_rad": [0, 0, 0, 0, 0, 1.5, 0]}, (), "home_joint_pos_rad is outside"),
        ({"cartesian_vel_max_m_s": -1}, (), "'cartesian_vel_max_m_s' must be > 0"),
        ({"joint_vel_max": [1.0] * 7}, (), "unknown keys ['joint_vel_max']"),
        ({}, ("joint_jerk_max_rad_s3",), "missing keys ['joint_jerk_max_rad_s3']"),
        ({"joint_names": _SEVEN}, (), "joint 'jointX' is not in the MJCF"),
        ({"tcp_site": "nowhere"}, (), "tcp_site 'nowhere' is not in the MJCF"),
        ({"joint_pos_margin_rad": 2.0}, (), "leaves no range for joints"),
        ({"envelopes": {"canary": {"speed_scale": 1.5}}}, (), "speed_scale must be in (0, 1]"),
        (
            {"envelopes": {"x": {"workspace_min_m": [0, 0, 1], "workspace_max_m": [1, 1, 0]}}},
            (),
            "workspace_min_m must be below workspace_max_m",
        ),
    ],
)
def test_malformed_descriptions_are_named(tmp_path, changes, drop, message):
    path = _write(tmp_path, drop, **changes)
    with pytest.raises(ValueError) as err:
        load_description(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_a_description_without_mjcf_is_joint_limits_only(tmp_path):
    d = load_description(_write(tmp_path, ("mjcf", "tcp_site", "envelopes")))
    assert d.mjcf is None and list(d.envelopes) == ["nominal"]
    assert np.all(np.isinf(d.envelope("nominal").workspace_max_m))


def test_missing_file_says_where_it_looked():
    with pytest.raises(FileNotFoundError, match="hardware/"):
        load_description("no_such_robot/robot.yaml")


def test_an_envelope_without_a_box_has_an_infinite_one(tmp_path):
    d = load_description(_write(tmp_path, envelopes={"slow": {"speed_scale": 0.5}}))
    assert d.envelope("slow").speed_scale == 0.5
    assert np.all(np.isinf(d.envelope("slow").workspace_max_m))
