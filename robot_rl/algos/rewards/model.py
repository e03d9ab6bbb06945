"""The reward model: a per-step reward r(s) (or r(s, a)) learned from human feedback.

An ensemble of small MLPs on normalized flat observations: the store's observation keys
concatenated in the model's ``obs_keys`` order, each flattened, as in
:class:`~robot_rl.data.batch.TransitionBatch` and the policy artifact. With
``use_action`` the action (already in [-1, 1]) is appended to the input. Each member
outputs a logit; the reward is the ensemble mean of a fixed transform of it, times
``reward_scale``:

- ``output="raw"`` (preference models): the logit itself, a Bradley-Terry utility;
- ``output="log_prob"`` (success classifiers): ``log sigmoid(logit)``, the log-probability
  that the state is a success state (<= 0);
- ``output="prob"``: ``sigmoid(logit)``, in [0, 1].

On disk (a directory, never pickled)::

    <model>/
      reward_model.json      manifest: format, format_version, model_id, kind, obs_keys,
                             obs_shapes, action_dim, use_action, hidden_sizes,
                             ensemble_size, output, reward_scale, training (dataset hash,
                             label counts, config, metrics), code_version
      weights.safetensors    normalizer buffers and every member's weights

The model id is the SHA-256 (hex) of the canonical JSON of the manifest (without the id)
and of every tensor (name, dtype, shape, bytes): the same weights and settings always
get the same id, any change gets a new one. :func:`load_reward_model` recomputes it and
refuses a model whose files do not match their id. Relabelled stores record it
(``reward_source="learned:<model id>"``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from robot_rl.policies.network import build_mlp
from robot_rl.policies.normalization import Normalizer

if TYPE_CHECKING:
    from robot_rl.data.episode_store import EpisodeStore

FORMAT = "robot_rl.reward_model"
FORMAT_VERSION = 1
MANIFEST_FILE = "reward_model.json"
WEIGHTS_FILE = "weights.safetensors"
KINDS = ("preference", "success")
OUTPUTS = ("raw", "log_prob", "prob")
# log sigmoid is floored here so a confident "never a success" stays a finite reward.
_MIN_LOG_PROB = -20.0


@dataclass
class RewardModelSpec:
    """What a reward model is, apart from its weights (the manifest, less the id).

    Attributes:
        kind: ``"preference"`` (Bradley-Terry) or ``"success"`` (classifier).
        obs_keys: observation keys of the input, in flattening order.
        obs_shapes: per-step shape of each key.
        action_dim: the store's action size (checked even when the action is unused).
        use_action: r(s, a) instead of r(s).
        hidden_sizes: hidden layer widths of each member MLP.
        ensemble_size: number of independently initialized members (rewards averaged).
        output: ``"raw"``, ``"log_prob"`` or ``"prob"`` (see the module docstring).
        reward_scale: factor applied to the ensemble mean (1 unless a preference model
            was trained with ``reward_units="unit_std"``: then 1 / std of the per-step
            rewards on its training data; BT rankings do not change under a positive
            factor).
        training: lineage: dataset content hash, label counts, config, metrics.
        code_version: ``robot_rl.paths.code_version()`` of the training code.
    """

    kind: str
    obs_keys: list[str]
    obs_shapes: dict[str, list[int]]
    action_dim: int
    use_action: bool = False
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    ensemble_size: int = 1
    output: str = "raw"
    reward_scale: float = 1.0
    training: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""

    def check(self, where: str = "reward model") -> None:
        """Raise ValueError naming the field if any value is malformed."""
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind: expected one of {list(KINDS)}, got {self.kind!r}")
        if self.output not in OUTPUTS:
            raise ValueError(
                f"{where}: output: expected one of {list(OUTPUTS)}, got {self.output!r}"
            )
        if not self.obs_keys or set(self.obs_keys) != set(self.obs_shapes):
            raise ValueError(
                f"{where}: obs_keys {self.obs_keys} and obs_shapes keys "
                f"{sorted(self.obs_shapes)} must name the same non-empty set of keys"
            )
        if int(self.action_dim) <= 0 or int(self.ensemble_size) <= 0:
            raise ValueError(
                f"{where}: action_dim and ensemble_size must be positive, got "
                f"{self.action_dim}, {self.ensemble_size}"
            )
        if not (np.isfinite(self.reward_scale) and self.reward_scale > 0):
            raise ValueError(f"{where}: reward_scale must be > 0, got {self.reward_scale!r}")

    @property
    def obs_dim(self) -> int:
        """Flat observation size."""
        return int(sum(int(np.prod(self.obs_shapes[k], dtype=np.int64)) for k in self.obs_keys))

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["obs_shapes"] = {k: [int(s) for s in v] for k, v in self.obs_shapes.items()}
        doc["hidden_sizes"] = [int(h) for h in self.hidden_sizes]
        return doc


def flat_obs(store: EpisodeStore, obs_keys: Sequence[str], start: int, end: int) -> np.ndarray:
    """float32 (end - start, obs_dim): rows ``[start, end)`` of ``obs_keys``, each
    flattened, concatenated in order (the order of TransitionBatch and policies)."""
    parts = []
    for k in obs_keys:
        x = np.asarray(store.zarr_array(k)[start:end], dtype=np.float32)
        parts.append(x.reshape(len(x), -1))
    return np.concatenate(parts, axis=1)


def reward_obs(
    store: EpisodeStore, obs_keys: Sequence[str], start: int, end: int, use_action: bool
) -> np.ndarray:
    """The observation each of the episode rows ``[start, end)`` is rewarded for, in the
    store's convention ``reward[t] = r(s_t, a_t)``, which for a state-only reward is
    ``r(s_{t+1})``: the state the action led to. A state-only model therefore sees the
    next row's observation; the last row, whose successor is not stored, sees its own.
    ``(start, end)`` must be one episode's bounds."""
    if use_action:
        return flat_obs(store, obs_keys, start, end)
    obs = flat_obs(store, obs_keys, min(start + 1, end - 1), end)
    return np.concatenate([obs, obs[-1:]]) if end - start > 1 else obs


class RewardModel(nn.Module):
    """An ensemble of MLP reward heads over normalized flat observations (see the module
    docstring). Build one with :func:`~robot_rl.algos.rewards.train_preference_model`,
    :func:`~robot_rl.algos.rewards.train_success_classifier` or :func:`load_reward_model`.

    Args:
        spec: what the model is (its manifest, less the id).
        normalizer: observation normalizer over ``spec.obs_dim`` flat dims.
    """

    def __init__(self, spec: RewardModelSpec, normalizer: Normalizer) -> None:
        super().__init__()
        spec.check()
        if normalizer.dim != spec.obs_dim:
            raise ValueError(
                f"reward model: normalizer has {normalizer.dim} dims, obs_keys give {spec.obs_dim}"
            )
        self.spec = spec
        self.normalizer = normalizer
        in_dim = spec.obs_dim + (spec.action_dim if spec.use_action else 0)
        self.members = nn.ModuleList(
            build_mlp(in_dim, 1, spec.hidden_sizes) for _ in range(spec.ensemble_size)
        )

    def logits(self, obs: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """Per-member logits, (E, *batch), for raw flat ``obs`` (*batch, obs_dim) and,
        with ``use_action``, ``action`` (*batch, action_dim)."""
        x = self.normalizer(obs)
        if self.spec.use_action:
            if action is None:
                raise ValueError("reward model uses actions (use_action): pass action")
            x = torch.cat([x, action], dim=-1)
        return torch.stack([m(x).squeeze(-1) for m in self.members])

    def transform(self, logits: torch.Tensor) -> torch.Tensor:
        """The per-member reward of logits, before averaging and scaling."""
        if self.spec.output == "log_prob":
            return F.logsigmoid(logits).clamp(min=_MIN_LOG_PROB)
        if self.spec.output == "prob":
            return torch.sigmoid(logits)
        return logits

    def forward(self, obs: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """Per-step reward, (*batch,)."""
        return self.transform(self.logits(obs, action)).mean(0) * self.spec.reward_scale

    @torch.no_grad()
    def predict(self, obs: np.ndarray, action: np.ndarray | None = None) -> np.ndarray:
        """float32 rewards of rows of raw flat ``obs`` (T, obs_dim) (and ``action``)."""
        was_training = self.training
        self.eval()
        try:
            o = torch.as_tensor(np.asarray(obs, dtype=np.float32))
            a = None if action is None else torch.as_tensor(np.asarray(action, np.float32))
            return self(o, a).numpy().astype(np.float32)
        finally:
            self.train(was_training)

    def store_rows(self, store: EpisodeStore, start: int, end: int) -> np.ndarray:
        """float32 rewards of the rows ``[start, end)`` of one episode, in the store's
        convention (:func:`reward_obs`; call :meth:`check_store` first)."""
        obs = reward_obs(store, self.spec.obs_keys, start, end, self.spec.use_action)
        action = np.asarray(store.zarr_array("action")[start:end]) if self.spec.use_action else None
        return self.predict(obs, action)

    def check_store(self, store: EpisodeStore) -> None:
        """Raise ValueError unless ``store`` has the observation keys (with the shapes)
        and action size the model was trained on; the message lists every difference."""
        problems = []
        for k in self.spec.obs_keys:
            want = tuple(self.spec.obs_shapes[k])
            if k not in store.obs_spec:
                problems.append(f"obs key {k!r} (shape {want}) is missing")
            elif tuple(store.obs_spec[k][0]) != want:
                problems.append(
                    f"obs key {k!r}: model expects shape {want}, store has "
                    f"{tuple(store.obs_spec[k][0])}"
                )
        if store.action_dim != self.spec.action_dim:
            problems.append(
                f"action_dim: model expects {self.spec.action_dim}, store has {store.action_dim}"
            )
        if problems:
            raise ValueError(
                f"reward model {self.model_id[:16]} does not fit store {store.path}: "
                + "; ".join(problems)
                + f" (model obs_keys {self.spec.obs_keys}, store obs_keys {store.obs_keys})"
            )

    @property
    def model_id(self) -> str:
        """SHA-256 (hex) of the manifest and the weights (see the module docstring)."""
        return _model_id(self.spec, self._tensors())

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``reward_model.json`` and ``weights.safetensors`` into ``directory``
        (created; it must not hold a model unless ``overwrite``). Returns the path."""
        d = Path(directory)
        if (d / MANIFEST_FILE).exists() and not overwrite:
            raise FileExistsError(f"{d} already holds a reward model; pass overwrite=True")
        if d.exists() and not d.is_dir():
            raise FileExistsError(f"{d} exists and is not a directory")
        d.mkdir(parents=True, exist_ok=True)
        tensors = self._tensors()
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION}
        doc["model_id"] = _model_id(self.spec, tensors)
        doc.update(self.spec.to_doc())
        # Weights first, manifest last: a manifest names only complete weights.
        save_file(tensors, str(d / WEIGHTS_FILE))
        tmp = d / f".{MANIFEST_FILE}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, d / MANIFEST_FILE)
        return d


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _model_id(spec: RewardModelSpec, tensors: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    h.update(_canonical({"format": FORMAT, "spec": spec.to_doc()}))
    for name in sorted(tensors):
        t = tensors[name]
        h.update(_canonical([name, str(t.dtype), list(t.shape)]))
        h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def load_reward_model(directory: str | os.PathLike[str]) -> RewardModel:
    """Load a reward model saved by :meth:`RewardModel.save` (no unpickling).

    Raises:
        FileNotFoundError: no manifest or weights in ``directory``.
        ValueError: a malformed manifest, weights that do not fit it, or files whose
            content does not match the recorded model id.
    """
    d = Path(directory)
    mpath = d / MANIFEST_FILE
    if not mpath.is_file():
        raise FileNotFoundError(
            f"{d}: no reward model here (no {MANIFEST_FILE}); train one with "
            "`robot-rl-data train-reward`"
        )
    try:
        doc = json.loads(mpath.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{mpath}: unreadable JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{mpath}: not a reward model manifest (format != {FORMAT!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{mpath}: format_version {doc.get('format_version')!r} is not supported "
            f"(this code reads {FORMAT_VERSION})"
        )
    known = set(RewardModelSpec.__dataclass_fields__)
    try:
        spec = RewardModelSpec(**{k: v for k, v in doc.items() if k in known})
        spec.check(str(mpath))
    except TypeError as e:
        raise ValueError(f"{mpath}: malformed manifest ({e})") from None
    wpath = d / WEIGHTS_FILE
    if not wpath.is_file():
        raise FileNotFoundError(f"{d}: {WEIGHTS_FILE} is missing")
    tensors = load_file(str(wpath))
    dim = spec.obs_dim
    model = RewardModel(spec, Normalizer(np.zeros(dim), np.ones(dim)))
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{wpath}: weights do not fit the manifest ({e})") from None
    got = model.model_id
    if got != doc.get("model_id"):
        raise ValueError(
            f"{d}: content hash {got} does not match the recorded model_id "
            f"{doc.get('model_id')!r}; the files were changed or mixed up"
        )
    model.eval()
    return model
