"""The ``cpu`` physics of :class:`~robot_rl.sim.batched.BatchedSim`: all worlds' states as
one float64 numpy array on the host, stepped by ``mujoco.rollout`` on a thread pool."""

from __future__ import annotations

import mujoco
import numpy as np
from mujoco import rollout

from robot_rl.sim.backends.state_layout import FULL_PHYSICS, state_offsets


class CpuPhysics:
    """All worlds' states as one float64 numpy array, stepped by ``mujoco.rollout``."""

    #: No buffers to overflow (MuJoCo on the CPU grows its own); see ``WarpPhysics``.
    overflow = None

    def __init__(self, model: mujoco.MjModel, n_worlds: int, n_threads: int) -> None:
        self.model = model
        self._datas = [mujoco.MjData(model) for _ in range(n_threads)]
        self._rollout = rollout.Rollout(nthread=n_threads)
        off = state_offsets(model)
        self._qpos = slice(off["mjSTATE_QPOS"], off["mjSTATE_QPOS"] + model.nq)
        self._qvel = slice(off["mjSTATE_QVEL"], off["mjSTATE_QVEL"] + model.nv)
        self.state = np.zeros((n_worlds, mujoco.mj_stateSize(model, FULL_PHYSICS)))
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
