"""robot_rl.data: the episode store on Zarr, its statistics, and samplers into torch.

The store itself needs no torch (the hardware recorder writes through it), so the
samplers and batch types, which do, load only when first used. Governance (purge,
filter, split, merge, pseudonyms) is in ``robot_rl.data.governance``, the zarr-2 export
in ``robot_rl.data.export``.
"""

from robot_rl.data.episode_store import (
    EpisodeProvenance,
    EpisodeStore,
    MissingChunkError,
    StoreFormatError,
    StoreRewrittenError,
    StoreSchema,
    ValidationReport,
    open_store,
)
from robot_rl.data.episode_writer import EpisodeWriter
from robot_rl.data.labels import Preference, SuccessLabel

_LAZY = {
    "TransitionSampler": "robot_rl.data.sampler",
    "WindowSampler": "robot_rl.data.window_sampler",
    "TransitionBatch": "robot_rl.data.batch",
    "WindowBatch": "robot_rl.data.batch",
}

__all__ = [
    "EpisodeProvenance",
    "EpisodeStore",
    "EpisodeWriter",
    "MissingChunkError",
    "Preference",
    "StoreFormatError",
    "StoreRewrittenError",
    "StoreSchema",
    "SuccessLabel",
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
