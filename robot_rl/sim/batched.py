"""Many worlds of one tabletop task stepped together: the batched simulator, CPU backend.

One :meth:`BatchedSim.step` is one control step of every world: the actions go through
the same pipeline as the single env (:func:`robot_rl.sim.env.arm_targets`: end-effector
deltas, differential IK, the command-filter hook), the joint targets ramp over the
physics substeps, and ``mujoco.rollout`` runs all worlds' substeps on a thread pool in
one call. Observations, rewards and success are computed for all worlds at once from the
returned states and sensor data, and come back as torch tensors.

Seeding, so that a single :class:`~robot_rl.sim.env.RobotEnv` reproduces any world:
world ``w`` of a batch seeded ``s`` resets its ``k``-th episode with the seed
:meth:`BatchedSim.episode_seed` derives from ``(s, w, k)`` with ``numpy``'s
``SeedSequence`` (k counts the world's episodes: auto-resets and unseeded resets each move
it on), so no two worlds, episodes or batch seeds share an episode. Each control step
starts the solver from the state alone, in both (see the single env), so a world and a
single env driven by the same actions agree exactly.

Domain randomization (:mod:`robot_rl.sim.randomization`): each world has its own
``MjModel`` copy once anything is randomized; a world's reset samples through the template
env with that episode's seed and writes the sample into the world's model, so a single
env built with the same randomization reproduces the world too. With randomization
``none`` (or None) all worlds share the one model and nothing changes.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import mujoco
import numpy as np
import torch
from mujoco import rollout

from robot_rl.config.schema import (
    ConfigError,
    RandomizationConfig,
    RobotConfig,
    SimConfig,
    TaskConfig,
)
from robot_rl.sim.env import CommandFilter, RobotEnv, arm_targets
from robot_rl.sim.kinematics import mat_to_quat
from robot_rl.sim.randomization import ActionDelay
from robot_rl.sim.scene import Measurements

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def _warp_device(sim: SimConfig) -> str:
    if sim.warp_device != "auto":
        return sim.warp_device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _state_offsets(model: mujoco.MjModel) -> dict[str, int]:
    """Where each component of a full-physics state vector starts."""
    offsets, at = {}, 0
    elements = [
        (name, int(value))
        for name, value in mujoco.mjtState.__members__.items()
        if bin(int(value)).count("1") == 1  # single components, in bit order below
    ]
    for name, bit in sorted(elements, key=lambda e: e[1]):
        if int(_FULL) & bit:
            offsets[name] = at
            at += mujoco.mj_stateSize(model, bit)
    return offsets


class BatchedSim:
    """``n_worlds`` worlds of one task, with per-world auto-reset.

    Args:
        n_worlds: number of worlds.
        task_config, robot_config, sim_config: as for :class:`RobotEnv`.
        seed: batch seed (see the module docstring for the per-world episode seeds).
        n_threads: physics threads (default: all cores).
        command_filter: the safety filter's hook, called once per control step with
            batched (measured joints, proposed targets, control period).
        device: torch device of the returned tensors.
        randomization: domain randomization, re-sampled per world at every reset; the
            current values are in :attr:`randomization_log`, and ``step`` returns those of
            the worlds it reset in ``info["randomization"]``.
    """

    def __init__(
        self,
        n_worlds: int,
        task_config: TaskConfig | None = None,
        robot_config: RobotConfig | None = None,
        sim_config: SimConfig | None = None,
        *,
        seed: int = 0,
        n_threads: int | None = None,
        command_filter: CommandFilter | None = None,
        device: str | torch.device = "cpu",
        randomization: RandomizationConfig | None = None,
    ) -> None:
        if n_worlds < 1:
            raise ValueError(f"n_worlds: expected >= 1, got {n_worlds}")
        # One single env is the template: the same scene, IK, task and reset code.
        self.proto = RobotEnv(
            task_config=task_config or TaskConfig(),
            robot_config=robot_config,
            sim_config=sim_config,
            randomization=randomization,
        )
        p = self.proto
        self.n_worlds = n_worlds
        self.task_config = p.task_config
        self.scene, self.task, self.ik = p.scene, p.task, p.ik
        self.model = p.model
        self.models = [self.model] * n_worlds
        self.n_substeps, self.control_dt_s = p.n_substeps, p.control_dt_s
        self.horizon_steps = p.horizon_steps
        self.success_steps_needed = p.success_steps_needed
        self.action_space, self.observation_space = p.action_space, p.observation_space
        self.command_filter = command_filter
        self.device = torch.device(device)
        if seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed}")
        self.seed = seed
        self._started = False
        self.backend = p.sim_config.backend
        self._warp = None
        if self.backend == "warp":
            if p.randomizer is not None:
                raise ConfigError(
                    "invalid config value randomization: sim.backend=warp supports "
                    "randomization=none only (per-world models are not on the device yet)"
                )
            from robot_rl.sim.backends.warp import WarpBackend  # optional extra

            self._warp = WarpBackend(self.model, n_worlds, device=_warp_device(p.sim_config))
        else:
            n_threads = n_threads or os.cpu_count() or 1
            self._datas = [mujoco.MjData(self.model) for _ in range(n_threads)]
            self._rollout = rollout.Rollout(nthread=n_threads)
        off = _state_offsets(self.model)
        self._qpos = off["mjSTATE_QPOS"]
        self._qvel = off["mjSTATE_QVEL"]
        n_state = mujoco.mj_stateSize(self.model, _FULL)
        self._state = np.zeros((n_worlds, n_state))
        self._q_cmd = np.zeros((n_worlds, 7))
        self._tcp_target = np.zeros((n_worlds, 3))
        self._ee_pos = np.zeros((n_worlds, 3))
        self._ee_quat = np.zeros((n_worlds, 4))
        # Mocap bodies are not part of the physics state mujoco.rollout carries (they do
        # not move and the goal marker touches nothing), so each world's goal lives here.
        self._goal = np.zeros((n_worlds, 3))
        self._renderers: dict[tuple, tuple[mujoco.Renderer, mujoco.MjData]] = {}
        self._sensordata = np.zeros((n_worlds, self.model.nsensordata))
        self._steps = np.zeros(n_worlds, dtype=np.int64)
        self._condition_steps = np.zeros(n_worlds, dtype=np.int64)
        self._episode = np.zeros(n_worlds, dtype=np.int64)
        self._ramp = p._ramp
        self._zero_warmstart = np.zeros((n_worlds, self.model.nv))
        self._tcp_true_pos = np.zeros((n_worlds, 3))
        r = self.randomizer = p.randomizer
        #: Each world's current randomization parameters: key -> (n_worlds, ...) array.
        self.randomization_log: dict[str, np.ndarray] = {}
        if r is not None:
            self.models = [copy.copy(self.model) for _ in range(n_worlds)]
            self._dr_rngs: list[np.random.Generator | None] = [None] * n_worlds
            self._joint_offset = np.zeros((n_worlds, 7))
            self._obs_noise = np.zeros((n_worlds, r.obs_noise_std.size))
            self._delay = (
                ActionDelay(n_worlds, r.max_latency_steps, p._delay.hold)
                if p._delay is not None
                else None
            )

    # --- API -----------------------------------------------------------------------------
    def episode_seed(self, world: int, episode: int) -> int:
        """The reset seed of a world's ``episode``-th episode: a 32-bit integer drawn from
        ``SeedSequence([seed, world, episode])``, so no two (batch seed, world, episode)
        share an episode, and a single env reset with this seed plays it exactly."""
        entropy = [int(self.seed), int(world), int(episode)]
        return int(np.random.SeedSequence(entropy).generate_state(1, np.uint32)[0])

    def current_episode_seeds(self) -> list[int]:
        """The seed of the episode each world is in now."""
        return [self.episode_seed(w, int(k)) for w, k in enumerate(self._episode)]

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        """Resets every world; returns the batched observation.

        With ``seed``, the batch seed becomes ``seed`` and every world starts its episode
        0; without, every world moves on to its next episode (so repeated resets never
        replay the same starts, as Gymnasium's ``reset(seed=None)`` requires).
        """
        if seed is not None:
            if int(seed) < 0:
                raise ValueError(f"seed: expected a non-negative int, got {seed}")
            self.seed, self._started = int(seed), False
        if self._started:
            self._episode += 1
        else:
            self._episode[:] = 0
        self._started = True
        for w in range(self.n_worlds):
            self._reset_world(w)
        if self._warp is not None:
            self._warp.set_state(np.arange(self.n_worlds), self._state)
        return self._obs()

    def step(
        self, actions: np.ndarray | torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One control step of every world.

        Returns:
            obs (after auto-reset for worlds whose episode ended), reward, terminated,
            truncated, and info with ``is_success`` (bool tensor), ``final_obs`` (the
            observation each ended world reached, else its current one) and
            ``episode_seed`` of the episode each world is now in.
        """
        a = np.asarray(
            actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else actions,
            dtype=np.float64,
        )
        expected = (self.n_worlds, *self.action_space.shape)
        if a.shape != expected:
            raise ValueError(f"actions have shape {a.shape}, expected {expected}")
        if not np.all(np.isfinite(a)):
            bad = np.flatnonzero(~np.isfinite(a).all(axis=1))
            raise ValueError(f"actions of worlds {bad.tolist()[:10]} contain NaN or inf")
        a = np.clip(a, -1.0, 1.0)
        r = self.randomizer
        if r is not None and self._delay is not None:
            a = self._delay.push(a)
        q_meas = self._state[:, self._qpos + self.scene.arm_qpos_adr]
        if r is not None:
            q_meas = q_meas + self._joint_offset
        q_target, self._tcp_target = arm_targets(
            self.task_config, self.ik, self._q_cmd, self._tcp_target, self._ee_pos, a[:, :-1]
        )
        if self.command_filter is not None:
            q_target = self.command_filter(q_meas, q_target, self.control_dt_s)
        control = np.empty((self.n_worlds, self.n_substeps, self.model.nu))
        control[:, :, self.scene.arm_actuators] = (
            self._q_cmd[:, None] + self._ramp[None, :, None] * (q_target - self._q_cmd)[:, None]
        )
        if r is not None:
            control[:, :, self.scene.arm_actuators] -= self._joint_offset[:, None]
            if r.has_jitter:
                dt = r.nominal["timestep"]
                for w, model in enumerate(self.models):
                    model.opt.timestep = dt * r.timestep_scale(self._dr_rngs[w])
        gripper = (a[:, -1] + 1.0) / 2.0 * (self.scene.gripper_width_max_m / 2)
        control[:, :, self.scene.gripper_actuator] = gripper[:, None]
        if self._warp is not None:
            self._state, self._sensordata = self._warp.step(None, control)
        else:
            states, sensordata = self._rollout.rollout(
                self.models,
                self._datas,
                self._state,
                control,
                nstep=self.n_substeps,
                initial_warmstart=self._zero_warmstart,
            )
            self._state = states[:, -1].copy()
            self._sensordata = sensordata[:, -1].copy()
        if not np.all(np.isfinite(self._state)):
            bad = np.flatnonzero(~np.isfinite(self._state).all(axis=1))
            raise RuntimeError(f"physics diverged in worlds {bad.tolist()[:10]}")
        self._q_cmd = q_target
        self._steps += 1
        self._update_ee_pose()
        if r is not None and r.has_obs_noise:
            for w in range(self.n_worlds):
                self._obs_noise[w] = r.obs_noise(self._dr_rngs[w])

        m = self._measure()
        cond = np.asarray(self.task.condition(m), dtype=bool)
        self._condition_steps = np.where(cond, self._condition_steps + 1, 0)
        success = self._condition_steps >= self.success_steps_needed
        if self.task_config.reward_type == "dense":
            reward = np.asarray(self.task.dense_reward(m), dtype=np.float64)
        else:
            reward = success.astype(np.float64)
        terminated = success & self.task_config.terminate_on_success
        truncated = ~terminated & (self._steps >= self.horizon_steps)
        final_obs = self._obs()
        done = np.flatnonzero(terminated | truncated)
        for w in done:
            self._episode[w] += 1
            self._reset_world(int(w))
        if done.size and self._warp is not None:
            self._warp.set_state(done, self._state[done])
        obs = self._obs() if done.size else final_obs
        info: dict[str, Any] = {
            "is_success": torch.as_tensor(success, device=self.device),
            "final_obs": final_obs,
            "episode_seed": torch.as_tensor(self.current_episode_seeds(), device=self.device),
        }
        if r is not None:
            info["randomization"] = {
                "worlds": done,
                **{k: v[done].copy() for k, v in self.randomization_log.items()},
            }
        return (
            obs,
            torch.as_tensor(reward, dtype=torch.float32, device=self.device),
            torch.as_tensor(terminated, device=self.device),
            torch.as_tensor(truncated, device=self.device),
            info,
        )

    def world_state(self, world: int) -> np.ndarray:
        """The full-physics state vector of one world (a copy)."""
        return self._state[world].copy()

    def render(
        self,
        worlds: Sequence[int],
        *,
        camera: str = "front",
        width: int = 320,
        height: int = 240,
    ) -> list[np.ndarray]:
        """RGB frames (height, width, 3) of the chosen worlds as they are now, for videos.

        Each world is drawn with its own (possibly randomized) model; renderers are made
        on first use per model and kept.
        """
        frames = []
        for w in worlds:
            if not 0 <= int(w) < self.n_worlds:
                raise IndexError(f"world {w} out of range [0, {self.n_worlds})")
            model = self.models[int(w)]
            key = (id(model), camera, width, height)
            if key not in self._renderers:
                self._renderers[key] = (mujoco.Renderer(model, height, width), mujoco.MjData(model))
            renderer, data = self._renderers[key]
            mujoco.mj_setState(model, data, self._state[int(w)], _FULL)
            data.mocap_pos[self.scene.goal_mocap] = self._goal[int(w)]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=camera)
            frames.append(renderer.render().copy())
        return frames

    def close(self) -> None:
        for renderer, _ in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        if self._warp is None:
            self._rollout.close()
        self.proto.close()

    # --- internals -----------------------------------------------------------------------
    def _reset_world(self, w: int) -> None:
        # The single env's own reset, so that both start every episode identically.
        p = self.proto
        p.reset(seed=self.episode_seed(w, int(self._episode[w])))
        mujoco.mj_getState(self.model, p.data, self._state[w], _FULL)
        self._q_cmd[w] = p._q_cmd
        self._tcp_target[w] = p._tcp_target
        self._ee_pos[w], self._ee_quat[w] = p._ee_pos, p._ee_quat
        self._tcp_true_pos[w] = p._tcp_true_pos
        r = self.randomizer
        if r is not None:
            params = p.randomization_params
            r.apply(self.models[w], params)
            self._dr_rngs[w] = p._dr_rng
            self._joint_offset[w] = params["joint_offset_rad"]
            if p._obs_noise is not None:
                self._obs_noise[w] = p._obs_noise
            if self._delay is not None:
                self._delay.reset_world(w, int(params["action_latency_steps"][0]))
            for k, v in params.items():
                if k not in self.randomization_log:
                    self.randomization_log[k] = np.zeros((self.n_worlds, *v.shape), v.dtype)
                self.randomization_log[k][w] = v
        self._sensordata[w] = p.data.sensordata
        self._goal[w] = p.scene.goal(p.data)
        self._steps[w] = 0
        self._condition_steps[w] = 0

    def _update_ee_pose(self) -> None:
        q = self._state[:, self._qpos + self.scene.arm_qpos_adr]
        pos, rot = self.ik.forward(q)
        # As in the single env: the task scores the true TCP, the policy sees the pose the
        # (possibly miscalibrated) encoders imply.
        self._tcp_true_pos = pos
        if self.randomizer is not None and self.randomizer.has_joint_offset:
            pos, rot = self.ik.forward(q + self._joint_offset)
        quat = mat_to_quat(rot)
        # Same sign convention as the single env: the pointing-down side, x >= 0.
        self._ee_pos = pos
        self._ee_quat = np.where(quat[:, 1:2] < 0, -quat, quat)

    def _measure(self) -> Measurements:
        s, q = self.scene, self._state
        left, right = s.pad_contacts(self._sensordata)
        cube = self._qpos + s.cube_qpos_adr
        return Measurements(
            ee_pos=self._tcp_true_pos,
            cube_pos=q[:, cube : cube + 3],
            goal=self._goal,
            gripper_width_m=q[:, self._qpos + s.finger_qpos_adr].sum(axis=1),
            left_pad_touches_cube=left,
            right_pad_touches_cube=right,
        )

    def _obs(self) -> dict[str, torch.Tensor]:
        s, q = self.scene, self._state
        cube = self._qpos + s.cube_qpos_adr
        cube_quat = q[:, cube + 3 : cube + 7]
        width = q[:, self._qpos + s.finger_qpos_adr].sum(axis=1, keepdims=True)
        obs = {
            "joint_pos": q[:, self._qpos + s.arm_qpos_adr],
            "joint_vel": q[:, self._qvel + s.arm_dof_adr],
            "gripper_width": np.clip(width, 0.0, s.gripper_width_max_m),
            "ee_pos": self._ee_pos,
            "ee_quat": self._ee_quat,
            "object_pos": q[:, cube : cube + 3],
            "object_quat": np.where(cube_quat[:, :1] < 0, -cube_quat, cube_quat),
            "goal": self._goal,
        }
        if self.randomizer is not None:
            obs["joint_pos"] = obs["joint_pos"] + self._joint_offset
            if self.randomizer.has_obs_noise:
                self.randomizer.add_obs_noise(obs, self._obs_noise)
        return {
            k: torch.as_tensor(v.astype(np.float32), device=self.device) for k, v in obs.items()
        }
