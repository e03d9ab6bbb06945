"""The layout of MuJoCo's full-physics state vector (``mjSTATE_FULLPHYSICS``), which the
batched simulator's backends and resets share."""

from __future__ import annotations

import mujoco

FULL_PHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS


def state_offsets(model: mujoco.MjModel) -> dict[str, int]:
    """Where each component of a full-physics state vector starts."""
    offsets, at = {}, 0
    elements = [
        (name, int(value))
        for name, value in mujoco.mjtState.__members__.items()
        if bin(int(value)).count("1") == 1  # single components, in bit order below
    ]
    for name, bit in sorted(elements, key=lambda e: e[1]):
        if int(FULL_PHYSICS) & bit:
            offsets[name] = at
            at += mujoco.mj_stateSize(model, bit)
    return offsets
