"""Robot limit descriptions: datasheet joint and Cartesian limits loaded from ``hardware/``.

The limits are data (one YAML file per robot), shared by the safety filter in sim and on
the robot, so the two can never disagree about what "inside the envelope" means.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import yaml

from robot_rl.paths import HARDWARE_DIR

_PER_JOINT = (
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
_POSITIVE = _PER_JOINT[2:7]


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
    gripper_width_max_m: float
    gripper_force_continuous_n: float

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)


def load_limits(path_or_name: str | Path) -> RobotLimits:
    """Loads a limits YAML.

    Args:
        path_or_name: a path relative to ``hardware/`` (for example
            ``franka_panda/limits.yaml``), or an absolute path.

    Raises:
        FileNotFoundError: the file does not exist (both places are named).
        ValueError: a key is missing or unknown, or a per-joint list has the wrong length,
            or a minimum is not below its maximum.
    """
    path = Path(path_or_name)
    if not path.is_absolute():
        path = HARDWARE_DIR / path
    if not path.exists():
        raise FileNotFoundError(
            f"robot limits file not found: '{path_or_name}' (relative paths are looked up in "
            f"{HARDWARE_DIR.name}/)"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    expected = {f.name for f in fields(RobotLimits)}
    extra = set(raw) - expected - {"notes"}
    missing = expected - set(raw)
    if extra or missing:
        raise ValueError(
            f"{path}: unknown keys {sorted(extra)}; missing keys {sorted(missing)}"
            if extra
            else f"{path}: missing keys {sorted(missing)}"
        )
    n = len(raw["joint_names"])
    values = {}
    for name in expected:
        value = raw[name]
        if name in _PER_JOINT:
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(
                    f"{path}: '{name}' has {arr.size} entries, expected {n} (one per joint)"
                )
            value = arr
        elif name == "joint_names":
            value = tuple(value)
        elif name != "robot":
            value = float(value)
        values[name] = value
    names = values["joint_names"]
    bad = np.flatnonzero(values["joint_pos_min_rad"] >= values["joint_pos_max_rad"])
    if bad.size:
        raise ValueError(
            f"{path}: joint_pos_min_rad >= joint_pos_max_rad for joints {[names[i] for i in bad]}"
        )
    for name in _POSITIVE:
        bad = np.flatnonzero(~(values[name] > 0))
        if bad.size:
            raise ValueError(f"{path}: '{name}' must be > 0 for joints {[names[i] for i in bad]}")
    for name in ("cartesian_vel_max_m_s", "gripper_width_max_m", "gripper_force_continuous_n"):
        if not values[name] > 0:
            raise ValueError(f"{path}: '{name}' must be > 0, got {values[name]}")
    home = values["home_joint_pos_rad"]
    outside = np.flatnonzero(
        (home < values["joint_pos_min_rad"]) | (home > values["joint_pos_max_rad"])
    )
    if outside.size:
        raise ValueError(
            f"{path}: home_joint_pos_rad is outside the joint range for joints "
            f"{[names[i] for i in outside]}"
        )
    return RobotLimits(**values)
