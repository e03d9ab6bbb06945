"""The policy artifact: a directory with ``weights.safetensors`` and ``manifest.json``.

This is the contract between training, evaluation, the deployment gate and the robot
(see DESIGN.md, "Policy artifact"). The manifest records everything needed to run and
audit the policy: algorithm, observation keys with shapes (the flattening order), action
space, normalization stats, network architecture, training dataset hash and episode
range, config, code version, metrics, gate result (``None`` until a gate has judged it),
parent policy, creation time and ``format_version``.

Loading uses safetensors and JSON only: nothing is ever unpickled (no ``torch.load``),
so an artifact from an untrusted place cannot run code. The manifest records the sha256
of the weights file; a mismatch (a corrupt or swapped file) is refused.

``weights.safetensors`` holds the actor's ``state_dict``, normalization buffers included;
the manifest repeats the normalization stats per key for people and tools that read JSON,
and the loader checks that both agree exactly.

This module writes and loads artifacts; the manifest is :mod:`robot_rl.policies.manifest`,
the policy a load gives :mod:`robot_rl.policies.loaded_policy`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robot_rl.policies.loaded_policy import LoadedPolicy
from robot_rl.policies.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    SUPPORTED_FORMAT_VERSIONS,
    WEIGHTS_FILE,
    PolicyManifest,
    _write_json_atomic,
    read_manifest,
    update_manifest,
)
from robot_rl.policies.network import build_actor

# The manifest and LoadedPolicy were defined here before they got modules of their own;
# they stay importable from here.
__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "SUPPORTED_FORMAT_VERSIONS",
    "WEIGHTS_FILE",
    "LoadedPolicy",
    "PolicyManifest",
    "load_policy",
    "read_manifest",
    "save_policy",
    "update_manifest",
]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalization_section(
    actor: nn.Module, obs_keys: Sequence[str], shapes: Mapping[str, Sequence[int]]
) -> dict[str, Any]:
    norm = getattr(actor, "normalizer", None)
    if norm is None:
        return {}
    mean = norm.mean.detach().cpu().numpy()
    std = norm.std.detach().cpu().numpy()
    per_key: dict[str, Any] = {}
    start = 0
    for key in obs_keys:
        size = int(np.prod(shapes[key], dtype=np.int64))
        per_key[key] = {
            "mean": [float(v) for v in mean[start : start + size]],
            "std": [float(v) for v in std[start : start + size]],
        }
        start += size
    clip = float(norm.clip)
    return {
        "obs": per_key,
        "std_floor": float(norm.std_floor),
        "clip": None if np.isinf(clip) else clip,
    }


def save_policy(
    directory: str | os.PathLike[str],
    actor: nn.Module,
    manifest: PolicyManifest,
    overwrite: bool = False,
) -> PolicyManifest:
    """Writes a policy artifact: ``weights.safetensors`` first, then ``manifest.json``.

    The manifest is written last and atomically, so a directory with a manifest always has
    the weights it describes.

    Args:
        directory: Artifact directory (created if needed).
        actor: The deployable actor, e.g. ``algo.actor()``; must have ``architecture()``
            (as ``DeterministicActor`` does) and include its normalizer.
        manifest: Caller-filled fields; ``architecture``, ``normalization`` and
            ``weights_sha256`` are filled here, as are ``policy_id``, ``created`` and
            ``code_version`` when empty.
        overwrite: Replace an existing artifact in ``directory``.

    Returns:
        The manifest as written.

    Raises:
        FileExistsError: ``directory`` already holds an artifact and ``overwrite`` is False.
        ValueError: The manifest is inconsistent or does not match the actor.
    """
    out = Path(directory)
    manifest_path = out / MANIFEST_FILE
    if manifest_path.exists() and not overwrite:
        raise FileExistsError(
            f"{manifest_path} exists; pass overwrite=True or choose a new directory"
        )
    if not hasattr(actor, "architecture"):
        raise ValueError(
            f"save_policy: {type(actor).__name__} has no architecture(); "
            "only actors the loader can rebuild (see network.ACTOR_TYPES) can be saved"
        )
    manifest = dataclasses.replace(manifest)
    manifest.validate("save_policy manifest")
    arch = actor.architecture()
    if arch.get("obs_dim") != manifest.obs_dim or arch.get("action_dim") != manifest.action_dim:
        raise ValueError(
            f"save_policy: actor has obs_dim={arch.get('obs_dim')}, "
            f"action_dim={arch.get('action_dim')}, but the manifest's obs_shapes give "
            f"obs_dim={manifest.obs_dim} and action_dim={manifest.action_dim}"
        )

    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / WEIGHTS_FILE
    # Clone so tensors sharing storage (tied weights) do not trip safetensors.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in actor.state_dict().items()}
    tmp_weights = out / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp_weights), metadata={"format": FORMAT})
    os.replace(tmp_weights, weights_path)

    manifest.architecture = arch
    manifest.normalization = _normalization_section(actor, manifest.obs_keys, manifest.obs_shapes)
    manifest.weights_sha256 = _sha256(weights_path)
    manifest.format_version = FORMAT_VERSION
    now = datetime.now(UTC)
    if not manifest.created:
        manifest.created = now.isoformat(timespec="seconds")
    if not manifest.policy_id:
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        manifest.policy_id = f"{manifest.algorithm}-{stamp}-{manifest.weights_sha256[:8]}"
    if not manifest.code_version:
        from robot_rl.paths import code_version

        manifest.code_version = code_version()
    _write_json_atomic(manifest_path, manifest.to_json_dict())
    return manifest


def load_policy(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> LoadedPolicy:
    """Loads a policy artifact (safetensors + JSON only; never unpickles).

    Args:
        directory: The artifact directory.
        device: Where to run the actor.

    Returns:
        A ``LoadedPolicy``.

    Raises:
        FileNotFoundError: The directory, manifest or weights file is missing.
        ValueError: Corrupt or unsupported manifest, corrupt weights, or weights that do
            not match the manifest (hash, tensor names/shapes, normalization stats).
    """
    root = Path(directory)
    manifest = read_manifest(root)
    weights_path = root / WEIGHTS_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} not found (manifest {root / MANIFEST_FILE})")
    digest = _sha256(weights_path)
    if digest != manifest.weights_sha256:
        raise ValueError(
            f"{weights_path}: sha256 {digest[:16]}... does not match the manifest's "
            f"weights_sha256 {manifest.weights_sha256[:16]}...; the file is corrupt or from "
            "another artifact"
        )
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({exc})") from exc

    actor = build_actor(manifest.architecture)
    arch = manifest.architecture
    if arch.get("obs_dim") != manifest.obs_dim or arch.get("action_dim") != manifest.action_dim:
        raise ValueError(
            f"{root / MANIFEST_FILE}: architecture has obs_dim={arch.get('obs_dim')}, "
            f"action_dim={arch.get('action_dim')}; obs_shapes/action_dim give "
            f"{manifest.obs_dim}/{manifest.action_dim}"
        )
    expected = actor.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(tensors[k].shape)} vs architecture {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{weights_path} does not match the manifest architecture: missing tensors "
            f"{missing}, unexpected tensors {unexpected}, wrong shapes {wrong_shape}"
        )
    actor.load_state_dict(tensors, strict=True)
    _check_normalization(manifest, actor, root / MANIFEST_FILE)
    return LoadedPolicy(manifest, actor.to(device), torch.device(device))


def _check_normalization(manifest: PolicyManifest, actor: nn.Module, where: Path) -> None:
    saved = manifest.normalization
    if not saved:
        return
    current = _normalization_section(actor, manifest.obs_keys, manifest.obs_shapes)
    for key in manifest.obs_keys:
        if saved.get("obs", {}).get(key) != current["obs"][key]:
            raise ValueError(
                f"{where}: normalization stats for {key!r} differ from those in "
                f"{WEIGHTS_FILE}; the manifest and weights are from different policies"
            )
