"""What is simulated: the robot (``robot`` group), the task and how the policy acts in it
(``task``), and the physics backend (``sim``), with the checks that span them."""

from __future__ import annotations

from dataclasses import dataclass

from robot_rl.config.validation import _check, _refuse_unused

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
    """The simulated robot: its scene and its description (limits, envelopes)."""

    name: str = "panda"
    #: MJCF scene, relative to ``sim_assets/``.
    scene_xml: str = "scenes/table_cube.xml"
    #: The robot's description (joint limits, safety envelopes, clearances; see
    #: robot_rl.safety.description), relative to ``hardware/``.
    description: str = "franka_panda/robot.yaml"
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
