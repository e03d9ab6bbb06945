"""One numerical code path for numpy and torch arrays (the Python array API standard).

The kinematics, IK, task scores and the action pipeline are written against the array
namespace of their inputs (``array_api_compat.array_namespace``): numpy arrays give the
float64 host path that the single env, the CPU batched backend and the robot-side bridge
run, torch tensors the path that stays on the Warp backend's device. Results of one
library never change when the other is used, so the single env and the CPU backend stay
bit-identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array
from array_api_compat import device as device_of

__all__ = [
    "Array",
    "array_namespace",
    "as_float",
    "clip",
    "const",
    "device_of",
    "is_numpy_array",
    "to_numpy",
]

#: A numpy array or a torch tensor.
Array = Any


def as_float(x: Any) -> Array:
    """Tensors pass through; anything else becomes a float64 numpy array."""
    return x if is_torch_array(x) else np.asarray(x, dtype=np.float64)


# (id of a long-lived numpy constant, device, dtype) -> (the constant, its copy). The
# constant itself is held too, so its id can never be reused while the entry exists.
_CONSTS: dict[tuple[int, str, str], tuple[np.ndarray, Any]] = {}


def const(value: np.ndarray, like: Any) -> Any:
    """A long-lived numpy constant as an array of ``like``'s library, device and dtype.

    numpy inputs get ``value`` itself (no copy, no cast); torch inputs get a cached copy on
    their device, so the per-step code never re-uploads constants.
    """
    if is_numpy_array(like):
        return value
    key = (id(value), str(device_of(like)), str(like.dtype))
    hit = _CONSTS.get(key)
    if hit is None:
        xp = array_namespace(like)
        hit = _CONSTS[key] = (value, xp.asarray(value, dtype=like.dtype, device=device_of(like)))
    return hit[1]


def clip(x: Array, lo: Any, hi: Any) -> Array:
    """``x`` clipped to ``[lo, hi]`` (arrays or scalars; None for no bound). numpy takes
    its own ``np.clip``: the array-API wrapper costs several times as much on the small
    arrays of a single robot at its driver rate."""
    if is_numpy_array(x):
        return np.clip(x, lo, hi)
    return array_namespace(x).clip(x, lo, hi)


def to_numpy(x: Any) -> np.ndarray:
    """A host numpy array of ``x`` (a torch tensor is copied off its device)."""
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)
