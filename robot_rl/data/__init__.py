"""robot_rl.data: the episode store on Zarr, its statistics, and samplers into torch.

The store itself needs no torch (the hardware recorder writes through it), so the
samplers and batch types, which do, load only when first used.
"""

from robot_rl.data.episode_store import (
    EpisodeProvenance,
    EpisodeStore,
    StoreFormatError,
    ValidationReport,
    open_store,
)

_LAZY = {
    "TransitionSampler": "robot_rl.data.sampler",
    "WindowSampler": "robot_rl.data.sampler",
    "TransitionBatch": "robot_rl.data.batch",
    "WindowBatch": "robot_rl.data.batch",
}

__all__ = [
    "EpisodeProvenance",
    "EpisodeStore",
    "StoreFormatError",
    "TransitionBatch",
    "TransitionSampler",
    "ValidationReport",
    "WindowBatch",
    "WindowSampler",
    "open_store",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'robot_rl.data' has no attribute {name!r}")
