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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robot_rl.policies.network import build_actor

FORMAT = "robot_rl.policy"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass
class PolicyManifest:
    """The JSON manifest of a policy artifact.

    Fields marked "filled by ``save_policy``" are computed from the actor and the weights
    at save time; callers leave them at their defaults.

    Attributes:
        algorithm: Name of the algorithm that trained the policy ("bc", "td3bc", ...).
        obs_keys: Observation keys in the order they are flattened into the input.
        obs_shapes: ``{key: shape}`` of each key in one (unbatched) observation.
        action_dim: Number of action dims.
        action_low: Lower bound per action dim of the actions the policy gives, in the
            training store's units: the actor works in [-1, 1] (it ends in tanh) and
            ``LoadedPolicy`` maps its output affinely onto ``[action_low, action_high]``
            (as SB3 rescales a squashed policy onto its ``Box``). ``[-1, ...]`` for
            robot_rl's envs and stores, whose actions are already normalized.
        action_high: Upper bound per action dim (``[1, ...]`` by default).
        dataset_hash: Content hash of the training dataset (``EpisodeStore.content_hash()``).
        episode_range: ``[first, stop)`` episode indices of the store used for training.
        config: The full training config as a plain JSON-able dict.
        metrics: Training/evaluation metrics, name -> value.
        gate: The deployment gate's verdict; ``None`` until a gate has judged the policy.
        parent_policy_id: ``policy_id`` this policy was fine-tuned from, if any.
        env: What the policy acts in, from its training store: ``robot``, ``task``,
            ``control_hz``; empty when unknown. Evaluation refuses a different one
            (:meth:`check_env`).
        policy_id: Unique id; filled by ``save_policy`` when empty
            (``<algorithm>-<UTC time>-<weights sha256 prefix>``).
        created: ISO 8601 UTC creation time; filled by ``save_policy`` when empty.
        code_version: ``robot_rl.paths.code_version()``; filled by ``save_policy`` when empty.
        architecture: The actor's ``architecture()``; filled by ``save_policy``.
        normalization: ``{"obs": {key: {"mean": [...], "std": [...]}}, "clip": float|None}``,
            std as used (floored); filled by ``save_policy``.
        weights_sha256: sha256 of ``weights.safetensors``; filled by ``save_policy``.
        format_version: Artifact format version; ``load_policy`` refuses unknown ones.
    """

    algorithm: str
    obs_keys: list[str]
    obs_shapes: dict[str, list[int]]
    action_dim: int
    action_low: list[float] | None = None
    action_high: list[float] | None = None
    dataset_hash: str | None = None
    episode_range: list[int] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] | None = None
    parent_policy_id: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    policy_id: str = ""
    created: str = ""
    code_version: str = ""
    architecture: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.obs_keys = list(self.obs_keys)
        self.obs_shapes = {k: [int(s) for s in v] for k, v in self.obs_shapes.items()}
        self.action_dim = int(self.action_dim)
        if self.action_low is None:
            self.action_low = [-1.0] * self.action_dim
        if self.action_high is None:
            self.action_high = [1.0] * self.action_dim
        self.action_low = [float(v) for v in self.action_low]
        self.action_high = [float(v) for v in self.action_high]
        if self.episode_range is not None:
            self.episode_range = [int(v) for v in self.episode_range]

    @property
    def obs_dim(self) -> int:
        """Length of the flat observation vector."""
        return sum(int(np.prod(self.obs_shapes[k], dtype=np.int64)) for k in self.obs_keys)

    def validate(self, where: str = "manifest") -> None:
        """Checks internal consistency; raises ``ValueError`` naming ``where`` and the field."""
        missing = [k for k in self.obs_keys if k not in self.obs_shapes]
        extra = sorted(set(self.obs_shapes) - set(self.obs_keys))
        if missing or extra:
            raise ValueError(
                f"{where}: obs_shapes must have exactly the obs_keys; "
                f"missing shapes for {missing}, shapes for unknown keys {extra}"
            )
        if len(set(self.obs_keys)) != len(self.obs_keys):
            raise ValueError(f"{where}: obs_keys has duplicates: {self.obs_keys}")
        if self.action_dim <= 0:
            raise ValueError(f"{where}: action_dim must be > 0, got {self.action_dim}")
        for name in ("action_low", "action_high"):
            if len(getattr(self, name)) != self.action_dim:
                raise ValueError(
                    f"{where}: {name} has {len(getattr(self, name))} entries; "
                    f"expected action_dim={self.action_dim}"
                )
        if not all(
            math.isfinite(lo) and math.isfinite(hi) and lo < hi
            for lo, hi in zip(self.action_low, self.action_high, strict=True)
        ):
            raise ValueError(
                f"{where}: action_low must be < action_high, both finite, in every dim "
                f"(got {self.action_low} .. {self.action_high})"
            )
        if self.episode_range is not None and len(self.episode_range) != 2:
            raise ValueError(
                f"{where}: episode_range must be [first, stop), got {self.episode_range}"
            )

    def check_env(self, *, robot: str, task: str, control_hz: float, action_dim: int) -> None:
        """Raises ``ValueError`` if the policy was trained for another robot, task, control
        rate or action space than the one it is about to act in (names both values)."""
        wanted = {"robot": robot, "task": task, "control_hz": float(control_hz)}
        problems = [
            f"{key}: policy trained with {self.env[key]!r}, env has {value!r}"
            for key, value in wanted.items()
            if key in self.env and self.env[key] not in (None, value)
        ]
        if action_dim != self.action_dim:
            problems.append(
                f"action_dim: policy outputs {self.action_dim}, env expects {action_dim} "
                "(another task.action_mode?)"
            )
        if problems:
            raise ValueError(
                f"policy {self.policy_id or self.algorithm} does not fit this env: "
                + "; ".join(problems)
            )

    def to_json_dict(self) -> dict[str, Any]:
        """The manifest as written to ``manifest.json``."""
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any], where: str = "manifest") -> PolicyManifest:
        """Parses a ``manifest.json`` dict, checking format and version first.

        Raises:
            ValueError: Wrong ``format``, unknown ``format_version``, missing or unknown
                fields, or inconsistent contents; the message names ``where``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ValueError(f"{where}: 'format' is {data.get('format')!r}; expected {FORMAT!r}")
        version = data.get("format_version")
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise ValueError(
                f"{where}: unsupported format_version {version!r}; this robot_rl reads "
                f"{list(SUPPORTED_FORMAT_VERSIONS)} (a newer robot_rl may have written it)"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        body = {k: v for k, v in data.items() if k != "format"}
        unknown = sorted(set(body) - names)
        missing = sorted(required - set(body))
        if unknown or missing:
            raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}")
        manifest = cls(**body)
        manifest.validate(where)
        return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    # Write-then-rename so a reader (or a crash) never sees half a manifest.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            try:
                text = json.dumps(data, indent=2, allow_nan=False)
            except ValueError as exc:
                raise ValueError(f"{path}: NaN/inf values cannot be written to JSON") from exc
            f.write(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def read_manifest(directory: str | os.PathLike[str]) -> PolicyManifest:
    """Reads and validates ``manifest.json`` of an artifact (weights are not touched).

    Raises:
        FileNotFoundError: The directory or its manifest does not exist.
        ValueError: The manifest is not valid JSON or not a supported manifest.
    """
    root = Path(directory)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise FileNotFoundError(f"policy artifact directory {root} does not exist")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a policy artifact needs {MANIFEST_FILE} and {WEIGHTS_FILE}"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt manifest, not valid JSON ({exc})") from exc
    try:
        return PolicyManifest.from_json_dict(data, where=str(path))
    except TypeError as exc:  # wrong value types reaching __post_init__
        raise ValueError(f"{path}: malformed manifest field ({exc})") from exc


def update_manifest(
    directory: str | os.PathLike[str],
    *,
    metrics: Mapping[str, float] | None = None,
    gate: Mapping[str, Any] | None = None,
) -> PolicyManifest:
    """Records new metrics (merged) and/or a gate verdict in an existing artifact.

    Only these fields may change after training; the weights and everything describing
    them stay as saved.

    Returns:
        The updated manifest.
    """
    manifest = read_manifest(directory)
    if metrics is not None:
        manifest.metrics = {**manifest.metrics, **{k: float(v) for k, v in metrics.items()}}
    if gate is not None:
        manifest.gate = dict(gate)
    _write_json_atomic(Path(directory) / MANIFEST_FILE, manifest.to_json_dict())
    return manifest


class LoadedPolicy:
    """A policy loaded from an artifact; implements the ``Policy`` protocol.

    Attributes:
        manifest: The artifact's manifest.
        actor: The actor module, in eval mode, on ``device``.
        device: Where inference runs.
    """

    def __init__(self, manifest: PolicyManifest, actor: nn.Module, device: torch.device) -> None:
        self.manifest = manifest
        self.actor = actor.eval()
        self.device = device
        self.obs_keys: tuple[str, ...] = tuple(manifest.obs_keys)
        self._shapes = {k: tuple(manifest.obs_shapes[k]) for k in self.obs_keys}
        self.obs_dim = manifest.obs_dim
        self.action_dim = manifest.action_dim
        low = torch.tensor(manifest.action_low, dtype=torch.float32, device=device)
        high = torch.tensor(manifest.action_high, dtype=torch.float32, device=device)
        # [-1, 1] -> [low, high]; None where the bounds are [-1, 1] already.
        self._action_affine: tuple[torch.Tensor, torch.Tensor] | None = (
            None
            if bool(torch.all(low == -1.0) and torch.all(high == 1.0))
            else ((high + low) / 2.0, (high - low) / 2.0)
        )

    @property
    def policy_id(self) -> str:
        """The artifact's ``policy_id``."""
        return self.manifest.policy_id

    def reset(self) -> None:
        """No per-episode state: the actor is a plain function of the observation."""

    def flatten_obs(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenates ``obs`` in manifest order into a float32 vector.

        Each of the manifest's keys must have its manifest shape, or that shape with one
        leading batch dim (the same for all keys), giving ``(obs_dim,)`` or
        ``(B, obs_dim)``. Keys the policy does not use (an env gives every sensor; a
        policy may see a few) are ignored.

        Raises:
            ValueError: A missing key, or a key with the wrong shape.
        """
        missing = [k for k in self.obs_keys if k not in obs]
        if missing:
            raise ValueError(
                f"observation keys do not match policy {self.policy_id!r}: missing {missing} "
                f"(given {sorted(obs)}); the policy expects {list(self.obs_keys)}"
            )
        arrays = []
        batch: int | None = None
        for i, key in enumerate(self.obs_keys):
            arr = np.asarray(obs[key], dtype=np.float32)
            shape = self._shapes[key]
            if arr.shape == shape:
                lead = None
            elif arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
                lead = arr.shape[0]
            else:
                raise ValueError(
                    f"observation key {key!r} has shape {arr.shape}; policy "
                    f"{self.policy_id!r} expects {shape} (or (B, *{shape}) for a batch)"
                )
            if i == 0:
                batch = lead
            elif lead != batch:
                raise ValueError(
                    f"observation key {key!r} has batch dim {lead} but "
                    f"{self.obs_keys[0]!r} has {batch}; all keys must agree"
                )
            arrays.append(arr.reshape(-1) if lead is None else arr.reshape(lead, -1))
        return np.concatenate(arrays, axis=-1)

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Returns a float32 action ``(action_dim,)`` (or ``(B, action_dim)``) in the
        manifest's ``[action_low, action_high]`` (``[-1, 1]`` for robot_rl's envs).

        Raises:
            ValueError: ``obs`` keys or shapes do not match the manifest.
        """
        return self.act_batch(self.flatten_obs(obs))

    def act_batch(self, obs_flat: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Actions for flat observations ``(obs_dim,)`` or ``(B, obs_dim)``.

        Returns a float32 numpy array for numpy input, and a tensor on ``device`` for
        tensor input (no host round trip for GPU-batched simulation).

        Raises:
            ValueError: The last dim is not ``obs_dim``.
        """
        as_numpy = not isinstance(obs_flat, torch.Tensor)
        x = torch.as_tensor(np.asarray(obs_flat, np.float32) if as_numpy else obs_flat)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(
                f"flat observation has shape {tuple(x.shape)}; policy {self.policy_id!r} "
                f"expects ({self.obs_dim},) or (B, {self.obs_dim})"
            )
        with torch.inference_mode():
            action = self.actor(x.to(self.device, torch.float32))
            if self._action_affine is not None:
                mid, half = self._action_affine
                action = torch.addcmul(mid, half, action)
        if as_numpy:
            return action.cpu().numpy().astype(np.float32, copy=False)
        return action


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
