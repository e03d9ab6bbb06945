"""How the batched simulator writes reset worlds into its backend: fast, without
randomization (seeded draws into copies of the reset state, then one batched
forward-kinematics call), or through the template env (the single env's own reset, which
also samples and applies each world's randomization).

:class:`BatchedResets` is the part of :class:`~robot_rl.sim.batched.BatchedSim` that does
it; which worlds reset, and with which seeds, is decided there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np
from gymnasium.utils import seeding

from robot_rl.config.sim import TaskConfig
from robot_rl.kinematics import mat_to_quat
from robot_rl.sim.backends.cpu import CpuPhysics
from robot_rl.sim.backends.state_layout import FULL_PHYSICS
from robot_rl.sim.backends.warp_physics import WarpPhysics
from robot_rl.sim.env import RobotEnv
from robot_rl.sim.ik import DifferentialIK
from robot_rl.sim.randomization import ActionDelay, DomainRandomizer
from robot_rl.sim.scene import TabletopScene
from robot_rl.sim.tasks.base import Task


class BatchedResets:
    """Writing reset worlds (part of :class:`~robot_rl.sim.batched.BatchedSim`, which sets
    this state up)."""

    proto: RobotEnv
    scene: TabletopScene
    task: Task
    ik: DifferentialIK
    model: mujoco.MjModel
    models: list[mujoco.MjModel]
    n_worlds: int
    task_config: TaskConfig
    randomizer: DomainRandomizer | None
    randomization_log: dict[str, np.ndarray]
    _physics: CpuPhysics | WarpPhysics
    _seeds: np.ndarray
    _reset_state: np.ndarray
    _reset_mocap: np.ndarray
    _state_qpos: slice
    _state_qvel: slice
    # Per-world arrays of the backend (numpy on the host, or torch on the device).
    _q_cmd: Any
    _tcp_target: Any
    _ee_pos: Any
    _ee_quat: Any
    _tcp_true_pos: Any
    _goal: Any
    _joint_offset: Any
    _dr_rngs: list[np.random.Generator | None]
    _obs_noise: np.ndarray
    _delay: ActionDelay | None
    _index: Callable[[Any], Any]
    _host_to_backend: Callable[[np.ndarray], Any]

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
        states = np.empty((k, mujoco.mj_stateSize(self.model, FULL_PHYSICS)))
        host = {
            name: np.empty((k, n))
            for name, n in (("q_cmd", 7), ("tcp", 3), ("ee_pos", 3), ("ee_quat", 4),
                            ("tcp_true", 3), ("goal", 3), ("offset", 7))
        }  # fmt: skip
        for i, w in enumerate(worlds):
            p.reset(seed=int(self._seeds[w]))
            mujoco.mj_getState(self.model, p.data, states[i], FULL_PHYSICS)
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


class _StateRow:
    """What a task's ``reset`` writes to (``qpos``, ``qvel``, ``mocap_pos``), as views of
    one world's state row: the part of ``MjData`` the tasks touch."""

    def __init__(self, qpos: np.ndarray, qvel: np.ndarray, mocap_pos: np.ndarray) -> None:
        self.qpos, self.qvel, self.mocap_pos = qpos, qvel, mocap_pos
