"""Structured configs: typed dataclasses, one per Hydra config group.

Library code takes these dataclasses (or plain arguments), never a raw ``DictConfig``, so
everything is usable without Hydra. Hydra validates types and unknown keys against these
schemas (registered in :mod:`robot_rl.config.store`); ``__post_init__`` checks values, and
runs when a composed config is turned into objects with :func:`robot_rl.config.to_object`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

TASK_NAMES = ("reach", "push", "lift")
ACTION_MODES = ("ee_delta", "joint_delta")
REWARD_TYPES = ("dense", "sparse")


def check_control_period(task: TaskConfig, sim: SimConfig) -> None:
    """The control period must be a whole number of physics steps."""
    substeps = 1.0 / task.control_hz / sim.physics_dt_s
    _check(
        abs(substeps - round(substeps)) < 1e-6 and round(substeps) >= 1,
        "task.control_hz",
        task.control_hz,
        f"a rate whose period is a whole number of physics steps of sim.physics_dt_s="
        f"{sim.physics_dt_s} s (e.g. 10, 20, 25 or 50 Hz)",
    )


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is allowed."""


def _check(ok: bool, key: str, value: object, expected: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config value {key}={value!r}: expected {expected}")


def _default(f: dataclasses.Field) -> Any:
    """A dataclass field's default value (without constructing the dataclass)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _refuse_unused(key: str, value: object, default: object, why: str) -> None:
    """A setting a command accepts but does not use must keep its default: a changed
    value would be silently ignored. ``why`` completes "<key>=<value> ..."."""
    if value != default:
        raise ConfigError(f"{key}={value!r} {why}")


def check_sim_runs_on_cpu(sim: SimConfig, command: str) -> None:
    """``command`` steps the single-world env, MuJoCo on the CPU: a Warp setting would be
    ignored, so it is refused by name."""
    why = (
        f"is not supported by {command} yet: it runs MuJoCo on the CPU, one world at a "
        "time (the warp backend runs in the library's batched simulator, "
        "robot_rl.sim.batched.BatchedSim); leave it at its default"
    )
    _refuse_unused("sim.backend", sim.backend, "cpu", why)
    _refuse_unused("sim.warp_device", sim.warp_device, "auto", why)


@dataclass
class RobotConfig:
    """The simulated robot: its scene and its datasheet limits."""

    name: str = "panda"
    #: MJCF scene, relative to ``sim_assets/``.
    scene_xml: str = "scenes/table_cube.xml"
    #: Limits YAML, relative to ``hardware/``.
    limits_file: str = "franka_panda/robot.yaml"
    #: Name of the MJCF site that is the tool centre point (end effector).
    tcp_site: str = "tcp"


@dataclass
class TaskConfig:
    """A task and how the policy acts in it (reach, push or lift on the tabletop)."""

    #: One of reach, push, lift.
    name: str = "reach"
    #: Episode length in control steps; 0 means the task's default (reach 50, push/lift 100).
    horizon_steps: int = 0
    #: Policy (control) rate in Hz; the physics runs substeps of the sim's physics_dt_s.
    control_hz: float = 20.0
    #: ee_delta: [dx, dy, dz, gripper] in [-1, 1]; joint_delta: [dq1..dq7, gripper].
    action_mode: str = "ee_delta"
    #: Largest end-effector translation per control step in metres (action norm 1).
    max_ee_step_m: float = 0.02
    #: Largest joint-target change per control step in radians (joint_delta mode).
    max_joint_step_rad: float = 0.05
    #: dense: shaped negative distances; sparse: 1.0 on success steps, else 0.0.
    reward_type: str = "dense"
    #: End the episode (terminated=True) on the first success step.
    terminate_on_success: bool = True
    #: Uniform noise added to the start posture at reset, radians per joint.
    init_joint_noise_rad: float = 0.02

    def __post_init__(self) -> None:
        _check(self.name in TASK_NAMES, "task.name", self.name, f"one of {TASK_NAMES}")
        _check(self.horizon_steps >= 0, "task.horizon_steps", self.horizon_steps, ">= 0")
        _check(0 < self.control_hz <= 1000, "task.control_hz", self.control_hz, "in (0, 1000]")
        _check(
            self.action_mode in ACTION_MODES,
            "task.action_mode",
            self.action_mode,
            f"one of {ACTION_MODES}",
        )
        _check(
            0 < self.max_ee_step_m <= 0.1, "task.max_ee_step_m", self.max_ee_step_m, "in (0, 0.1]"
        )
        _check(
            0 < self.max_joint_step_rad <= 0.5,
            "task.max_joint_step_rad",
            self.max_joint_step_rad,
            "in (0, 0.5]",
        )
        _check(
            self.reward_type in REWARD_TYPES,
            "task.reward_type",
            self.reward_type,
            f"one of {REWARD_TYPES}",
        )
        _check(
            0 <= self.init_joint_noise_rad <= 0.5,
            "task.init_joint_noise_rad",
            self.init_joint_noise_rad,
            "in [0, 0.5]",
        )


@dataclass
class SimConfig:
    """The physics backend."""

    #: Backend of the batched simulator: cpu (mujoco.rollout on CPU threads) or warp
    #: (MuJoCo Warp; float32). The single env always runs MuJoCo on the CPU.
    backend: str = "cpu"
    #: Warp device for backend=warp: auto (cuda when present, else Warp's CPU device),
    #: cpu, or cuda[:i].
    warp_device: str = "auto"
    #: Physics step in seconds; the control period must be a whole number of these.
    physics_dt_s: float = 0.002
    #: Run every joint command through the safety filter (robot_rl.safety), once per
    #: control step. false turns it off, and the episodes' provenance then says "off".
    safety_filter: bool = True
    #: The robot description's envelope the filter enforces (nominal, canary, ...).
    safety_envelope: str = "nominal"

    def __post_init__(self) -> None:
        _check(self.backend in ("cpu", "warp"), "sim.backend", self.backend, "'cpu' or 'warp'")
        _check(0 < self.physics_dt_s <= 0.01, "sim.physics_dt_s", self.physics_dt_s, "in (0, 0.01]")


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


def _check_obs_keys(obs_keys: list[str] | None) -> None:
    _check(
        obs_keys is None or (len(obs_keys) > 0 and len(set(obs_keys)) == len(obs_keys)),
        "dataset.obs_keys",
        obs_keys,
        "null or a non-empty list of distinct keys",
    )


@dataclass
class StoreConfig:
    """An existing episode store to learn from (robot-rl-pretrain's ``dataset``)."""

    #: Path of the episode store (a directory), relative to the working directory.
    path: str = MISSING
    #: Observation keys the policy sees, flattened in this order; null = every key of
    #: the store with at most one dimension (images and other 2+-dim keys are left out,
    #: since the policies are MLPs; name them here to flatten them in anyway).
    obs_keys: list[str] | None = None

    def __post_init__(self) -> None:
        _check_obs_keys(self.obs_keys)


#: DatasetConfig fields that only recording the scripted expert reads.
_RECORDING_FIELDS = ("n_episodes", "action_noise_std", "seed", "operator")


@dataclass
class DatasetConfig:
    """Where demonstrations come from and where they are stored."""

    #: Path of the episode store (a directory). A store the pipeline records (source
    #: scripted) goes inside the run directory when the path is relative; an existing
    #: store is found relative to the working directory. Required for an existing store.
    path: str = MISSING
    #: scripted: record the task's scripted expert into ``path``; existing: read ``path``.
    source: str = "scripted"
    #: Episodes to record (scripted source).
    n_episodes: int = 100
    #: Gaussian noise std on the expert's normalized actions while recording.
    action_noise_std: float = 0.1
    #: Seed of the first recorded episode; episode i uses seed + i.
    seed: int = 0
    #: Pseudonym stored as the operator in each episode's provenance.
    operator: str = "scripted-expert"
    #: Observation keys the policy sees, flattened in this order; null = every key of
    #: the store with at most one dimension (images and other 2+-dim keys are left out,
    #: since the policies are MLPs; name them here to flatten them in anyway).
    obs_keys: list[str] | None = None

    def __post_init__(self) -> None:
        _check_obs_keys(self.obs_keys)
        _check(
            self.source in ("scripted", "existing"),
            "dataset.source",
            self.source,
            "'scripted' or 'existing'",
        )
        _check(self.n_episodes > 0, "dataset.n_episodes", self.n_episodes, "> 0")
        _check(
            0 <= self.action_noise_std <= 2,
            "dataset.action_noise_std",
            self.action_noise_std,
            "in [0, 2]",
        )


#: Settings of the training run that were ``algo.<key>`` before they moved to ``train``.
MOVED_TO_TRAIN = (
    "steps",
    "batch_size",
    "seed",
    "device",
    "mixed_precision",
    "log_every",
    "checkpoint_every",
)


@dataclass
class TrainConfig:
    """The offline training run, whatever the algorithm (``train.<field>``).

    Attributes:
        steps: Gradient steps.
        batch_size: Transitions per gradient step.
        seed: Seeds the networks, the batch sampler and python/numpy/torch.
        device: cpu, cuda, cuda:<i>, or auto (cuda when present, else cpu).
        mixed_precision: Forward passes under bf16 autocast (losses stay float32): faster
            on GPUs and on CPUs with bf16 matrix units, at bf16's ~3 significant digits
            in activations.
        log_every: Log the mean of each metric over this many steps (TensorBoard).
        checkpoint_every: Write a checkpoint every this many steps, all kept (0: only the
            last, at the end).
    """

    steps: int = 20_000
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = False
    log_every: int = 250
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        _check(self.steps > 0, "train.steps", self.steps, "> 0")
        _check(self.batch_size > 0, "train.batch_size", self.batch_size, "> 0")
        _check(
            self.device in ("auto", "cpu", "cuda")
            or (self.device.startswith("cuda:") and self.device[5:].isdigit()),
            "train.device",
            self.device,
            "auto, cpu, cuda or cuda:<i>",
        )
        _check(self.log_every > 0, "train.log_every", self.log_every, "> 0")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every", self.checkpoint_every, ">= 0")


@dataclass
class EvalConfig:
    """Evaluation runs in simulation."""

    #: Episodes per evaluated policy.
    n_episodes: int = 50
    #: Seed of the first evaluation episode (episode i resets with seed + i); keep it
    #: away from dataset seeds so evaluation is on held-out initial states.
    seed: int = 1_000_000
    #: Episodes of the learned policy to record to mp4 (0: no video).
    video_episodes: int = 2
    #: Camera name in the scene, and frame size in pixels.
    camera: str = "front"
    width: int = 320
    height: int = 240
    #: Also evaluate the scripted expert as a reference.
    include_expert: bool = True

    def __post_init__(self) -> None:
        _check(self.n_episodes > 0, "eval.n_episodes", self.n_episodes, "> 0")
        _check(self.video_episodes >= 0, "eval.video_episodes", self.video_episodes, ">= 0")
        _check(
            16 <= self.width <= 1920 and 16 <= self.height <= 1080,
            "eval.width/height",
            (self.width, self.height),
            "16..1920 x 16..1080",
        )


@dataclass
class PipelineConfig:
    """robot-rl-pipeline: demonstrations -> store -> offline learning -> sim evaluation."""

    robot: RobotConfig = MISSING
    task: TaskConfig = MISSING
    sim: SimConfig = MISSING
    dataset: DatasetConfig = MISSING
    #: The algorithm's config, selected by ``algo=<name>`` (robot_rl.config.algos).
    algo: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = MISSING
    #: Domain randomization of the simulated cell, applied to the demonstrations and to
    #: the evaluation runs alike (re-sampled every episode from its seed).
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    #: Name of the chosen profile (quick, full), for the report.
    profile: str = "full"
    #: Show progress bars (on a terminal).
    progress: bool = True

    def __post_init__(self) -> None:
        check_control_period(self.task, self.sim)
        check_algorithm_config(self.algo)
        check_sim_runs_on_cpu(self.sim, "robot-rl-pipeline")
        _check(
            not (self.dataset.source == "scripted" and self.task.action_mode != "ee_delta"),
            "task.action_mode",
            self.task.action_mode,
            "ee_delta when dataset.source=scripted (the scripted experts command the end effector)",
        )
        if self.dataset.source == "existing":
            defaults = {f.name: _default(f) for f in dataclasses.fields(DatasetConfig)}
            hint = (
                " (profile=quick sets dataset.n_episodes: with an existing store leave it "
                "out, or give dataset.n_episodes=100)"
                if self.profile == "quick"
                else ""
            )
            for key in _RECORDING_FIELDS:
                _refuse_unused(
                    f"dataset.{key}",
                    getattr(self.dataset, key),
                    defaults[key],
                    "is not used by robot-rl-pipeline with dataset=existing: it learns from "
                    "every episode of dataset.path; this setting is for recording the "
                    "scripted expert (dataset=scripted)" + (hint if key == "n_episodes" else ""),
                )


def check_algorithm_config(algo: Any) -> None:
    """``algo`` must be one of the algorithm configs (:mod:`robot_rl.config.algos`)."""
    from robot_rl.config.algos import ALGORITHM_CONFIGS

    if not isinstance(algo, tuple(ALGORITHM_CONFIGS.values())):
        raise ConfigError(
            f"algo is a {type(algo).__name__}: expected one of the algorithm configs "
            f"({', '.join(c.__name__ for c in ALGORITHM_CONFIGS.values())}), chosen with "
            f"algo={'|'.join(ALGORITHM_CONFIGS)}"
        )


@dataclass
class PretrainConfig:
    """robot-rl-pretrain: offline learning on an existing episode store."""

    dataset: StoreConfig = field(default_factory=StoreConfig)
    #: The algorithm's config, selected by ``algo=<name>`` (robot_rl.config.algos).
    algo: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    #: Show progress bars (on a terminal).
    progress: bool = True

    def __post_init__(self) -> None:
        check_algorithm_config(self.algo)


@dataclass
class EvaluateConfig:
    """robot-rl-eval: evaluation runs of a policy artifact (or the scripted expert) in sim."""

    robot: RobotConfig = MISSING
    task: TaskConfig = MISSING
    sim: SimConfig = MISSING
    eval: EvalConfig = MISSING
    #: A policy artifact directory, or "expert" for the task's scripted expert.
    policy: str = MISSING
    #: Domain randomization during the evaluation runs (re-sampled every episode).
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    #: Show progress bars (on a terminal).
    progress: bool = True

    def __post_init__(self) -> None:
        check_control_period(self.task, self.sim)
        check_sim_runs_on_cpu(self.sim, "robot-rl-eval")


TELEOP_DEVICES = ("scripted", "keyboard", "spacemouse", "gamepad", "replay")


@dataclass
class TeleopConfig:
    """The device that drives robot-rl-record; one YAML per device in ``conf/teleop/``."""

    #: scripted (the task's expert), keyboard, spacemouse, gamepad, or replay (of a
    #: stored episode's actions).
    device: str = "scripted"
    #: Hold each control tick to the control period (a person drives); false runs as fast
    #: as possible and waits for the disk when its queue is full (scripted, replay).
    realtime: bool = False
    #: After an episode ends, wait for the operator to keep, discard, re-record or label
    #: it (only for a person's devices).
    review: bool = False
    #: Fraction of the largest end-effector step (task.max_ee_step_m) commanded at full
    #: deflection or while a key is held, in (0, 1].
    speed: float = 1.0
    #: Stick or cap deflection read as zero, as a fraction of full deflection.
    deadzone: float = 0.05
    #: Source axis for dx, dy, dz (base frame): a SpaceMouse state field (x, y, z, roll,
    #: pitch, yaw) or a gamepad axis index; a leading "-" inverts, "" leaves it unmapped.
    #: Empty: the device's default.
    axes: list[str] = field(default_factory=list)
    #: Raw input -> command: pygame key names ("w", "return"), "button:<i>",
    #: "hat:<i>:up|down|left|right". Commands: x+ x- y+ y- z+ z- gripper_toggle
    #: gripper_close start stop toggle discard rerecord success failure quit.
    #: Empty: the device's default.
    bindings: dict[str, str] = field(default_factory=dict)
    #: SpaceMouse: pyspacemouse axis convention (ros, hid_z_up, hid, unity, legacy).
    axis_convention: str = "ros"
    #: SpaceMouse: device name as pyspacemouse lists it ("" = the first one found).
    spacemouse_name: str = ""
    #: Gamepad: index of the joystick among those connected.
    joystick_index: int = 0
    #: Scripted: std of Gaussian noise on the expert's normalized actions.
    action_noise_std: float = 0.0
    #: Replay: the episode store to replay from.
    replay_store: str = ""
    #: Replay: episode index in replay_store (negative counts from the end).
    replay_episode: int = 0
    #: Drive the device from a recorded raw-event log (JSON lines) instead of the
    #: hardware (keyboard, spacemouse, gamepad).
    events_in: str = ""
    #: Clock of the events_in replay: tick (exact, timing-independent) or time.
    events_clock: str = "tick"
    #: Write the device's raw events to this JSON-lines log ("" = no log); a relative
    #: path is inside the run directory.
    events_out: str = ""

    def __post_init__(self) -> None:
        _check(
            self.device in TELEOP_DEVICES,
            "teleop.device",
            self.device,
            f"one of {TELEOP_DEVICES}",
        )
        _check(0 < self.speed <= 1, "teleop.speed", self.speed, "in (0, 1]")
        _check(0 <= self.deadzone < 1, "teleop.deadzone", self.deadzone, "in [0, 1)")
        _check(len(self.axes) in (0, 3), "teleop.axes", self.axes, "[] or 3 entries (dx, dy, dz)")
        _check(
            0 <= self.action_noise_std <= 2,
            "teleop.action_noise_std",
            self.action_noise_std,
            "in [0, 2]",
        )
        _check(
            self.events_clock in ("tick", "time"),
            "teleop.events_clock",
            self.events_clock,
            "'tick' or 'time'",
        )
        _check(
            self.device != "replay" or bool(self.replay_store),
            "teleop.replay_store",
            self.replay_store,
            "the path of a store to replay (device=replay)",
        )
        _check(
            not self.review or self.device in ("keyboard", "spacemouse", "gamepad"),
            "teleop.review",
            self.review,
            "false for a device without an operator (scripted, replay)",
        )
        for f in dataclasses.fields(self):
            readers = [d for d, keys in _TELEOP_FIELDS.items() if f.name in keys]
            if not readers or self.device in readers:
                continue
            value = getattr(self, f.name)
            if value != _default(f):
                raise ConfigError(
                    f"teleop.{f.name}={value!r} is not read by teleop={self.device}: only "
                    f"by teleop={'|'.join(readers)}; leave it out"
                )
        _check(
            self.events_clock == "tick" or bool(self.events_in),
            "teleop.events_clock",
            self.events_clock,
            "'tick' unless teleop.events_in replays an event log",
        )


_EVENT_LOG_FIELDS = ("events_in", "events_clock", "events_out")
#: TeleopConfig fields that only some devices read (the others -- device, realtime,
#: review -- every device reads): a value set for another device would be ignored.
_TELEOP_FIELDS = {
    "scripted": ("action_noise_std",),
    "replay": ("replay_store", "replay_episode"),
    "keyboard": ("speed", "bindings", *_EVENT_LOG_FIELDS),
    "gamepad": ("speed", "deadzone", "axes", "bindings", "joystick_index", *_EVENT_LOG_FIELDS),
    "spacemouse": (
        "speed",
        "deadzone",
        "axes",
        "bindings",
        "axis_convention",
        "spacemouse_name",
        *_EVENT_LOG_FIELDS,
    ),
}


@dataclass
class RecordStoreConfig:
    """The episode store robot-rl-record writes to."""

    #: Store directory: created when missing, appended to when it exists (its robot,
    #: task, control rate, observation keys and action size must match).
    path: str = MISSING
    #: Rows per chunk of a new store (0: automatic, about 1 MiB per chunk).
    chunk_steps: int = 0

    def __post_init__(self) -> None:
        _check(self.chunk_steps >= 0, "store.chunk_steps", self.chunk_steps, ">= 0")


@dataclass
class RecordConfig:
    """robot-rl-record: teleoperation or a scripted expert in sim -> episode store."""

    robot: RobotConfig = MISSING
    task: TaskConfig = MISSING
    sim: SimConfig = MISSING
    teleop: TeleopConfig = MISSING
    store: RecordStoreConfig = field(default_factory=RecordStoreConfig)
    #: Episodes to keep (0: until the operator quits).
    n_episodes: int = 10
    #: Reset seed of the first episode (null: a random one, printed); each kept or
    #: discarded episode moves to the next seed, a re-recorded one keeps its seed.
    seed: int | None = None
    #: The operator's existing pseudonym, stored as is (16 hex digits, as
    #: robot-rl-data prints them). The real name never goes in the config (Hydra writes
    #: the config to the run directory): it comes from $ROBOT_RL_OPERATOR, or a prompt
    #: when a person drives the device, and is pseudonymized at once.
    operator_pseudonym: str = ""
    #: File holding the pseudonym salt, kept outside every store ("" = the file named by
    #: $ROBOT_RL_PSEUDONYM_SALT_FILE, else ~/.config/robot_rl/pseudonym_salt; created
    #: with random bytes on first use).
    operator_salt_file: str = ""
    #: Robot unit id for provenance ("" = "sim:<robot.name>").
    robot_id: str = ""
    #: Writer queue capacity, in row blocks.
    queue_blocks: int = 64
    #: Rows per block handed to the writer thread.
    block_steps: int = 10
    #: A row block that does not fit in the writer queue: keep (store the episode flagged
    #: with dropped_rows and gap_rows in its provenance; the only choice for robot
    #: episodes) or discard (drop the episode and record its seed again; sim only).
    on_overflow: str = "keep"
    #: Truncate episodes after this many control steps (0: the task's horizon).
    max_episode_steps: int = 0
    #: Live progress panel (on a terminal; plain lines otherwise).
    progress: bool = True

    def __post_init__(self) -> None:
        check_sim_runs_on_cpu(self.sim, "robot-rl-record")
        _check(self.n_episodes >= 0, "n_episodes", self.n_episodes, ">= 0 (0: until quit)")
        _check(self.queue_blocks >= 2, "queue_blocks", self.queue_blocks, ">= 2")
        _check(self.block_steps >= 1, "block_steps", self.block_steps, ">= 1")
        _check(
            self.on_overflow in ("keep", "discard"),
            "on_overflow",
            self.on_overflow,
            "keep or discard",
        )
        _check(self.max_episode_steps >= 0, "max_episode_steps", self.max_episode_steps, ">= 0")
