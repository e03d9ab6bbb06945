"""The interface every offline algorithm implements: :class:`OfflineAlgorithm`.

An algorithm (BC, TD3+BC, IQL, CQL/Cal-QL, FQE) is a small subclass: it owns its networks
and optimizers and does one gradient step in ``update``. The base class moves its modules
to a device, switches train/eval mode, gives the mixed-precision context, and turns the
whole training state into tensors + JSON (:class:`AlgorithmState`) for checkpoints; the
loop that drives it is :class:`~robot_rl.algos.trainer.OfflineTrainer`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from robot_rl.data.batch import TransitionBatch


class AlgorithmState(NamedTuple):
    """An algorithm's full training state, split the way it is stored."""

    tensors: dict[str, torch.Tensor]  # -> safetensors
    metadata: dict[str, Any]  # JSON-able -> trainer.json


class OfflineAlgorithm(ABC):
    """Base class of offline algorithms: one gradient step per ``update`` call.

    Subclasses implement ``update``, ``actor``, ``modules`` and ``optimizers``. Everything
    listed by ``modules()`` and ``optimizers()`` (target networks included) is
    checkpointed and moved to the device by the base class; other state goes through
    ``extra_state``/``load_extra_state`` (JSON-able). Hooks with no-op defaults:
    ``on_train_start``.

    Subclasses should run forward passes inside ``with self.autocast():`` so the
    trainer's mixed-precision flag applies, and compute losses in float32.
    """

    #: Short name recorded in checkpoints and policy manifests ("bc", "td3bc", ...).
    name: ClassVar[str] = ""
    #: Whether ``update`` reads ``batch.reward``. Learners that do not (BC) train on
    #: stores without rewards, whose batches carry NaN there.
    uses_rewards: ClassVar[bool] = True

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.mixed_precision = False

    # --- what every algorithm implements -------------------------------------------

    @abstractmethod
    def update(self, batch: TransitionBatch, step: int) -> Mapping[str, float | torch.Tensor]:
        """Does one gradient step on ``batch`` (already on ``self.device``).

        Args:
            batch: The batch.
            step: 0-based index of this gradient step across the whole run (resume
                included); use it for delayed/target updates and schedules.

        Returns:
            Scalar metrics to log, e.g. ``{"loss": loss.detach()}``: 0-dim tensors (left
            on the device: the trainer reads them back only when it logs, evaluates or
            checkpoints, so a GPU step never waits for the host) or floats. The trainer
            rejects NaN/inf, naming the step.
        """

    @abstractmethod
    def actor(self) -> nn.Module:
        """The deployable actor (raw flat obs -> action in [-1, 1]) to save as a policy."""

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Every module with state to checkpoint, by a stable name (targets included)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimizer, by a stable name."""

    # --- optional hooks ------------------------------------------------------------

    def config_dict(self) -> dict[str, Any]:
        """The algorithm's config as a JSON-able dict (checked on resume)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """JSON-able state not held in modules/optimizers (counters, schedules)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restores ``extra_state()``."""

    def on_train_start(self, num_steps: int) -> None:  # noqa: B027 (optional hook)
        """Called once before the first step of ``OfflineTrainer.train`` (also on resume)."""

    # --- provided ------------------------------------------------------------------

    def to(self, device: str | torch.device) -> OfflineAlgorithm:
        """Moves every module to ``device`` (before the first update or after loading)."""
        self.device = torch.device(device)
        for module in self.modules().values():
            module.to(self.device)
        return self

    def train_mode(self, mode: bool = True) -> None:
        """Puts every module in train (``True``) or eval mode."""
        for module in self.modules().values():
            module.train(mode)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on this algorithm's device when mixed precision is on."""
        if not self.mixed_precision:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def state_dict(self) -> AlgorithmState:
        """Everything needed to continue training exactly, as tensors + JSON."""
        tensors: dict[str, torch.Tensor] = {}
        for mod_name, module in self.modules().items():
            for key, value in module.state_dict().items():
                # Clone: safetensors refuses tensors that share storage (tied weights).
                tensors[f"module.{mod_name}.{key}"] = value.detach().cpu().contiguous().clone()
        optim_meta: dict[str, Any] = {}
        for opt_name, optimizer in self.optimizers().items():
            sd = optimizer.state_dict()
            scalars: dict[str, dict[str, Any]] = {}
            for idx, param_state in sd["state"].items():
                for key, value in param_state.items():
                    if torch.is_tensor(value):
                        tensors[f"optim.{opt_name}.{idx}.{key}"] = (
                            value.detach().cpu().contiguous().clone()
                        )
                    else:
                        scalars.setdefault(str(idx), {})[key] = value
            optim_meta[opt_name] = {"param_groups": sd["param_groups"], "scalars": scalars}
        metadata = {
            "algorithm": self.name,
            "optimizers": optim_meta,
            "extra": self.extra_state(),
        }
        return AlgorithmState(tensors, metadata)

    def load_state_dict(self, state: AlgorithmState) -> None:
        """Restores ``state_dict()`` output (strict: names and shapes must match).

        Raises:
            ValueError: The state is for another algorithm or its tensors do not match.
        """
        tensors, metadata = state
        if metadata.get("algorithm") != self.name:
            raise ValueError(
                f"state is for algorithm {metadata.get('algorithm')!r}, not {self.name!r}"
            )
        for mod_name, module in self.modules().items():
            prefix = f"module.{mod_name}."
            sub = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(sub, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"checkpoint does not match module {mod_name!r}: {exc}") from exc
        for opt_name, optimizer in self.optimizers().items():
            meta = metadata["optimizers"].get(opt_name)
            if meta is None:
                raise ValueError(f"checkpoint has no state for optimizer {opt_name!r}")
            prefix = f"optim.{opt_name}."
            per_param: dict[int, dict[str, Any]] = defaultdict(dict)
            for key, value in tensors.items():
                if key.startswith(prefix):
                    idx, field_name = key[len(prefix) :].split(".", 1)
                    per_param[int(idx)][field_name] = value
            for idx, fields in meta["scalars"].items():
                per_param[int(idx)].update(fields)
            optimizer.load_state_dict(
                {"state": dict(per_param), "param_groups": meta["param_groups"]}
            )
            # The implementation (fused or not) is this code's choice, not the checkpoint's:
            # a run checkpointed before ``adam()`` was fused resumes fused.
            for group in optimizer.param_groups:
                for flag in ("fused", "foreach"):
                    if flag in optimizer.defaults:
                        group[flag] = optimizer.defaults[flag]
        self.load_extra_state(metadata.get("extra", {}))


def adam(params: Any, lr: float, *, weight_decay: float | None = None) -> torch.optim.Optimizer:
    """Adam, or AdamW with ``weight_decay``, as every learner here builds it: PyTorch's
    fused implementation, which updates all parameters in one kernel (on CUDA, and in one
    vectorized loop on the CPU) rather than a few small kernels per parameter tensor. The
    2x256 networks' updates are bound by kernel launches on a GPU, so this matters there.
    Same algorithm and hyperparameters as ``torch.optim.Adam``'s default implementation,
    equal to float rounding."""
    if weight_decay is None:
        return torch.optim.Adam(params, lr=lr, fused=True)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
