"""Many worlds of one tabletop task stepped together: the batched simulator, CPU backend.

One :meth:`BatchedSim.step` is one control step of every world: the actions go through
the same pipeline as the single env (:func:`robot_rl.sim.env.arm_targets`: end-effector
deltas, differential IK, the command-filter hook), the joint targets ramp over the
physics substeps, and ``mujoco.rollout`` runs all worlds' substeps on a thread pool in
one call. Observations, rewards and success are computed for all worlds at once from the
returned states and sensor data, and come back as torch tensors.

Where the numbers live: the per-step code (actions, IK, targets, observations, rewards,
success) is written once against the array API (:mod:`robot_rl.sim.arrays`) and runs in
the physics backend's own arrays: float64 numpy on the host for ``cpu`` (bit-identical to
the single env), float32 torch tensors on the Warp device for ``warp``, whose state is
read and written in place on the device (``warp.to_torch`` views), never copied to the
host while stepping. Resets run through the template env on the host and write the reset
worlds' states to the device.

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
from gymnasium.utils import seeding
from mujoco import rollout

from robot_rl.config.randomization import RandomizationConfig
from robot_rl.config.sim import RobotConfig, SimConfig, TaskConfig
from robot_rl.sim.arrays import array_namespace, device_of, is_numpy_array
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


class _CpuPhysics:
    """All worlds' states as one float64 numpy array, stepped by ``mujoco.rollout``."""

    #: No buffers to overflow (MuJoCo on the CPU grows its own); see ``_WarpPhysics``.
    overflow = None

    def __init__(self, model: mujoco.MjModel, n_worlds: int, n_threads: int) -> None:
        self.model = model
        self._datas = [mujoco.MjData(model) for _ in range(n_threads)]
        self._rollout = rollout.Rollout(nthread=n_threads)
        off = _state_offsets(model)
        self._qpos = slice(off["mjSTATE_QPOS"], off["mjSTATE_QPOS"] + model.nq)
        self._qvel = slice(off["mjSTATE_QVEL"], off["mjSTATE_QVEL"] + model.nv)
        self.state = np.zeros((n_worlds, mujoco.mj_stateSize(model, _FULL)))
        self.sensordata = np.zeros((n_worlds, model.nsensordata))
        self._zero_warmstart = np.zeros((n_worlds, model.nv))

    @property
    def qpos(self) -> np.ndarray:
        return self.state[:, self._qpos]

    @property
    def qvel(self) -> np.ndarray:
        return self.state[:, self._qvel]

    def step(self, models: list[mujoco.MjModel], control: np.ndarray) -> None:
        states, sensordata = self._rollout.rollout(
            models,
            self._datas,
            self.state,
            control,
            nstep=control.shape[1],
            initial_warmstart=self._zero_warmstart,
        )
        self.state = states[:, -1].copy()
        self.sensordata = sensordata[:, -1].copy()

    def set_worlds(self, worlds: np.ndarray, states: np.ndarray) -> None:
        self.state[worlds] = states

    def set_models(
        self, worlds: np.ndarray, models: list[mujoco.MjModel], fields: tuple[str, ...] | None
    ) -> None:
        """Nothing to do: ``mujoco.rollout`` reads each world's ``MjModel`` directly."""

    def world_state(self, world: int) -> np.ndarray:
        return self.state[world].copy()

    def close(self) -> None:
        self._rollout.close()


class _WarpPhysics:
    """MuJoCo Warp's device state, seen as float32 torch tensors (zero-copy views): the
    per-step code reads and resets worlds in place on the device."""

    def __init__(self, model: mujoco.MjModel, n_worlds: int, device: str) -> None:
        import warp as wp  # optional extra

        from robot_rl.sim.backends.warp import WarpBackend

        self.backend = b = WarpBackend(model, n_worlds, device=device)
        self.qpos, self.qvel = wp.to_torch(b.d.qpos), wp.to_torch(b.d.qvel)
        self.sensordata = wp.to_torch(b.d.sensordata)
        self._time = wp.to_torch(b.d.time)
        self._act = wp.to_torch(b.d.act) if model.na else None
        self._warmstart = wp.to_torch(b.d.qacc_warmstart)
        #: Per-world overflow bits of the last step (int32), read with the step's one sync.
        self.overflow = wp.to_torch(b.d.overflow)
        off = _state_offsets(model)
        self._cols = {
            "qpos": slice(off["mjSTATE_QPOS"], off["mjSTATE_QPOS"] + model.nq),
            "qvel": slice(off["mjSTATE_QVEL"], off["mjSTATE_QVEL"] + model.nv),
            "act": slice(off["mjSTATE_ACT"], off["mjSTATE_ACT"] + model.na),
        }
        self._time_col = off["mjSTATE_TIME"]

    def step(self, models: list[mujoco.MjModel], control: torch.Tensor) -> None:
        self.backend.step_device(control, check_overflow=False)  # see BatchedSim.step

    def set_models(
        self, worlds: np.ndarray, models: list[mujoco.MjModel], fields: tuple[str, ...] | None
    ) -> None:
        """Per-world model parameters (domain randomization) onto the device."""
        self.backend.set_world_model(worlds, [models[w] for w in worlds], fields=fields)

    def set_worlds(self, worlds: np.ndarray, states: np.ndarray) -> None:
        """Writes full-physics states into ``worlds`` on the device (as mj_setState: the
        rest of the data, warm start included, is recomputed from them)."""
        idx = torch.as_tensor(worlds, device=self.qpos.device)

        def put(target: torch.Tensor, values: np.ndarray) -> None:
            target[idx] = torch.as_tensor(values, dtype=target.dtype, device=target.device)

        put(self.qpos, states[:, self._cols["qpos"]])
        put(self.qvel, states[:, self._cols["qvel"]])
        if self._act is not None:
            put(self._act, states[:, self._cols["act"]])
        put(self._time, states[:, self._time_col])
        self._warmstart[idx] = 0.0

    def world_state(self, world: int) -> np.ndarray:
        return self.backend.get_state()[world]

    def close(self) -> None:
        pass


class BatchedSim:
    """``n_worlds`` worlds of one task, with per-world auto-reset.

    Args:
        n_worlds: number of worlds.
        task_config, robot_config, sim_config: as for :class:`RobotEnv`;
            ``sim_config.backend`` picks ``cpu`` or ``warp``.
        seed: batch seed (see the module docstring for the per-world episode seeds).
        n_threads: physics threads of the ``cpu`` backend (default: all cores).
        command_filter: the safety filter's hook, called once per control step with
            batched (measured joints, proposed targets, control period), as arrays of the
            backend (numpy float64 for ``cpu``, torch float32 on the device for ``warp``).
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
        xp, n = self.xp, self.n_worlds
        a = self._actions(actions)
        r = self.randomizer
        if r is not None and self._delay is not None:
            a = self._delay.push(a)
        q_meas = self._physics.qpos[:, self._arm_q]
        if r is not None:
            q_meas = q_meas + self._joint_offset
        q_target, self._tcp_target = arm_targets(
            self.task_config, self.ik, self._q_cmd, self._tcp_target, self._ee_pos, a[:, :-1]
        )
        if self.command_filter is not None:
            q_target = self.command_filter(q_meas, q_target, self.control_dt_s)
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
        done = self._read_flags(terminated | truncated)
        if done.size:
            self._episode[done] += 1
            self._explicit_seed[done] = -1
            self._reset_worlds(done)
        obs = self._obs() if done.size else final_obs
        info: dict[str, Any] = {
            "is_success": self._out(success),
            "final_obs": final_obs,
            "episode_seed": self._seeds_out.clone(),
        }
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
        goals = _to_numpy(self._goal)
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
            bad = np.flatnonzero(~_to_numpy(finite))
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

    def _reset_worlds_fast(self, worlds: np.ndarray) -> None:
        """Without randomization a reset is a few seeded draws into a copy of the reset
        state (:meth:`RobotEnv.reset`'s draws, in its order, written to a state row instead
        of an ``MjData``), then one batched forward-kinematics call for all the worlds:
        no ``mj_forward`` per world, which the state does not depend on."""
        p, s, k = self.proto, self.scene, len(worlds)
        qpos, qvel = self._state_qpos, self._state_qvel
        states = np.tile(self._reset_state, (k, 1))
        goals, q0s = np.empty((k, 3)), np.empty((k, 7))
        noise = self.task_config.init_joint_noise_rad
        for i, w in enumerate(worlds):
            rng, _ = seeding.np_random(int(self._seeds[w]))
            q0 = p.start_q + rng.uniform(-noise, noise, size=p.start_q.shape)
            q0s[i] = np.clip(q0, self.ik.q_lo, self.ik.q_hi)
            row = _StateRow(states[i, qpos], states[i, qvel], self._reset_mocap.copy())
            row.qpos[s.arm_qpos_adr] = q0s[i]
            row.qpos[s.finger_qpos_adr] = s.gripper_width_max_m / 2
            self.task.reset(s, row, rng)
            goals[i] = row.mocap_pos[s.goal_mocap]
        pos, rot = self.ik.forward(q0s)
        quat = mat_to_quat(rot)
        self._physics.set_worlds(worlds, states)
        idx = self._index(worlds)
        for target, values in ((self._q_cmd, q0s), (self._tcp_target, pos), (self._ee_pos, pos),
                               (self._ee_quat, np.where(quat[:, 1:2] < 0, -quat, quat)),
                               (self._tcp_true_pos, pos), (self._goal, goals)):  # fmt: skip
            target[idx] = self._host_to_backend(values)

    def _reset_worlds_through_proto(self, worlds: np.ndarray) -> None:
        """Resets ``worlds`` through the template env (the single env's own reset: with
        randomization it also samples and applies each world's parameters)."""
        p, r, k = self.proto, self.randomizer, len(worlds)
        states = np.empty((k, mujoco.mj_stateSize(self.model, _FULL)))
        host = {
            name: np.empty((k, n))
            for name, n in (("q_cmd", 7), ("tcp", 3), ("ee_pos", 3), ("ee_quat", 4),
                            ("tcp_true", 3), ("goal", 3), ("offset", 7))
        }  # fmt: skip
        for i, w in enumerate(worlds):
            p.reset(seed=int(self._seeds[w]))
            mujoco.mj_getState(self.model, p.data, states[i], _FULL)
            host["q_cmd"][i], host["tcp"][i] = p._q_cmd, p._tcp_target
            host["ee_pos"][i], host["ee_quat"][i] = p._ee_pos, p._ee_quat
            host["tcp_true"][i], host["goal"][i] = p._tcp_true_pos, p.scene.goal(p.data)
            if r is not None:
                params = p.randomization_params
                r.apply(self.models[w], params)
                self._dr_rngs[w] = p._dr_rng
                host["offset"][i] = params["joint_offset_rad"]
                if p._obs_noise is not None:
                    self._obs_noise[w] = p._obs_noise
                if self._delay is not None:
                    self._delay.reset_world(int(w), int(params["action_latency_steps"][0]))
                for key, v in params.items():
                    if key not in self.randomization_log:
                        self.randomization_log[key] = np.zeros((self.n_worlds, *v.shape), v.dtype)
                    self.randomization_log[key][w] = v
        self._physics.set_worlds(worlds, states)
        if r is not None:
            self._physics.set_models(worlds, self.models, None)
        idx = self._index(worlds)
        for name, target in (("q_cmd", self._q_cmd), ("tcp", self._tcp_target),
                             ("ee_pos", self._ee_pos), ("ee_quat", self._ee_quat),
                             ("tcp_true", self._tcp_true_pos), ("goal", self._goal)):  # fmt: skip
            target[idx] = self._host_to_backend(host[name])
        if r is not None:
            self._joint_offset[idx] = self._host_to_backend(host["offset"])

    def _update_ee_pose(self) -> None:
        xp = self.xp
        q = self._physics.qpos[:, self._arm_q]  # checked finite in _read_flags
        pos, rot = self.ik.forward(q)
        # As in the single env: the task scores the true TCP, the policy sees the pose the
        # (possibly miscalibrated) encoders imply.
        self._tcp_true_pos = pos
        if self.randomizer is not None and self.randomizer.has_joint_offset:
            pos, rot = self.ik.forward(q + self._joint_offset)
        quat = mat_to_quat(rot)
        # Same sign convention as the single env: the pointing-down side, x >= 0.
        self._ee_pos = pos
        self._ee_quat = xp.where(quat[:, 1:2] < 0, -quat, quat)

    def _read_flags(self, ended: Any) -> np.ndarray:
        """The one host read of a step, which waits for the device: the worlds whose
        episode ``ended``, returned, with the health checks of the step read alongside
        (raised here: MuJoCo Warp's buffer overflows, then non-finite physics)."""
        xp = self.xp
        flags = [ended, ~xp.all(xp.isfinite(self._physics.qpos), axis=1)]
        overflow = self._physics.overflow
        if overflow is not None:
            flags.append(overflow != 0)
        host = _to_numpy(xp.stack(flags))
        if overflow is not None and host[2].any():
            self._physics.backend.check_overflow(_to_numpy(overflow))
        if host[1].any():
            bad = np.flatnonzero(host[1])
            raise RuntimeError(f"physics diverged in worlds {bad.tolist()[:10]}")
        return np.flatnonzero(host[0])

    def _measure(self) -> Measurements:
        qpos = self._physics.qpos
        left, right = self.scene.pad_contacts(self._physics.sensordata)
        return Measurements(
            ee_pos=self._tcp_true_pos,
            cube_pos=qpos[:, self._cube_q[:3]],
            goal=self._goal,
            gripper_width_m=self.xp.sum(qpos[:, self._finger_q], axis=1),
            left_pad_touches_cube=left,
            right_pad_touches_cube=right,
        )

    def _obs(self) -> dict[str, torch.Tensor]:
        xp, s = self.xp, self.scene
        qpos, qvel = self._physics.qpos, self._physics.qvel
        cube_quat = qpos[:, self._cube_q[3:]]
        width = xp.sum(qpos[:, self._finger_q], axis=1, keepdims=True)
        obs = {
            "joint_pos": qpos[:, self._arm_q],
            "joint_vel": qvel[:, self._arm_v],
            "gripper_width": xp.clip(width, min=0.0, max=s.gripper_width_max_m),
            "ee_pos": self._ee_pos,
            "ee_quat": self._ee_quat,
            "object_pos": qpos[:, self._cube_q[:3]],
            "object_quat": xp.where(cube_quat[:, :1] < 0, -cube_quat, cube_quat),
            "goal": self._goal,
        }
        if self.randomizer is not None:
            obs["joint_pos"] = obs["joint_pos"] + self._joint_offset
            if self.randomizer.has_obs_noise:
                noise = self._host_to_backend(self._obs_noise)
                self.randomizer.add_obs_noise(obs, noise)
        return {k: self._out(xp.astype(v, xp.float32)) for k, v in obs.items()}


class _StateRow:
    """What a task's ``reset`` writes to (``qpos``, ``qvel``, ``mocap_pos``), as views of
    one world's state row: the part of ``MjData`` the tasks touch."""

    def __init__(self, qpos: np.ndarray, qvel: np.ndarray, mocap_pos: np.ndarray) -> None:
        self.qpos, self.qvel, self.mocap_pos = qpos, qvel, mocap_pos


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
