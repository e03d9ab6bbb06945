"""The single-world Gymnasium env for the tabletop tasks (``robot_rl/Reach-v0`` etc.).

One ``step`` is one control step: the action becomes joint targets (through differential
IK in the end-effector mode), passes the command filter hook (the safety filter's place),
and the physics runs ``physics substeps = control period / physics_dt_s`` steps.

Observations are a dict of float32 arrays (:data:`OBS_SPEC`); actions are normalized to
[-1, 1]: ``ee_delta`` is ``[dx, dy, dz, gripper]`` with ``|d| <= max_ee_step_m`` after
scaling, ``joint_delta`` is ``[dq1..dq7, gripper]``; ``gripper`` maps -1 -> closed,
+1 -> fully open (0.08 m).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import mujoco
import numpy as np

from robot_rl.arrays import Array, array_namespace, const
from robot_rl.config.randomization import RandomizationConfig
from robot_rl.config.sim import RobotConfig, SimConfig, TaskConfig
from robot_rl.kinematics import SerialChain, quat_to_mat
from robot_rl.safety.filter import VERSION as SAFETY_VERSION
from robot_rl.safety.filter import RobotState, SafetyFilter, SafetyReport
from robot_rl.sim.ik import DifferentialIK
from robot_rl.sim.randomization import ActionDelay, DomainRandomizer, episode_rng
from robot_rl.sim.scene import TabletopScene
from robot_rl.sim.tasks import TASKS
from robot_rl.sim.tasks.base import START_TCP_M, WORKSPACE_MAX_M, WORKSPACE_MIN_M

#: Observation keys, their per-step shapes (all float32) and units.
OBS_SPEC: dict[str, tuple[tuple[int, ...], str]] = {
    "joint_pos": ((7,), "rad"),
    "joint_vel": ((7,), "rad/s"),
    "gripper_width": ((1,), "m"),
    "ee_pos": ((3,), "m"),
    "ee_quat": ((4,), "quaternion wxyz"),
    "object_pos": ((3,), "m"),
    "object_quat": ((4,), "quaternion wxyz"),
    "goal": ((3,), "m"),
}
#: The TCP keeps pointing straight down (rotated 180 deg about x): (w, x, y, z).
EE_DOWN_QUAT = np.array([0.0, 1.0, 0.0, 0.0])
#: The same orientation as a rotation matrix (what the IK compares against).
EE_DOWN_ROT = quat_to_mat(EE_DOWN_QUAT)
#: How far the commanded TCP target may run ahead of the measured TCP, metres; stops the
#: target from winding up while the arm is blocked (pushing into the table or the cube).
MAX_TARGET_LEAD_M = 0.04


def arm_targets(
    cfg: TaskConfig,
    ik: DifferentialIK,
    q_cmd: Array,
    tcp_target: Array,
    ee_pos: Array,
    a: Array,
) -> tuple[Array, Array]:
    """Normalized arm actions (N, 3 or 7) -> joint targets (N, 7) and TCP targets (N, 3).

    The one action pipeline of the single env and the batched simulator: end-effector
    deltas (at most ``max_ee_step_m`` in norm) accumulate on the commanded TCP target,
    which stays in the workspace and within ``MAX_TARGET_LEAD_M`` of the measured TCP, and
    one IK iteration turns it into joint targets; joint deltas move the joint targets.
    numpy arrays (float64, host) or torch tensors (their device), see
    :mod:`robot_rl.arrays`.
    """
    xp = array_namespace(q_cmd, a)
    if cfg.action_mode == "joint_delta":
        return ik.clip(q_cmd + a * cfg.max_joint_step_rad), tcp_target
    delta = a * cfg.max_ee_step_m
    norm = xp.linalg.vector_norm(delta, axis=-1, keepdims=True)
    delta = delta * xp.clip(cfg.max_ee_step_m / xp.clip(norm, min=1e-300), max=1.0)
    lo, hi = const(WORKSPACE_MIN_M, a), const(WORKSPACE_MAX_M, a)
    target = xp.clip(tcp_target + delta, min=lo, max=hi)
    lead = target - ee_pos
    lead_norm = xp.linalg.vector_norm(lead, axis=-1, keepdims=True)
    target = ee_pos + lead * xp.clip(MAX_TARGET_LEAD_M / xp.clip(lead_norm, min=1e-300), max=1.0)
    return ik.solve(q_cmd, target, target_rot=EE_DOWN_ROT, iters=1), target


class CommandFilter(Protocol):
    """The joint-command hook: the safety filter (:class:`robot_rl.safety.SafetyFilter`)
    or anything with its two methods, batched over worlds (leading axis)."""

    def reset(self, state: RobotState, worlds: Any = None) -> None: ...

    def filter(self, state: RobotState, command: Any) -> tuple[Any, SafetyReport]: ...


def make_safety_filter(scene: TabletopScene, sim: SimConfig, dt: float) -> SafetyFilter | None:
    """The filter ``sim.safety_filter`` asks for: the robot description's, enforcing
    ``sim.safety_envelope`` at the control period ``dt``; None when turned off."""
    if not sim.safety_filter:
        return None
    return SafetyFilter(scene.description, dt, sim.safety_envelope)


def safety_filter_version_of(env: Any) -> str:
    """What an episode recorded in ``env`` (a :class:`RobotEnv`, wrapped or not) says in
    its provenance about the safety filter; ``"none"`` for envs without one."""
    return str(getattr(getattr(env, "unwrapped", env), "safety_filter_version", "none"))


def safety_filter_version(command_filter: CommandFilter | None) -> str:
    """What an episode's provenance records about the filter that vetted its actions."""
    if command_filter is None:
        return "off"
    if isinstance(command_filter, SafetyFilter):
        return f"{SAFETY_VERSION} ({command_filter.envelope.name})"
    return f"custom:{type(command_filter).__name__}"


class RobotEnv(gym.Env):
    """Panda-class arm on a table with a cube: reach, push or lift.

    Args:
        task: task name (reach, push, lift), used when ``task_config`` is None.
        task_config: full task settings; keyword overrides are applied on top.
        robot_config: scene and limits (default: the Panda scene).
        sim_config: physics settings (default: 2 ms step).
        render_mode: None or "rgb_array".
        camera: scene camera used by ``render``.
        width, height: rendered frame size in pixels.
        command_filter: the joint-command hook, called once per control step with the
            measured state and the proposed joint targets (see :class:`CommandFilter`).
            Default: the safety filter of the robot's description, as ``sim_config``
            asks (``sim.safety_filter``, ``sim.safety_envelope``); off only when the
            config turns it off.
        randomization: domain randomization, re-sampled at every reset from the reset
            seed (see :mod:`robot_rl.sim.randomization`); None or a config that
            randomizes nothing leaves the env exactly as without it.
        **task_overrides: fields of :class:`TaskConfig`, e.g. ``reward_type="sparse"``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str = "reach",
        *,
        task_config: TaskConfig | None = None,
        robot_config: RobotConfig | None = None,
        sim_config: SimConfig | None = None,
        render_mode: str | None = None,
        camera: str = "front",
        width: int = 320,
        height: int = 240,
        command_filter: CommandFilter | None = None,
        randomization: RandomizationConfig | None = None,
        **task_overrides: Any,
    ) -> None:
        base = task_config if task_config is not None else TaskConfig(name=task)
        try:
            self.task_config = replace(base, **task_overrides)
        except TypeError as e:
            raise TypeError(f"unknown task option in {sorted(task_overrides)}: {e}") from None
        cfg = self.task_config
        self.robot_config = robot_config or RobotConfig()
        self.sim_config = sim_config or SimConfig()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}: expected None or 'rgb_array'")
        self.render_mode = render_mode

        self.scene = TabletopScene(self.robot_config, self.sim_config.physics_dt_s)
        self.model = self.scene.model
        self.data = self.scene.new_data()
        substeps = (1.0 / cfg.control_hz) / self.sim_config.physics_dt_s
        if abs(substeps - round(substeps)) > 1e-6 or round(substeps) < 1:
            raise ValueError(
                f"control period 1/{cfg.control_hz} s is not a whole number of physics steps "
                f"of {self.sim_config.physics_dt_s} s (task.control_hz, sim.physics_dt_s)"
            )
        self.n_substeps = round(substeps)
        self.control_dt_s = self.n_substeps * self.sim_config.physics_dt_s
        self._ramp = np.arange(1, self.n_substeps + 1) / self.n_substeps
        self.metadata = {**self.metadata, "render_fps": cfg.control_hz}
        self.task = TASKS[cfg.name]()
        # Consecutive control steps on which the success condition must hold.
        self.success_steps_needed = 1 + math.ceil(self.task.hold_time_s / self.control_dt_s - 1e-9)
        self.horizon_steps = cfg.horizon_steps or round(
            self.task.default_horizon_steps * cfg.control_hz / 20.0
        )
        limits = self.scene.limits
        self.home_q = limits.home_joint_pos_rad.copy()
        self.chain = SerialChain(self.model, limits.joint_names, self.robot_config.tcp_site)
        self.ik = DifferentialIK(
            self.chain, self.scene.arm_pos_min, self.scene.arm_pos_max, self.home_q
        )
        # The start posture: the arm's ready posture moved (by IK) to put the TCP at the
        # start point; deterministic, so it is the same in every env and backend.
        self.start_q = self.ik.solve(self.home_q, START_TCP_M, EE_DOWN_QUAT, iters=300)
        self.command_filter = (
            command_filter
            if command_filter is not None
            else make_safety_filter(self.scene, self.sim_config, self.control_dt_s)
        )
        #: Recorded as the episodes' ``safety_filter_version`` ("off" without a filter).
        self.safety_filter_version = safety_filter_version(self.command_filter)
        self.randomizer = (
            DomainRandomizer(randomization, self.scene, {k: s for k, (s, _) in OBS_SPEC.items()})
            if randomization is not None and randomization.enabled
            else None
        )
        #: The current episode's sampled randomization parameters (empty without).
        self.randomization_params: dict[str, np.ndarray] = {}
        self._dr_rng: np.random.Generator | None = None
        self._joint_offset = np.zeros(len(self.home_q))
        self._obs_noise: np.ndarray | None = None
        self._delay: ActionDelay | None = None

        n_act = 4 if cfg.action_mode == "ee_delta" else 8
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n_act,), dtype=np.float32)
        spaces = {
            k: gym.spaces.Box(-np.inf, np.inf, s, np.float32) for k, (s, _) in OBS_SPEC.items()
        }
        if self.randomizer is None:
            # Without calibration offsets and sensor noise these are physical bounds; with
            # them an observation can leave them, so the spaces stay unbounded.
            spaces["joint_pos"] = gym.spaces.Box(
                self.scene.arm_pos_min.astype(np.float32),
                self.scene.arm_pos_max.astype(np.float32),
                dtype=np.float32,
            )
            spaces["gripper_width"] = gym.spaces.Box(
                0.0, self.scene.gripper_width_max_m, (1,), np.float32
            )
        self.observation_space = gym.spaces.Dict(spaces)
        r = self.randomizer
        if r is not None and r.max_latency_steps > 0:
            # Held before the first delayed action arrives: no motion, gripper open.
            hold = np.zeros(n_act)
            hold[-1] = 1.0
            self._delay = ActionDelay(1, r.max_latency_steps, hold)

        self._q_cmd = self.start_q.copy()
        self._tcp_target = np.zeros(3)
        self._steps = 0
        self._condition_steps = 0
        self._renderer: mujoco.Renderer | None = None
        self._camera = camera
        self._size = (height, width)

    # --- gym API -------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        rng = self.np_random
        r = self.randomizer
        if r is not None:
            # Its own stream: the task's draws stay as they are without randomization.
            self._dr_rng = (
                episode_rng(seed)
                if seed is not None
                else np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
            )
            self.randomization_params = r.sample(self._dr_rng)
            r.apply(self.model, self.randomization_params)
            self._joint_offset = self.randomization_params["joint_offset_rad"].copy()
        mujoco.mj_resetData(self.model, self.data)
        noise = self.task_config.init_joint_noise_rad
        q0 = self.start_q + rng.uniform(-noise, noise, size=self.start_q.shape)
        q0 = np.clip(q0, self.ik.q_lo, self.ik.q_hi)
        self.data.qpos[self.scene.arm_qpos_adr] = q0
        self.data.qpos[self.scene.finger_qpos_adr] = self.scene.gripper_width_max_m / 2
        self.task.reset(self.scene, self.data, rng)
        if r is not None:
            r.place_object(self.data, self.randomization_params)
        # Joint targets live in the frame the encoders measure (offset by calibration error).
        self._q_cmd = q0 + self._joint_offset if r is not None else q0.copy()
        self.data.ctrl[self.scene.arm_actuators] = q0
        self.data.ctrl[self.scene.gripper_actuator] = self.scene.gripper_width_max_m / 2
        mujoco.mj_forward(self.model, self.data)
        if self.command_filter is not None:
            self.command_filter.reset(self._robot_state())
        self._update_ee_pose()
        self._tcp_target = self._ee_pos.copy()
        self._steps = 0
        self._condition_steps = 0
        if r is not None:
            if self._delay is not None:
                latency = int(self.randomization_params["action_latency_steps"][0])
                self._delay.reset_world(0, latency)
            self._obs_noise = r.obs_noise(self._dr_rng) if r.has_obs_noise else None
        return self._obs(), {"is_success": False}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}, expected {self.action_space.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {action}")
        a = np.clip(a, -1.0, 1.0)
        r = self.randomizer
        if self._delay is not None:
            a = self._delay.push(a[None])[0]
        q_target = self._arm_targets(a[:-1])
        safety: dict[str, bool] = {}
        clipped = False
        if self.command_filter is not None:
            safe, report = self.command_filter.filter(self._robot_state(), q_target[None])
            q_target = np.asarray(safe[0], dtype=np.float64)
            clipped = bool(report.clipped[0])
            safety = {k: bool(v[0]) for k, v in report.acted.items()}
        self.data.ctrl[self.scene.gripper_actuator] = (
            (a[-1] + 1.0) / 2.0 * (self.scene.gripper_width_max_m / 2)
        )
        # Joint targets ramp linearly from the last control step's to this one's over the
        # physics substeps, as the robot-side server interpolates to the driver rate; a
        # step change held for a whole control period would demand accelerations far
        # beyond the arm's.
        arm = self.scene.arm_actuators
        # Each control step starts the solver cold, from the state alone: a batched backend
        # (mujoco.rollout) does the same, so both give bit-identical physics.
        self.data.qacc_warmstart[:] = 0.0
        if r is not None and r.has_jitter:
            self.model.opt.timestep = r.nominal["timestep"] * r.timestep_scale(self._dr_rng)
        for alpha in self._ramp:
            self.data.ctrl[arm] = self._q_cmd + alpha * (q_target - self._q_cmd)
            if r is not None:
                self.data.ctrl[arm] -= self._joint_offset
            mujoco.mj_step(self.model, self.data)
        self._q_cmd = q_target
        self._steps += 1

        self._update_ee_pose()
        if r is not None and r.has_obs_noise:
            self._obs_noise = r.obs_noise(self._dr_rng)
        m = self.scene.measure(self.data, self._tcp_true_pos)
        self._condition_steps = self._condition_steps + 1 if bool(self.task.condition(m)) else 0
        success = self._condition_steps >= self.success_steps_needed
        if self.task_config.reward_type == "dense":
            reward = float(self.task.dense_reward(m))
        else:
            reward = float(success)
        terminated = bool(success and self.task_config.terminate_on_success)
        truncated = bool(not terminated and self._steps >= self.horizon_steps)
        if not np.all(np.isfinite(self.data.qpos)):
            raise RuntimeError(
                f"physics diverged at control step {self._steps} (non-finite qpos); "
                "check sim.physics_dt_s and model parameters"
            )
        info = {"is_success": success, "clipped": clipped, "safety": safety}
        return self._obs(), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, *self._size)
            self._render_data = mujoco.MjData(self.model)
        # Draw the current state: after mj_step, self.data's poses are those computed
        # before the step's integration. A copy keeps rendering free of side effects.
        state = np.empty(mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(self.model, self.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_setState(
            self.model, self._render_data, state, mujoco.mjtState.mjSTATE_INTEGRATION
        )
        mujoco.mj_forward(self.model, self._render_data)
        self._renderer.update_scene(self._render_data, camera=self._camera)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- internals -----------------------------------------------------------------------
    def _robot_state(self) -> RobotState:
        """What the robot's sensors report, in the encoders' frame (offset by the
        calibration error under randomization): joint positions, velocities, torques."""
        s = self.scene
        q = self.data.qpos[s.arm_qpos_adr].copy()
        dq = self.data.qvel[s.arm_dof_adr].copy()
        tau = s.arm_torque(q, dq, self.data.ctrl[s.arm_actuators])
        if self.randomizer is not None:
            q += self._joint_offset
        return RobotState(q[None], dq[None], tau[None])

    def _arm_targets(self, a: np.ndarray) -> np.ndarray:
        q_target, tcp_target = arm_targets(
            self.task_config, self.ik, self._q_cmd[None], self._tcp_target[None],
            self._ee_pos[None], a[None],
        )  # fmt: skip
        self._tcp_target = tcp_target[0]
        return q_target[0]

    def _update_ee_pose(self) -> None:
        # From the current joint positions: MuJoCo's site_xpos after mj_step still holds
        # the pose computed before the step's integration.
        q = self.data.qpos[self.scene.arm_qpos_adr]
        pos, rot = self.ik.forward(q)
        # The task scores the true TCP; the policy and the action pipeline see the pose
        # the (possibly miscalibrated) encoders imply.
        self._tcp_true_pos = pos[0]
        if self.randomizer is not None and self.randomizer.has_joint_offset:
            pos, rot = self.ik.forward(q + self._joint_offset)
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, rot[0].ravel())
        # q and -q are one rotation; keep the side of the pointing-down orientation
        # (0, 1, 0, 0), where the TCP spends its time, so the observation never flips.
        self._ee_pos, self._ee_quat = pos[0], quat if quat[1] >= 0 else -quat

    def _obs(self) -> dict[str, np.ndarray]:
        d, s = self.data, self.scene
        cube_pos, cube_quat = s.cube_pose(d)
        obs = {
            "joint_pos": d.qpos[s.arm_qpos_adr],
            "joint_vel": d.qvel[s.arm_dof_adr],
            # Penetration of the closed pads can make the width a hair negative.
            "gripper_width": np.clip([s.gripper_width(d)], 0.0, s.gripper_width_max_m),
            "ee_pos": self._ee_pos,
            "ee_quat": self._ee_quat,
            "object_pos": cube_pos,
            "object_quat": cube_quat,
            "goal": s.goal(d),
        }
        if self.randomizer is not None:
            obs["joint_pos"] = obs["joint_pos"] + self._joint_offset
            if self._obs_noise is not None:
                self.randomizer.add_obs_noise(obs, self._obs_noise)
        return {k: v.astype(np.float32) for k, v in obs.items()}


def make_env(
    task: TaskConfig,
    robot: RobotConfig | None = None,
    sim: SimConfig | None = None,
    *,
    render: bool = False,
    camera: str = "front",
    width: int = 320,
    height: int = 240,
    randomization: RandomizationConfig | None = None,
) -> RobotEnv:
    """A :class:`RobotEnv` from typed configs; ``render=True`` gives ``rgb_array`` frames."""
    return RobotEnv(
        task_config=task,
        robot_config=robot,
        sim_config=sim,
        randomization=randomization,
        render_mode="rgb_array" if render else None,
        camera=camera,
        width=width,
        height=height,
    )
