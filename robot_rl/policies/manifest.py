"""The policy artifact's manifest (``manifest.json``): what it records, how it is checked,
read, and updated after training.

The manifest records everything needed to run and audit the policy (see
:mod:`robot_rl.policies.artifact` for the artifact as a whole): algorithm, observation
keys with shapes (the flattening order), action space, normalization stats, network
architecture, training dataset hash and episode range, config, code version, metrics, gate
result (``None`` until a gate has judged it), parent policy, creation time and
``format_version``. It is plain JSON, written atomically; reading it needs no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
