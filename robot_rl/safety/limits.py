"""Per-joint and Cartesian limits of a robot: the part of its description that the
joint-space safety constraints need (no MJCF).

The limits are data, read from the robot's description (``hardware/<robot>/robot.yaml``,
see :mod:`robot_rl.safety.description`), and shared by the safety filter in sim and on
the robot, so the two can never disagree about what "inside the envelope" means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Per-joint entries: one value per joint, in the unit their name ends with.
PER_JOINT = (
    "joint_pos_min_rad",
    "joint_pos_max_rad",
    "joint_vel_max_rad_s",
    "joint_acc_max_rad_s2",
    "joint_jerk_max_rad_s3",
    "joint_torque_max_nm",
    "joint_torque_rate_max_nm_s",
    "home_joint_pos_rad",
)
#: Per-joint limits that are magnitudes, so must be positive.
POSITIVE = PER_JOINT[2:7]


@dataclass(frozen=True)
class RobotLimits:
    """Per-joint limits (arrays of length n_joints) and scalar Cartesian/gripper limits."""

    robot: str
    joint_names: tuple[str, ...]
    joint_pos_min_rad: np.ndarray
    joint_pos_max_rad: np.ndarray
    joint_vel_max_rad_s: np.ndarray
    joint_acc_max_rad_s2: np.ndarray
    joint_jerk_max_rad_s3: np.ndarray
    joint_torque_max_nm: np.ndarray
    joint_torque_rate_max_nm_s: np.ndarray
    home_joint_pos_rad: np.ndarray
    cartesian_vel_max_m_s: float
    gripper_width_max_m: float | None = None
    gripper_force_continuous_n: float | None = None

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)


def check_joint_limits(values: dict, where: str) -> None:
    """Raises ValueError naming the file and joints for empty, inverted or non-positive
    limits, or a home posture outside the range."""
    names = values["joint_names"]
    bad = np.flatnonzero(~(values["joint_pos_min_rad"] < values["joint_pos_max_rad"]))
    if bad.size:
        raise ValueError(
            f"{where}: joint_pos_min_rad >= joint_pos_max_rad (an inverted or empty range) "
            f"for joints {[names[i] for i in bad]}"
        )
    for name in POSITIVE:
        bad = np.flatnonzero(~(values[name] > 0) | ~np.isfinite(values[name]))
        if bad.size:
            raise ValueError(
                f"{where}: '{name}' must be finite and > 0 for joints {[names[i] for i in bad]}"
            )
    home = values["home_joint_pos_rad"]
    outside = np.flatnonzero(
        (home < values["joint_pos_min_rad"]) | (home > values["joint_pos_max_rad"])
    )
    if outside.size:
        raise ValueError(
            f"{where}: home_joint_pos_rad is outside the joint range for joints "
            f"{[names[i] for i in outside]}"
        )
