"""Domain randomization of the simulated cell (the ``randomization`` group): which
parameters are re-sampled per world at every episode reset, and from what range."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from robot_rl.config.validation import _check

RANDOM_DISTS = ("none", "uniform", "loguniform")


@dataclass
class ParamRange:
    """One randomized parameter: a distribution over ``[low, high]``, or disabled.

    ``uniform`` draws evenly between the bounds; ``loguniform`` draws evenly in log space
    (both bounds > 0), so a scale range like [0.5, 2] is as likely to halve as to double.
    """

    #: none (disabled: the model's own value), uniform or loguniform.
    dist: str = "none"
    low: float = 0.0
    high: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.dist != "none"


#: Randomized parameters that scale a model value, and the smallest scale allowed:
#: > 0 where zero breaks the physics (massless bodies, zero-size geoms, no servo), >= 0
#: where zero is a legitimate extreme (frictionless, undamped).
_SCALE_PARAMS = {
    "link_mass_scale": "> 0",
    "object_mass_scale": "> 0",
    "object_size_scale": "> 0",
    "friction_scale": ">= 0",
    "joint_damping_scale": ">= 0",
    "joint_armature_scale": ">= 0",
    "actuator_kp_scale": "> 0",
}
#: Randomized parameters that add to a value (unit in the name).
_OFFSET_PARAMS = ("joint_offset_rad", "object_xy_offset_m", "object_yaw_offset_rad")


@dataclass
class RandomizationConfig:
    """Domain randomization of the simulated cell (``conf/randomization/``).

    Every :class:`ParamRange` is re-sampled per world at every episode reset, from that
    episode's seed (see :mod:`robot_rl.sim.randomization`). Scales multiply the scene's
    own values; offsets add to them. Per-link and per-joint parameters draw one value per
    link or joint; the others one value per world.
    """

    #: Name of the preset (none, light, heavy), for reports.
    name: str = "none"
    #: Mass (and inertia) of every robot link, one scale per link.
    link_mass_scale: ParamRange = field(default_factory=ParamRange)
    #: Mass (and inertia) of the cube.
    object_mass_scale: ParamRange = field(default_factory=ParamRange)
    #: Edge length of the cube (it stays a cube and rests on the table).
    object_size_scale: ParamRange = field(default_factory=ParamRange)
    #: Sliding friction of every geom, one scale per world.
    friction_scale: ParamRange = field(default_factory=ParamRange)
    #: Damping of each arm joint.
    joint_damping_scale: ParamRange = field(default_factory=ParamRange)
    #: Armature (reflected rotor inertia) of each arm joint.
    joint_armature_scale: ParamRange = field(default_factory=ParamRange)
    #: Stiffness kp of each arm joint's position servo (gain and bias together).
    actuator_kp_scale: ParamRange = field(default_factory=ParamRange)
    #: Joint calibration error, rad per arm joint: the policy sees (and commands) joint
    #: positions offset by it from the true ones.
    joint_offset_rad: ParamRange = field(default_factory=ParamRange)
    #: Extra displacement of the cube's start position, metres, per axis (x, y).
    object_xy_offset_m: ParamRange = field(default_factory=ParamRange)
    #: Extra rotation of the cube's start yaw, radians.
    object_yaw_offset_rad: ParamRange = field(default_factory=ParamRange)
    #: Action latency in control steps, drawn per episode uniformly from min..max.
    action_latency_min_steps: int = 0
    action_latency_max_steps: int = 0
    #: Std of Gaussian noise added to every observation entry, in the entry's unit
    #: (per control step).
    obs_noise_std: float = 0.0
    #: Per observation key std, replacing ``obs_noise_std`` for that key.
    obs_noise_std_by_key: dict[str, float] = field(default_factory=dict)
    #: Relative std of the physics step length, drawn per world per control step (the
    #: number of substeps stays fixed, so the control period varies by the same factor);
    #: draws are truncated at 3 std.
    control_period_jitter_std: float = 0.0

    def __post_init__(self) -> None:
        for key in (*_SCALE_PARAMS, *_OFFSET_PARAMS):
            r = getattr(self, key)
            if isinstance(r, dict):  # built from plain data, not through Hydra
                r = ParamRange(**r)
                setattr(self, key, r)
            where = f"randomization.{key}"
            _check(r.dist in RANDOM_DISTS, f"{where}.dist", r.dist, f"one of {RANDOM_DISTS}")
            if not r.enabled:
                continue
            _check(
                math.isfinite(r.low) and math.isfinite(r.high),
                f"{where}.low/high",
                (r.low, r.high),
                "finite bounds",
            )
            _check(r.low <= r.high, f"{where}.low/high", (r.low, r.high), "low <= high")
            bound = _SCALE_PARAMS.get(key)
            if bound == "> 0" or r.dist == "loguniform":
                _check(r.low > 0, f"{where}.low", r.low, "> 0")
            elif bound == ">= 0":
                _check(r.low >= 0, f"{where}.low", r.low, ">= 0")
        yaw = self.object_yaw_offset_rad
        _check(
            not yaw.enabled or (yaw.low >= -math.pi and yaw.high <= math.pi),
            "randomization.object_yaw_offset_rad.low/high",
            (yaw.low, yaw.high),
            "bounds within [-pi, pi]",
        )
        _check(
            self.action_latency_min_steps >= 0,
            "randomization.action_latency_min_steps",
            self.action_latency_min_steps,
            ">= 0",
        )
        _check(
            self.action_latency_min_steps <= self.action_latency_max_steps <= 50,
            "randomization.action_latency_max_steps",
            self.action_latency_max_steps,
            f">= action_latency_min_steps ({self.action_latency_min_steps}) and <= 50",
        )
        _check(
            math.isfinite(self.obs_noise_std) and self.obs_noise_std >= 0,
            "randomization.obs_noise_std",
            self.obs_noise_std,
            ">= 0",
        )
        for k, v in self.obs_noise_std_by_key.items():
            _check(
                math.isfinite(v) and v >= 0, f"randomization.obs_noise_std_by_key.{k}", v, ">= 0"
            )
        _check(
            0 <= self.control_period_jitter_std <= 0.1,
            "randomization.control_period_jitter_std",
            self.control_period_jitter_std,
            "in [0, 0.1] (relative)",
        )

    @property
    def enabled(self) -> bool:
        """Whether anything is randomized at all."""
        return (
            any(getattr(self, k).enabled for k in (*_SCALE_PARAMS, *_OFFSET_PARAMS))
            or self.action_latency_max_steps > 0
            or self.obs_noise_std > 0
            or any(v > 0 for v in self.obs_noise_std_by_key.values())
            or self.control_period_jitter_std > 0
        )
