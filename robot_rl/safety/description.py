"""A robot's description: ``hardware/<robot>/robot.yaml``.

One file per robot holds what the safety filter, the simulator and the bridge must agree
on: the joint limits (datasheet values, :class:`~robot_rl.safety.limits.RobotLimits`),
the margin kept inside the joint range, the MJCF that describes the arm (its collision
geoms give the filter's distances), the table's height and the clearances kept to it and
between links, and named envelopes (a speed scale and a workspace box, e.g. ``nominal``
and the smaller ``canary``). Units are in the key names. Loading validates everything
and names the file and key of any problem: a missing or unknown key, a per-joint list of
the wrong length, an inverted range, a joint the MJCF does not have.

Only the joint limits are required: the joint-space constraints of the filter work for
any robot from them alone; the Cartesian and distance constraints also need ``mjcf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robot_rl.paths import HARDWARE_DIR, SIM_ASSETS_DIR
from robot_rl.safety.limits import PER_JOINT, RobotLimits, check_joint_limits

_REQUIRED = (
    "robot",
    "joint_names",
    *PER_JOINT,
    "joint_pos_margin_rad",
    "cartesian_vel_max_m_s",
)
_OPTIONAL = (
    "mjcf",
    "tcp_site",
    "gripper_width_max_m",
    "gripper_force_continuous_n",
    "table_height_m",
    "table_clearance_m",
    "finger_table_clearance_m",
    "link_clearance_m",
    "ignored_link_pairs",
    "envelopes",
    "notes",
)
_ENVELOPE_KEYS = ("speed_scale", "workspace_min_m", "workspace_max_m")


@dataclass(frozen=True)
class Envelope:
    """Where and how fast the arm may move: velocity limits (joint and Cartesian) are
    scaled by ``speed_scale``; the TCP and the finger pads stay inside the box (base
    frame, metres; infinite when the description gives none)."""

    name: str
    speed_scale: float = 1.0
    workspace_min_m: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf))
    workspace_max_m: np.ndarray = field(default_factory=lambda: np.full(3, np.inf))


@dataclass(frozen=True)
class RobotDescription:
    """A loaded, validated ``robot.yaml`` (see the module docstring)."""

    path: Path
    limits: RobotLimits
    joint_pos_margin_rad: float
    envelopes: dict[str, Envelope]
    mjcf: str | None = None
    tcp_site: str | None = None
    table_height_m: float | None = None
    table_clearance_m: float = 0.0
    finger_table_clearance_m: float = 0.0
    link_clearance_m: float = 0.0
    #: Pairs of MJCF body names whose distance is not checked.
    ignored_link_pairs: tuple[tuple[str, str], ...] = ()

    @property
    def mjcf_path(self) -> Path | None:
        """The MJCF file (``mjcf`` is relative to ``sim_assets/``), or None."""
        return None if self.mjcf is None else SIM_ASSETS_DIR / self.mjcf

    def envelope(self, name: str) -> Envelope:
        if name not in self.envelopes:
            raise ValueError(
                f"{self.path}: no envelope '{name}' (the file defines {sorted(self.envelopes)})"
            )
        return self.envelopes[name]


def _resolve(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if not path.is_absolute():
        path = HARDWARE_DIR / path
    if not path.exists():
        raise FileNotFoundError(
            f"robot description not found: '{path_or_name}' (relative paths are looked up in "
            f"{HARDWARE_DIR.name}/, e.g. franka_panda/robot.yaml)"
        )
    return path


def _number(raw: dict, key: str, where: str, *, minimum: float | None = None) -> float:
    try:
        value = float(raw[key])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: '{key}' must be a number, got {raw[key]!r}") from None
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" and >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{where}: '{key}' must be finite{bound}, got {value}")
    return value


def _vector(raw: Any, key: str, n: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: '{key}' must be a list of numbers, got {raw!r}") from None
    if arr.shape != (n,):
        raise ValueError(f"{where}: '{key}' has {arr.size} entries, expected {n}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: '{key}' has entries that are not finite: {arr.tolist()}")
    return arr


def _envelopes(raw: Any, where: str) -> dict[str, Envelope]:
    if raw is None:
        return {"nominal": Envelope("nominal")}
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{where}: 'envelopes' must map names to envelopes")
    out = {}
    for name, spec in raw.items():
        at = f"{where}: envelopes.{name}"
        spec = spec or {}
        unknown = set(spec) - set(_ENVELOPE_KEYS)
        if unknown:
            raise ValueError(f"{at}: unknown keys {sorted(unknown)} (known: {_ENVELOPE_KEYS})")
        scale = _number({"speed_scale": spec.get("speed_scale", 1.0)}, "speed_scale", at)
        if not 0 < scale <= 1:
            raise ValueError(f"{at}.speed_scale must be in (0, 1], got {scale}")
        # No box given: no box (infinite), as Envelope documents.
        lo = np.full(3, -np.inf)
        hi = np.full(3, np.inf)
        if "workspace_min_m" in spec:
            lo = _vector(spec["workspace_min_m"], "workspace_min_m", 3, at)
        if "workspace_max_m" in spec:
            hi = _vector(spec["workspace_max_m"], "workspace_max_m", 3, at)
        if np.any(lo >= hi):
            raise ValueError(f"{at}: workspace_min_m must be below workspace_max_m on every axis")
        out[str(name)] = Envelope(str(name), scale, lo, hi)
    return out


def load_description(path_or_name: str | Path) -> RobotDescription:
    """Loads and validates a robot description.

    Args:
        path_or_name: a path relative to ``hardware/`` (e.g. ``franka_panda/robot.yaml``)
            or an absolute path.

    Raises:
        FileNotFoundError: the file (or the MJCF it names) does not exist.
        ValueError: a key is missing, unknown or malformed; a range is inverted; a joint
            or site is not in the MJCF. The message names the file and the key.
    """
    path = _resolve(path_or_name)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ValueError(
            f"{where}: missing keys {missing}; unknown keys {unknown} (every key names its "
            "unit, e.g. joint_vel_max_rad_s)"
        )
    names = raw["joint_names"]
    if not isinstance(names, list) or not names or len(set(map(str, names))) != len(names):
        raise ValueError(f"{where}: 'joint_names' must be a non-empty list of distinct names")
    n = len(names)
    values: dict[str, Any] = {"robot": str(raw["robot"]), "joint_names": tuple(map(str, names))}
    for key in PER_JOINT:
        values[key] = _vector(raw[key], key, n, where)
    values["cartesian_vel_max_m_s"] = _number(raw, "cartesian_vel_max_m_s", where)
    if not values["cartesian_vel_max_m_s"] > 0:
        raise ValueError(f"{where}: 'cartesian_vel_max_m_s' must be > 0")
    for key in ("gripper_width_max_m", "gripper_force_continuous_n"):
        if key in raw:
            values[key] = _number(raw, key, where, minimum=0.0)
    check_joint_limits(values, where)
    margin = _number(raw, "joint_pos_margin_rad", where, minimum=0.0)
    span = values["joint_pos_max_rad"] - values["joint_pos_min_rad"]
    if np.any(2 * margin >= span):
        raise ValueError(
            f"{where}: joint_pos_margin_rad {margin} leaves no range for joints "
            f"{[names[i] for i in np.flatnonzero(2 * margin >= span)]}"
        )
    extras: dict[str, Any] = {}
    for key in ("table_clearance_m", "finger_table_clearance_m", "link_clearance_m"):
        if key in raw:
            extras[key] = _number(raw, key, where, minimum=0.0)
    if "table_height_m" in raw:
        extras["table_height_m"] = _number(raw, "table_height_m", where)
    pairs = raw.get("ignored_link_pairs") or []
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(b, str) for b in p) for p in pairs
    ):
        raise ValueError(f"{where}: 'ignored_link_pairs' must be a list of [body, body] pairs")
    extras["ignored_link_pairs"] = tuple((a, b) for a, b in pairs)
    description = RobotDescription(
        path=path,
        limits=RobotLimits(**values),
        joint_pos_margin_rad=margin,
        envelopes=_envelopes(raw.get("envelopes"), where),
        mjcf=None if raw.get("mjcf") is None else str(raw["mjcf"]),
        tcp_site=None if raw.get("tcp_site") is None else str(raw["tcp_site"]),
        **extras,
    )
    if description.mjcf is not None:
        _check_mjcf(description, where)
    return description


def _check_mjcf(d: RobotDescription, where: str) -> None:
    import mujoco

    path = d.mjcf_path
    if not path.exists():
        raise FileNotFoundError(f"{where}: 'mjcf' names sim_assets/{d.mjcf}, which does not exist")
    model = mujoco.MjModel.from_xml_path(str(path))
    lim = d.limits
    for i, name in enumerate(lim.joint_names):
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if j < 0:
            raise ValueError(f"{where}: joint '{name}' is not in the MJCF sim_assets/{d.mjcf}")
        if model.jnt_limited[j]:
            lo, hi = model.jnt_range[j]
            if lim.joint_pos_min_rad[i] < lo - 1e-9 or lim.joint_pos_max_rad[i] > hi + 1e-9:
                raise ValueError(
                    f"{where}: joint '{name}' range [{lim.joint_pos_min_rad[i]}, "
                    f"{lim.joint_pos_max_rad[i]}] rad is wider than the MJCF's [{lo}, {hi}]"
                )
    if (
        d.tcp_site is not None
        and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, d.tcp_site) < 0
    ):
        raise ValueError(f"{where}: tcp_site '{d.tcp_site}' is not in the MJCF sim_assets/{d.mjcf}")


def load_limits(path_or_name: str | Path) -> RobotLimits:
    """The joint limits of a robot description."""
    return load_description(path_or_name).limits
