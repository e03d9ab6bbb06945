"""Many worlds of one tabletop task stepped together: the batched simulator.

One :meth:`BatchedSim.step` is one control step of every world: the actions go through
the same pipeline as the single env (:func:`robot_rl.sim.env.arm_targets`: end-effector
deltas, differential IK, the command-filter hook), the joint targets ramp over the
physics substeps, and ``mujoco.rollout`` runs all worlds' substeps on a thread pool in
one call. Observations, rewards and success are computed for all worlds at once from the
returned states and sensor data, and come back as torch tensors.

Where the numbers live: the per-step code (actions, IK, targets, observations, rewards,
success) is written once against the array API (:mod:`robot_rl.arrays`) and runs in
the physics backend's own arrays: float64 numpy on the host for ``cpu`` (bit-identical to
the single env), float32 torch tensors on the Warp device for ``warp``, whose state is
read and written in place on the device (``warp.to_torch`` views), never copied to the
host while stepping. Resets run through the template env on the host and write the reset
worlds' states to the device. The two physics are :mod:`robot_rl.sim.backends.cpu` and
:mod:`robot_rl.sim.backends.warp_physics`; resets are written by
:mod:`robot_rl.sim.batched_resets`, observations computed by
:mod:`robot_rl.sim.batched_observations`.

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

from robot_rl.arrays import array_namespace, device_of, is_numpy_array, to_numpy
from robot_rl.config.randomization import RandomizationConfig
from robot_rl.config.sim import RobotConfig, SimConfig, TaskConfig
from robot_rl.safety.filter import RobotState
from robot_rl.sim.backends.cpu import CpuPhysics as _CpuPhysics
from robot_rl.sim.backends.state_layout import FULL_PHYSICS as _FULL
from robot_rl.sim.backends.state_layout import state_offsets as _state_offsets
from robot_rl.sim.backends.warp_physics import WarpPhysics as _WarpPhysics
from robot_rl.sim.backends.warp_physics import resolve_warp_device as _warp_device
from robot_rl.sim.batched_observations import BatchedObservations
from robot_rl.sim.batched_resets import BatchedResets
from robot_rl.sim.env import (
    CommandFilter,
    RobotEnv,
    arm_targets,
    make_safety_filter,
    safety_filter_version,
)
from robot_rl.sim.randomization import ActionDelay


class BatchedSim(BatchedResets, BatchedObservations):
    """``n_worlds`` worlds of one task, with per-world auto-reset.

    Args:
        n_worlds: number of worlds.
        task_config, robot_config, sim_config: as for :class:`RobotEnv`;
            ``sim_config.backend`` picks ``cpu`` or ``warp``.
        seed: batch seed (see the module docstring for the per-world episode seeds).
        n_threads: physics threads of the ``cpu`` backend (default: all cores).
        command_filter: the joint-command hook (:class:`robot_rl.sim.env.CommandFilter`),
            called once per control step with the measured state and the proposed targets
            of every world, as arrays of the backend (numpy float64 for ``cpu``, torch
            float32 on the device for ``warp``). Default: the safety filter of the
            robot's description at the control period, as ``sim_config`` asks; off only
            when the config turns it off. ``step`` returns what it did in
            ``info["clipped"]`` and ``info["safety"]`` (constraint -> bool per world).
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
        self.command_filter = (
            command_filter
            if command_filter is not None
            else make_safety_filter(p.scene, p.sim_config, self.control_dt_s)
        )
        self.safety_filter_version = safety_filter_version(self.command_filter)
        self.device = torch.device(device)
        if seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed}")
        self.seed = seed
        self._started = False
        self.backend = p.sim_config.backend
        r = self.randomizer = p.randomizer
        if self.backend == "warp":
            self._physics: _CpuPhysics | _WarpPhysics = _WarpPhysics(
                self.model, n_worlds, _warp_device(p.sim_config)
            )
        else:
            self._physics = _CpuPhysics(self.model, n_worlds, n_threads or os.cpu_count() or 1)
        # Every per-step array lives where the physics state does (see the module doc).
        like = self._physics.qpos
        self.xp = xp = array_namespace(like)
        self._like = like

        def zeros(*shape: int, dtype: Any = None) -> Any:
            return xp.zeros(shape, dtype=dtype or like.dtype, device=device_of(like))

        self._zeros = zeros
        self._q_cmd, self._tcp_target = zeros(n_worlds, 7), zeros(n_worlds, 3)
        self._ee_pos, self._ee_quat = zeros(n_worlds, 3), zeros(n_worlds, 4)
        self._tcp_true_pos = zeros(n_worlds, 3)
        # Mocap bodies are not part of the physics state the backends carry (they do not
        # move and the goal marker touches nothing), so each world's goal lives here.
        self._goal = zeros(n_worlds, 3)
        self._steps = zeros(n_worlds, dtype=xp.int64)
        self._condition_steps = zeros(n_worlds, dtype=xp.int64)
        self._episode = np.zeros(n_worlds, dtype=np.int64)
        self._explicit_seed = np.full(n_worlds, -1, dtype=np.int64)
        #: The seed of each world's current episode, set at its reset.
        self._seeds = np.zeros(n_worlds, dtype=np.int64)
        # What mj_resetData leaves (state vector and mocap poses), and where qpos and qvel
        # sit in a state vector: the start of every unrandomized reset.
        reset = mujoco.MjData(self.model)
        mujoco.mj_resetData(self.model, reset)
        self._reset_state = np.empty(mujoco.mj_stateSize(self.model, _FULL))
        mujoco.mj_getState(self.model, reset, self._reset_state, _FULL)
        self._reset_mocap = reset.mocap_pos.copy()
        off = _state_offsets(self.model)
        self._state_qpos = slice(off["mjSTATE_QPOS"], off["mjSTATE_QPOS"] + self.model.nq)
        self._state_qvel = slice(off["mjSTATE_QVEL"], off["mjSTATE_QVEL"] + self.model.nv)
        self._ramp = self._host_to_backend(p._ramp)
        self._renderers: dict[tuple, tuple[mujoco.Renderer, mujoco.MjData]] = {}
        self._film: tuple[list[int], dict[str, Any]] | None = None
        s = self.scene
        self._arm_q, self._arm_v = self._index(s.arm_qpos_adr), self._index(s.arm_dof_adr)
        self._finger_q, self._arm_act = self._index(s.finger_qpos_adr), self._index(s.arm_actuators)
        self._cube_q = self._index(s.cube_qpos_adr + np.arange(7))
        #: Each world's current randomization parameters: key -> (n_worlds, ...) array.
        self.randomization_log: dict[str, np.ndarray] = {}
        if r is not None:
            self.models = [copy.copy(self.model) for _ in range(n_worlds)]
            self._dr_rngs: list[np.random.Generator | None] = [None] * n_worlds
            self._joint_offset = zeros(n_worlds, 7)
            self._obs_noise = np.zeros((n_worlds, r.obs_noise_std.size))
            self._delay = (
                ActionDelay(n_worlds, r.max_latency_steps, p._delay.hold, like=like)
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
        return self._seeds.tolist()

    def reset(
        self, seed: int | None = None, *, episode_seeds: Sequence[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """Resets every world; returns the batched observation.

        With ``seed``, the batch seed becomes ``seed`` and every world starts its episode
        0; without, every world moves on to its next episode (so repeated resets never
        replay the same starts, as Gymnasium's ``reset(seed=None)`` requires).

        ``episode_seeds`` (one per world) overrides the seeds of the episodes this reset
        starts, e.g. ``seed + i`` in world ``i`` to play exactly the episodes of a
        sequential evaluation run (:func:`robot_rl.eval.runner.evaluate`); later
        auto-resets go back to the derived seeds.
        """
        if seed is not None:
            if int(seed) < 0:
                raise ValueError(f"seed: expected a non-negative int, got {seed}")
            self.seed, self._started = int(seed), False
        self._explicit_seed[:] = -1
        if episode_seeds is not None:
            seeds = np.asarray(episode_seeds, dtype=np.int64).reshape(-1)
            if len(seeds) != self.n_worlds or np.any(seeds < 0) or np.any(seeds >= 2**32):
                raise ValueError(
                    f"episode_seeds: expected {self.n_worlds} ints in [0, 2**32), got "
                    f"{list(episode_seeds)[:10]}"
                )
            self._explicit_seed[:] = seeds
        if self._started:
            self._episode += 1
        else:
            self._episode[:] = 0
        self._started = True
        self._reset_worlds(np.arange(self.n_worlds))
        if self.command_filter is not None:
            self.command_filter.reset(self._robot_state())
        return self._obs()

    def step(
        self, actions: np.ndarray | torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One control step of every world.

        Returns:
            obs (after auto-reset for worlds whose episode ended), reward, terminated,
            truncated, and info with ``is_success`` (bool tensor), ``final_obs`` (the
            observation each ended world reached, else its current one),
            ``episode_seed`` of the episode each world is now in, and while filming
            (:meth:`film`) ``frames``.
        """
        xp, n = self.xp, self.n_worlds
        a = self._actions(actions)
        r = self.randomizer
        if r is not None and self._delay is not None:
            a = self._delay.push(a)
        q_target, self._tcp_target = arm_targets(
            self.task_config, self.ik, self._q_cmd, self._tcp_target, self._ee_pos, a[:, :-1]
        )
        safety = None
        if self.command_filter is not None:
            q_target, safety = self.command_filter.filter(self._robot_state(), q_target)
        arm = self._q_cmd[:, None] + self._ramp[None, :, None] * (q_target - self._q_cmd)[:, None]
        if r is not None:
            arm = arm - self._joint_offset[:, None]
            if r.has_jitter:
                dt = r.nominal["timestep"]
                for w, model in enumerate(self.models):
                    model.opt.timestep = dt * r.timestep_scale(self._dr_rngs[w])
                self._physics.set_models(np.arange(n), self.models, ("opt.timestep",))
        control = self._zeros(n, self.n_substeps, self.model.nu)
        control[:, :, self._arm_act] = arm
        gripper = (a[:, -1] + 1.0) / 2.0 * (self.scene.gripper_width_max_m / 2)
        control[:, :, self.scene.gripper_actuator] = gripper[:, None]
        self._physics.step(self.models, control)
        self._q_cmd = q_target
        self._steps += 1
        self._update_ee_pose()
        if r is not None and r.has_obs_noise:
            for w in range(n):
                self._obs_noise[w] = r.obs_noise(self._dr_rngs[w])

        m = self._measure()
        cond = self.task.condition(m)
        self._condition_steps = xp.where(cond, self._condition_steps + 1, 0)
        success = self._condition_steps >= self.success_steps_needed
        if self.task_config.reward_type == "dense":
            reward = self.task.dense_reward(m)
        else:
            reward = xp.astype(success, self._like.dtype)
        terminated = success & self.task_config.terminate_on_success
        truncated = ~terminated & (self._steps >= self.horizon_steps)
        final_obs = self._obs()
        # Filmed worlds are drawn before any auto-reset, so an episode's last frame is
        # the state it ended in.
        frames = self.render(self._film[0], **self._film[1]) if self._film else None
        done = self._read_flags(terminated | truncated)
        if done.size:
            self._episode[done] += 1
            self._explicit_seed[done] = -1
            self._reset_worlds(done)
            if self.command_filter is not None:
                self.command_filter.reset(self._robot_state(), worlds=done)
        obs = self._obs() if done.size else final_obs
        info: dict[str, Any] = {
            "is_success": self._out(success),
            "final_obs": final_obs,
            "episode_seed": self._seeds_out.clone(),
        }
        if frames is not None:
            info["frames"] = frames
        if safety is not None:
            info["clipped"] = self._out(safety.clipped)
            info["safety"] = {k: self._out(v) for k, v in safety.acted.items()}
        if r is not None:
            info["randomization"] = {
                "worlds": done,
                **{k: v[done].copy() for k, v in self.randomization_log.items()},
            }
        return (
            obs,
            self._out(reward, torch.float32),
            self._out(terminated),
            self._out(truncated),
            info,
        )

    def world_state(self, world: int) -> np.ndarray:
        """The full-physics state vector of one world (a float64 copy)."""
        return self._physics.world_state(world)

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
        goals = to_numpy(self._goal)
        for w in worlds:
            if not 0 <= int(w) < self.n_worlds:
                raise IndexError(f"world {w} out of range [0, {self.n_worlds})")
            model = self.models[int(w)]
            key = (id(model), camera, width, height)
            if key not in self._renderers:
                self._renderers[key] = (mujoco.Renderer(model, height, width), mujoco.MjData(model))
            renderer, data = self._renderers[key]
            mujoco.mj_setState(model, data, self.world_state(int(w)), _FULL)
            data.mocap_pos[self.scene.goal_mocap] = goals[int(w)]
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=camera)
            frames.append(renderer.render().copy())
        return frames

    def film(
        self,
        worlds: Sequence[int] | None,
        *,
        camera: str = "front",
        width: int = 320,
        height: int = 240,
    ) -> None:
        """From the next step on, ``step`` renders ``worlds`` (as :meth:`render` does)
        after the physics and before any auto-reset, into ``info["frames"]`` (one frame
        per filmed world, in order); None or empty stops filming."""
        if not worlds:
            self._film = None
            return
        worlds = [int(w) for w in worlds]
        for w in worlds:
            if not 0 <= w < self.n_worlds:
                raise IndexError(f"world {w} out of range [0, {self.n_worlds})")
        self._film = (worlds, {"camera": camera, "width": width, "height": height})

    def close(self) -> None:
        for renderer, _ in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self._physics.close()
        self.proto.close()

    # --- internals -----------------------------------------------------------------------
    def _current_seed(self, w: int) -> int:
        explicit = int(self._explicit_seed[w])
        return explicit if explicit >= 0 else self.episode_seed(w, int(self._episode[w]))

    def _index(self, idx: Any) -> Any:
        """Integer indices as an index of the backend's arrays."""
        idx = np.asarray(idx, dtype=np.int64)
        if is_numpy_array(self._like):
            return idx
        return torch.as_tensor(idx, device=self._like.device)

    def _host_to_backend(self, x: np.ndarray) -> Any:
        """A float64 host array as an array of the backend (dtype and device)."""
        if is_numpy_array(self._like):
            return np.asarray(x, dtype=np.float64)
        return torch.as_tensor(np.asarray(x), dtype=self._like.dtype, device=self._like.device)

    def _actions(self, actions: np.ndarray | torch.Tensor) -> Any:
        """Checked, clipped actions as a backend array."""
        expected = (self.n_worlds, *self.action_space.shape)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions have shape {tuple(actions.shape)}, expected {expected}")
        if is_numpy_array(self._like):
            a = np.asarray(
                actions.detach().cpu().numpy() if isinstance(actions, torch.Tensor) else actions,
                dtype=np.float64,
            )
        else:
            a = torch.as_tensor(actions, dtype=self._like.dtype, device=self._like.device)
        xp = self.xp
        finite = xp.all(xp.isfinite(a), axis=1)
        if not bool(xp.all(finite)):
            bad = np.flatnonzero(~to_numpy(finite))
            raise ValueError(f"actions of worlds {bad.tolist()[:10]} contain NaN or inf")
        return xp.clip(a, min=-1.0, max=1.0)

    def _out(self, x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A backend array as a torch tensor on :attr:`device`."""
        return torch.as_tensor(x, dtype=dtype, device=self.device)

    def _reset_worlds(self, worlds: np.ndarray) -> None:
        """Resets ``worlds`` as the single env resets with the same seeds and writes them
        into the backend at once."""
        for w in worlds:
            self._seeds[w] = self._current_seed(int(w))
        # What step() returns as info["episode_seed"]: copied to the device here, at a
        # reset, rather than on every step (a copy from the host waits for the device).
        self._seeds_out = torch.as_tensor(self._seeds, device=self.device)
        if self.randomizer is None:
            self._reset_worlds_fast(worlds)
        else:
            self._reset_worlds_through_proto(worlds)
        idx = self._index(worlds)
        self._steps[idx] = 0
        self._condition_steps[idx] = 0

    def _robot_state(self) -> RobotState:
        """Every world's sensor readings, in the encoders' frame, as the single env's
        :meth:`RobotEnv._robot_state`: joint positions, velocities and servo torques."""
        q = self._physics.qpos[:, self._arm_q]
        dq = self._physics.qvel[:, self._arm_v]
        ctrl = self._q_cmd
        if self.randomizer is not None:
            ctrl = ctrl - self._joint_offset
        tau = self.scene.arm_torque(q, dq, ctrl)
        if self.randomizer is not None:
            q = q + self._joint_offset
        return RobotState(q, dq, tau)

    def _read_flags(self, ended: Any) -> np.ndarray:
        """The one host read of a step, which waits for the device: the worlds whose
        episode ``ended``, returned, with the health checks of the step read alongside
        (raised here: MuJoCo Warp's buffer overflows, then non-finite physics)."""
        xp = self.xp
        flags = [ended, ~xp.all(xp.isfinite(self._physics.qpos), axis=1)]
        overflow = self._physics.overflow
        if overflow is not None:
            flags.append(overflow != 0)
        host = to_numpy(xp.stack(flags))
        if overflow is not None and host[2].any():
            self._physics.backend.check_overflow(to_numpy(overflow))
        if host[1].any():
            bad = np.flatnonzero(host[1])
            raise RuntimeError(f"physics diverged in worlds {bad.tolist()[:10]}")
        return np.flatnonzero(host[0])
