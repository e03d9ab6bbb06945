"""Robot limit files: the Panda datasheet values load; malformed files name the problem."""

import numpy as np
import pytest
import yaml

from robot_rl.paths import HARDWARE_DIR
from robot_rl.safety.limits import load_limits


def test_panda_datasheet_limits():
    lim = load_limits("franka_panda/limits.yaml")
    assert lim.n_joints == 7
    np.testing.assert_allclose(lim.joint_vel_max_rad_s, [2.175] * 4 + [2.61] * 3)
    np.testing.assert_allclose(lim.joint_acc_max_rad_s2, [15, 7.5, 10, 12.5, 15, 20, 20])
    np.testing.assert_allclose(lim.joint_torque_max_nm, [87] * 4 + [12] * 3)
    assert lim.joint_pos_max_rad[3] == pytest.approx(-0.0698)


def _write(tmp_path, **changes):
    raw = yaml.safe_load((HARDWARE_DIR / "franka_panda/limits.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "limits.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"joint_vel_max_rad_s": [2.0] * 6}, "has 6 entries, expected 7"),
        (
            {"joint_acc_max_rad_s2": [15, 0, 10, 12.5, 15, 20, 20]},
            "'joint_acc_max_rad_s2' must be > 0",
        ),
        ({"home_joint_pos_rad": [0, 0, 0, 0, 0, 1.5, 0]}, "home_joint_pos_rad is outside"),
        ({"cartesian_vel_max_m_s": -1}, "'cartesian_vel_max_m_s' must be > 0"),
        ({"typo_key": 1}, "unknown keys ['typo_key']"),
    ],
)
def test_malformed_limits_are_named(tmp_path, changes, message):
    with pytest.raises(ValueError) as err:
        load_limits(_write(tmp_path, **changes))
    assert message in str(err.value)


def test_missing_file_says_where_it_looked():
    with pytest.raises(FileNotFoundError, match="hardware/"):
        load_limits("no_such_robot/limits.yaml")
