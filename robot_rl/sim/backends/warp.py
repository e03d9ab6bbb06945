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
* :meth:`WarpBackend.set_world_model` gives chosen worlds their own values of the model
  parameters domain randomization changes (:data:`WORLD_MODEL_FIELDS`), copied from a
  per-world ``MjModel`` as :class:`~robot_rl.sim.randomization.DomainRandomizer` leaves it.

State vectors use MuJoCo's ``mjSTATE_FULLPHYSICS`` layout (time, qpos, qvel, act, history,
plugin state; see ``mujoco.mj_stateSize``). Mocap poses are not part of it and keep the
model's values on the device (the goal marker touches nothing).

MuJoCo Warp computes in float32: trajectories agree with float64 ``mujoco.rollout`` to
about 1e-4 rad over seconds without contacts, and diverge with contacts as any two
floating-point implementations do.

On CUDA, one control step (warm-start reset + S x (set ctrl, step)) is recorded once as a
CUDA graph and replayed; on the CPU device the kernels are launched directly.

Per-world model parameters use MuJoCo Warp's batched model fields: every field listed in
:data:`WORLD_MODEL_FIELDS` is declared with a leading world axis, which ``put_model``
makes 1 long (shared by all worlds) and which the kernels read at ``world % len``. A
field is expanded to ``n_worlds`` rows the first time a world is given a value that
differs from the shared one, so an unrandomized backend keeps every field shared.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import mujoco
import mujoco_warp as mjw
import numpy as np
import warp as wp

# Warp announces every kernel module it loads; a user of the simulator needs none of it.
if os.environ.get("ROBOT_RL_DEBUG") != "1":
    wp.config.log_level = wp.LOG_WARNING

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS

#: Model fields that :meth:`WarpBackend.set_world_model` sets per world, named as on
#: ``mujoco.MjModel`` (``opt.`` / ``stat.`` for the option and statistic structs; MuJoCo
#: Warp's ``Model`` uses the same names). Every one is a batched field of MuJoCo Warp's
#: ``Model``. The first group is what ``DomainRandomizer.apply`` writes; the second what
#: ``mujoco.mj_setConst`` derives from those values and MuJoCo Warp reads: inverse
#: weights (contact and limit softness), subtree masses, actuator_acc0, the mean inertia
#: (solver tolerance scale) and the centre-of-mass offsets of tracking cameras and
#: lights. Of ``mj_setConst``'s other outputs that these parameters change, ``dof_M0``
#: and ``stat.meanmass/meansize/extent/center`` are not on MuJoCo Warp's ``Model`` and
#: ``dof_length`` is shared and read by no kernel; ``tendon_length0``, ``eq_data``,
#: ``cam_pos0``/``light_pos0`` and the spring references depend on ``qpos0`` only.
WORLD_MODEL_FIELDS: tuple[str, ...] = (
    "body_mass",
    "body_inertia",
    "geom_friction",
    "geom_size",
    "geom_rbound",
    "geom_aabb",
    "dof_damping",
    "dof_armature",
    "actuator_gainprm",
    "actuator_biasprm",
    "opt.timestep",
    # derived by mj_setConst:
    "body_subtreemass",
    "body_invweight0",
    "dof_invweight0",
    "tendon_invweight0",
    "actuator_acc0",
    "stat.meaninertia",
    "cam_poscom0",
    "light_poscom0",
)

# A per-world model must be the backend's model with other parameter values: the same
# sizes and the same element types (the device model keeps the template's structure).
_STRUCTURE_SIZES = (
    "nq",
    "nv",
    "nu",
    "na",
    "nbody",
    "njnt",
    "ngeom",
    "nsite",
    "ncam",
    "nlight",
    "ntendon",
    "neq",
    "nsensor",
    "nmocap",
)
_STRUCTURE_ARRAYS = (
    "body_parentid",
    "jnt_type",
    "geom_type",
    "actuator_trntype",
    "actuator_dyntype",
    "actuator_gaintype",
    "actuator_biastype",
)


def _attr(obj, name: str):
    """``obj.a.b`` for ``name`` ``"a.b"`` (on an MjModel or a MuJoCo Warp Model)."""
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(obj, name: str, value) -> None:
    *path, last = name.split(".")
    for part in path:
        obj = getattr(obj, part)
    setattr(obj, last, value)


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
        model: the MuJoCo model (the template: all worlds start with its parameters; see
            :meth:`set_world_model` for per-world values).
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
        # Host copies of the expanded (per-world) fields, (n_worlds, ...) in the device
        # dtype: a write updates rows here and uploads the field once.
        self._world_values: dict[str, np.ndarray] = {}

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

    def set_world_model(
        self,
        worlds: np.ndarray,
        models: Sequence[mujoco.MjModel],
        fields: Sequence[str] | None = None,
    ) -> None:
        """Gives ``worlds`` the parameter values of ``models`` (one model per world).

        Each model must be the backend's model with changed values (a copy that
        ``DomainRandomizer.apply`` wrote, ``mj_setConst`` included); the fields in
        :data:`WORLD_MODEL_FIELDS` are copied from it into that world's row of the device
        model, and the world steps with them from the next :meth:`step` on. Other fields
        stay shared with the template. Worlds not given keep their current values.

        Args:
            worlds: (k,) world indices, each in ``[0, n_worlds)``, no repeats.
            models: k models, ``models[i]`` for ``worlds[i]``.
            fields: the subset of :data:`WORLD_MODEL_FIELDS` to copy (default: all), e.g.
                ``("opt.timestep",)`` to follow a per-step timestep change cheaply.

        Raises:
            ValueError: a world index is out of range or repeated, the counts differ, a
                field is not per-world, or a model's structure differs from the backend's.
        """
        worlds = np.asarray(worlds).reshape(-1)
        if worlds.size and not np.issubdtype(worlds.dtype, np.integer):
            raise ValueError(f"worlds: expected integer indices, got dtype {worlds.dtype}")
        models = list(models)
        if len(models) != len(worlds):
            raise ValueError(f"got {len(worlds)} world indices but {len(models)} models")
        bad = worlds[(worlds < 0) | (worlds >= self.n_worlds)]
        if bad.size:
            raise ValueError(
                f"worlds: indices {bad.tolist()[:10]} out of range, expected 0 <= world < "
                f"{self.n_worlds}"
            )
        if len(np.unique(worlds)) != len(worlds):
            raise ValueError(f"worlds: repeated indices in {worlds.tolist()[:20]}")
        fields = WORLD_MODEL_FIELDS if fields is None else tuple(fields)
        unknown = [f for f in fields if f not in WORLD_MODEL_FIELDS]
        if unknown:
            raise ValueError(
                f"fields {unknown} are not per-world, expected some of {WORLD_MODEL_FIELDS}"
            )
        for i, (w, mjm) in enumerate(zip(worlds, models, strict=True)):
            self._check_structure(mjm, f"models[{i}] (world {int(w)})")
        if not len(worlds):
            return
        for name in fields:
            arr = _attr(self.m, name)
            # One world's row: the field's trailing dims and those of its vector dtype.
            shape = (*arr.shape[1:], *getattr(arr.dtype, "_shape_", ()))
            rows = np.stack([np.asarray(_attr(mjm, name)).reshape(shape) for mjm in models])
            if name not in self._world_values:
                shared = arr.numpy()[0]
                if np.array_equal(rows.astype(shared.dtype), np.broadcast_to(shared, rows.shape)):
                    continue  # still the shared value: no need for a row per world
                self._expand(name)
            host = self._world_values[name]
            host[worlds] = rows
            _attr(self.m, name).assign(host)

    def model_values(self, name: str) -> np.ndarray:
        """The device values of one field of :data:`WORLD_MODEL_FIELDS`, per world:
        (n_worlds, ...) in the device's dtype, rows repeated while the field is shared."""
        if name not in WORLD_MODEL_FIELDS:
            raise ValueError(f"{name!r} is not per-world, expected one of {WORLD_MODEL_FIELDS}")
        values = _attr(self.m, name).numpy()
        return np.broadcast_to(values, (self.n_worlds, *values.shape[1:])).copy()

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
        self._check_control(control.shape)
        if state is not None:
            self.set_state(np.arange(self.n_worlds), state)
        self._ctrl_buffer(control.shape[1]).assign(control)
        self._run(control.shape[1])
        return self.get_state(), self.d.sensordata.numpy().astype(np.float64)

    def step_device(self, control: Any, check_overflow: bool = True) -> None:
        """One control step from controls already on the device, with no host copy.

        Args:
            control: (N, S, nu) per-substep controls, a torch tensor on this backend's
                device (any float dtype). The resulting state stays on the device: read it
                through ``warp.to_torch`` views of :attr:`d` (``qpos``, ``qvel``,
                ``sensordata``), as :class:`~robot_rl.sim.batched.BatchedSim` does.
            check_overflow: read the per-world overflow flags now and raise on one. That
                waits for the step to finish; False leaves it to the caller, who reads
                ``d.overflow`` with whatever else it needs from the device and passes it
                to :meth:`check_overflow`.
        """
        import torch

        self._check_control(tuple(control.shape))
        src = wp.from_torch(control.to(torch.float32).contiguous())
        wp.copy(self._ctrl_buffer(control.shape[1]), src)
        self._run(control.shape[1], check_overflow)

    # --- internals -----------------------------------------------------------------------
    def _check_control(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[0] != self.n_worlds or shape[2] != self.model.nu:
            raise ValueError(
                f"control has shape {tuple(shape)}, expected ({self.n_worlds}, S, {self.model.nu})"
            )

    def _ctrl_buffer(self, n_substeps: int) -> wp.array:
        """The device buffer of per-substep controls (the graph reads it in place)."""
        if self._ctrl_seq is None or self._ctrl_seq.shape[1] != n_substeps:
            shape = (self.n_worlds, n_substeps, self.model.nu)
            self._ctrl_seq = wp.zeros(shape, dtype=float, device=self.device)
            self._graph = None
        return self._ctrl_seq

    def _run(self, n_substeps: int, check_overflow: bool = True) -> None:
        """The substeps of one control step; on CUDA recorded once as a graph and replayed."""
        if self.device.is_cuda:
            if self._graph is None:
                with wp.ScopedCapture(device=self.device) as capture:
                    self._substeps(n_substeps)
                self._graph = capture.graph
            wp.capture_launch(self._graph)
        else:
            self._substeps(n_substeps)
        if check_overflow:
            self.check_overflow()

    def _check_structure(self, mjm: mujoco.MjModel, where: str) -> None:
        if not isinstance(mjm, mujoco.MjModel):
            raise ValueError(f"{where}: expected a mujoco.MjModel, got {type(mjm).__name__}")
        for size in _STRUCTURE_SIZES:
            got, want = getattr(mjm, size), getattr(self.model, size)
            if got != want:
                raise ValueError(
                    f"{where}: {size}={got}, expected {want} as in the backend's model "
                    "(a per-world model must be a copy of it with changed values)"
                )
        for name in _STRUCTURE_ARRAYS:
            if not np.array_equal(getattr(mjm, name), getattr(self.model, name)):
                raise ValueError(
                    f"{where}: {name} differs from the backend's model (a per-world model "
                    "must be a copy of it with changed values)"
                )

    def _expand(self, name: str) -> None:
        """Gives field ``name`` one row per world, all starting at the shared value."""
        arr = _attr(self.m, name)
        host = np.repeat(arr.numpy()[:1], self.n_worlds, axis=0)
        new = wp.array(host, dtype=arr.dtype, device=self.device)
        new._is_batched = True  # as put_model marks batched fields
        _set_attr(self.m, name, new)
        self._world_values[name] = host
        # A captured CUDA graph holds the old array's address.
        self._graph = None

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

    def check_overflow(self, flags: np.ndarray | None = None) -> None:
        """Raises RuntimeError, naming the worlds and the kinds, where a world's contact or
        constraint buffers overflowed in the last step. ``flags``: ``d.overflow`` as read
        by the caller; None reads it (waiting for the device)."""
        flags = self.d.overflow.numpy() if flags is None else np.asarray(flags)
        if np.any(flags):
            bad = np.flatnonzero(flags)
            kinds = int(np.bitwise_or.reduce(flags[bad]))
            raise RuntimeError(
                f"MuJoCo Warp buffer overflow (OverflowType bits {kinds:#x}) in worlds "
                f"{bad.tolist()[:10]}: raise nconmax/njmax"
            )
