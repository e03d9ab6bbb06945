"""robot_rl.policies: the Policy protocol, policy networks, and the policy artifact.

Names are imported lazily so that ``from robot_rl.policies.base import Policy`` (used by
the recorder, teleop and hardware code) does not pull in torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Policy": "robot_rl.policies.base",
    "Normalizer": "robot_rl.policies.normalization",
    "DeterministicActor": "robot_rl.policies.network",
    "build_mlp": "robot_rl.policies.network",
    "build_actor": "robot_rl.policies.network",
    "PolicyManifest": "robot_rl.policies.manifest",
    "LoadedPolicy": "robot_rl.policies.loaded_policy",
    "save_policy": "robot_rl.policies.artifact",
    "load_policy": "robot_rl.policies.artifact",
    "read_manifest": "robot_rl.policies.manifest",
    "update_manifest": "robot_rl.policies.manifest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'robot_rl.policies' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
