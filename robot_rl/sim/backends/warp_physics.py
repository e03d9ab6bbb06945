"""The ``warp`` physics of :class:`~robot_rl.sim.batched.BatchedSim`: MuJoCo Warp's device
state (:class:`~robot_rl.sim.backends.warp.WarpBackend`), seen as float32 torch tensors.
``warp`` is imported only when one is built (an optional extra)."""

from __future__ import annotations

import mujoco
import numpy as np
import torch

from robot_rl.config.sim import SimConfig
from robot_rl.sim.backends.state_layout import state_offsets


def resolve_warp_device(sim: SimConfig) -> str:
    """The Warp device of ``sim``: its ``warp_device``, where ``auto`` is cuda when present,
    else Warp's CPU device."""
    if sim.warp_device != "auto":
        return sim.warp_device
    return "cuda" if torch.cuda.is_available() else "cpu"


class WarpPhysics:
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
        off = state_offsets(model)
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
