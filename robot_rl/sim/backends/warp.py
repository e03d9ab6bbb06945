"""MuJoCo Warp backend: all worlds' physics on a Warp device (a GPU, or Warp's CPU device).

Same contract as the CPU path of :class:`robot_rl.sim.batched.BatchedSim`, which calls
``mujoco.rollout`` once per control step with ``nstep`` = the substeps, per-substep
controls and a zero initial warm start, and keeps the last substep's state and sensor
data. Here the worlds' state stays on the device between calls:

* :meth:`WarpBackend.step` takes per-substep controls ``(N, S, nu)`` and returns the final
  full-physics state ``(N, nstate)`` (float64) and the sensor data of the last substep
  ``(N, nsensordata)``, the same quantities as ``states[:, -1]`` / ``sensordata[:, -1]``
  of ``mujoco.rollout`` (sensors are computed at the start of each ``mj_step``, before
  integration, in both).
* :meth:`WarpBackend.set_state` writes full-physics states into chosen worlds (resets);
  :meth:`WarpBackend.get_state` reads all of them.

State vectors use MuJoCo's ``mjSTATE_FULLPHYSICS`` layout (time, qpos, qvel, act, history,
plugin state; see ``mujoco.mj_stateSize``). Mocap poses are not part of it and keep the
model's values on the device (the goal marker touches nothing).

MuJoCo Warp computes in float32: trajectories agree with float64 ``mujoco.rollout`` to
about 1e-4 rad over seconds without contacts, and diverge with contacts as any two
floating-point implementations do.

On CUDA, one control step (warm-start reset + S x (set ctrl, step)) is recorded once as a
CUDA graph and replayed; on the CPU device the kernels are launched directly.
"""

from __future__ import annotations

import os

import mujoco
import mujoco_warp as mjw
import numpy as np
import warp as wp

# Warp announces every kernel module it loads; a user of the simulator needs none of it.
if os.environ.get("ROBOT_RL_DEBUG") != "1":
    wp.config.log_level = wp.LOG_WARNING

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def full_state_offsets(model: mujoco.MjModel) -> dict[str, tuple[int, int]]:
    """``mjSTATE_*`` component name -> (start, size) within a full-physics state vector."""
    offsets, at = {}, 0
    bits = sorted(
        (int(v), name)
        for name, v in mujoco.mjtState.__members__.items()
        if bin(int(v)).count("1") == 1 and int(_FULL) & int(v)
    )
    for bit, name in bits:
        size = mujoco.mj_stateSize(model, bit)
        offsets[name] = (at, size)
        at += size
    return offsets


@wp.kernel
def _copy_substep_ctrl(
    ctrl_seq: wp.array3d(dtype=float), substep: int, ctrl: wp.array2d(dtype=float)
):
    world, i = wp.tid()
    ctrl[world, i] = ctrl_seq[world, substep, i]


class WarpBackend:
    """``n_worlds`` worlds of one ``MjModel`` stepped by MuJoCo Warp on ``device``.

    Args:
        model: the MuJoCo model (all worlds share it; per-world parameters would go through
            ``mujoco_warp.put_model(..., batch_sizes=...)``, not done here).
        n_worlds: number of worlds.
        device: Warp device, ``"cpu"`` or ``"cuda"``/``"cuda:0"``.
        nconmax, njmax: per-world contact and constraint-row capacities (defaults: MuJoCo
            Warp's own heuristics); raise them if :meth:`step` reports an overflow.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        n_worlds: int,
        device: str = "cpu",
        *,
        nconmax: int | None = None,
        njmax: int | None = None,
    ) -> None:
        if n_worlds < 1:
            raise ValueError(f"n_worlds: expected >= 1, got {n_worlds}")
        wp.init()
        self.model = model
        self.n_worlds = n_worlds
        self.device = wp.get_device(device)
        off = full_state_offsets(model)
        self.n_state = mujoco.mj_stateSize(model, _FULL)
        for name in ("mjSTATE_HISTORY", "mjSTATE_PLUGIN"):
            if name in off and off[name][1]:
                raise NotImplementedError(f"{name} state is not carried by WarpBackend")
        self._time = off["mjSTATE_TIME"][0]
        self._qpos = slice(off["mjSTATE_QPOS"][0], sum(off["mjSTATE_QPOS"]))
        self._qvel = slice(off["mjSTATE_QVEL"][0], sum(off["mjSTATE_QVEL"]))
        self._act = slice(off["mjSTATE_ACT"][0], sum(off["mjSTATE_ACT"]))
        with wp.ScopedDevice(self.device):
            self.m = mjw.put_model(model)
            data = mujoco.MjData(model)
            mujoco.mj_forward(model, data)
            self.d = mjw.put_data(model, data, nworld=n_worlds, nconmax=nconmax, njmax=njmax)
            self._ctrl_seq: wp.array | None = None
        self._graph = None
        self._graph_substeps = -1

    # --- API -----------------------------------------------------------------------------
    def set_state(self, worlds: np.ndarray, states: np.ndarray) -> None:
        """Writes full-physics ``states`` (k, nstate) into ``worlds`` (k indices) only."""
        worlds = np.asarray(worlds, dtype=np.int64).reshape(-1)
        states = np.asarray(states, dtype=np.float64).reshape(len(worlds), self.n_state)
        d = self.d
        for arr, cols in (
            (d.qpos, self._qpos),
            (d.qvel, self._qvel),
            (d.act, self._act),
        ):
            if cols.stop > cols.start:
                host = arr.numpy()
                host[worlds] = states[:, cols]
                arr.assign(host)
        t = d.time.numpy()
        t[worlds] = states[:, self._time]
        d.time.assign(t)
        # Like mj_setState: the rest of Data (contacts, warm start, ...) is recomputed.
        qacc = d.qacc_warmstart.numpy()
        qacc[worlds] = 0.0
        d.qacc_warmstart.assign(qacc)

    def get_state(self) -> np.ndarray:
        """All worlds' full-physics states, (N, nstate) float64."""
        d = self.d
        out = np.zeros((self.n_worlds, self.n_state))
        out[:, self._time] = d.time.numpy()
        out[:, self._qpos] = d.qpos.numpy()
        out[:, self._qvel] = d.qvel.numpy()
        if self._act.stop > self._act.start:
            out[:, self._act] = d.act.numpy()
        return out

    def step(self, state: np.ndarray | None, control: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One control step of every world: ``S`` physics substeps with ``control[:, s]``.

        Args:
            state: (N, nstate) states to start from, or None to continue from the device.
            control: (N, S, nu) per-substep actuator controls.

        Returns:
            The final states (N, nstate) float64 and last-substep sensor data
            (N, nsensordata) float64.
        """
        control = np.asarray(control, dtype=np.float32)
        n, s, nu = control.shape
        if n != self.n_worlds or nu != self.model.nu:
            raise ValueError(
                f"control has shape {control.shape}, expected ({self.n_worlds}, S, {self.model.nu})"
            )
        if state is not None:
            self.set_state(np.arange(self.n_worlds), state)
        if self._ctrl_seq is None or self._ctrl_seq.shape[1] != s:
            self._ctrl_seq = wp.zeros((n, s, nu), dtype=float, device=self.device)
            self._graph = None
        self._ctrl_seq.assign(control)
        if self.device.is_cuda:
            if self._graph is None:
                with wp.ScopedCapture(device=self.device) as capture:
                    self._substeps(s)
                self._graph = capture.graph
            wp.capture_launch(self._graph)
        else:
            self._substeps(s)
        self._check_overflow()
        return self.get_state(), self.d.sensordata.numpy().astype(np.float64)

    # --- internals -----------------------------------------------------------------------
    def _substeps(self, n_substeps: int) -> None:
        # As BatchedSim's CPU path (initial_warmstart zeros): every control step starts
        # the constraint solver from the state alone.
        self.d.qacc_warmstart.zero_()
        for k in range(n_substeps):
            wp.launch(
                _copy_substep_ctrl,
                dim=(self.n_worlds, self.model.nu),
                inputs=[self._ctrl_seq, k],
                outputs=[self.d.ctrl],
                device=self.device,
            )
            mjw.step(self.m, self.d)

    def _check_overflow(self) -> None:
        flags = self.d.overflow.numpy()
        if np.any(flags):
            bad = np.flatnonzero(flags)
            kinds = int(np.bitwise_or.reduce(flags[bad]))
            raise RuntimeError(
                f"MuJoCo Warp buffer overflow (OverflowType bits {kinds:#x}) in worlds "
                f"{bad.tolist()[:10]}: raise nconmax/njmax"
            )
