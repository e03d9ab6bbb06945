"""The one training loop every offline algorithm runs in.

An algorithm (BC, later TD3+BC, IQL, CQL/Cal-QL, FQE) is a small ``OfflineAlgorithm``
subclass (:mod:`robot_rl.algos.algorithm`): it owns its networks and optimizers and does
one gradient step in ``update``. Everything else lives here, once: seeding, device
placement, mixed precision, the NaN/inf guard, TensorBoard logging, progress display,
periodic evaluation, checkpoints and resume (the files: :mod:`robot_rl.algos.checkpoint`).
As in SB3 the shared machinery sits in one place; unlike SB3's ``train()``, extending an
algorithm never means copying the loop.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from robot_rl.algos.algorithm import AlgorithmState, OfflineAlgorithm, adam
from robot_rl.algos.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    iter_checkpoints,
    latest_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from robot_rl.data.batch import TransitionBatch

# The algorithm interface and the checkpoint helpers were defined here before they got
# modules of their own; they stay importable from here.
__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "AlgorithmState",
    "BatchSource",
    "History",
    "NonFiniteError",
    "OfflineAlgorithm",
    "OfflineTrainer",
    "TrainerConfig",
    "adam",
    "iter_checkpoints",
    "latest_checkpoint",
    "resolve_device",
    "seed_everything",
]


#: Logged history: tag (e.g. ``"train/loss"``) -> ``[(step, value), ...]``.
History = dict[str, list[tuple[int, float]]]


class NonFiniteError(ValueError):
    """A batch field or a loss contained NaN or inf."""


@runtime_checkable
class BatchSource(Protocol):
    """Anything that hands out batches, e.g. the episode store's ``TransitionSampler``.

    A source may also define ``state_dict() -> dict`` (JSON-able) and
    ``load_state_dict(dict)``; the trainer then checkpoints its state (e.g. its RNG), so
    a resumed run draws the same batches as an uninterrupted one.
    """

    def sample(self) -> TransitionBatch:
        """Returns the next batch (a NamedTuple of tensors such as ``TransitionBatch``)."""
        ...


@dataclass
class TrainerConfig:
    """Settings of the shared offline training loop.

    Attributes:
        num_steps: Total gradient steps of the run (steps done before a resume count).
        seed: Seeds python ``random``, numpy and torch at the start of a fresh run.
        log_every: Log the mean of each metric over the last ``log_every`` steps.
        eval_every: Call ``eval_fn`` every this many steps and at the end; 0 = only at
            the end (when an ``eval_fn`` is given).
        checkpoint_every: Save a checkpoint every this many steps; the last step is
            always checkpointed when there is a log dir. 0 = only at the end.
        keep_checkpoints: How many of the newest checkpoints to keep (>= 1).
        resume: Continue from the newest checkpoint in the log dir if there is one.
        device: "cpu", "cuda", "cuda:1", ...; ``None`` = cuda when present, else cpu.
        mixed_precision: Run forward passes under bf16 autocast (CPU or CUDA).
        progress: Show a progress bar (tqdm).
        check_finite: Reject batches and metrics with NaN/inf (one host sync per step).
    """

    num_steps: int = 10_000
    seed: int = 0
    log_every: int = 100
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    resume: bool = True
    device: str | None = None
    mixed_precision: bool = False
    progress: bool = True
    check_finite: bool = True

    def __post_init__(self) -> None:
        for name in ("num_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainerConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainerConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ValueError(
                f"TrainerConfig.keep_checkpoints must be >= 1, got {self.keep_checkpoints}"
            )


def seed_everything(seed: int) -> None:
    """Seeds python ``random``, numpy's global RNG and torch (CPU and CUDA).

    Call it before constructing an algorithm so network initialization is reproducible;
    the trainer calls it again at the start of a fresh run.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto" -> cuda when available, else cpu; otherwise the named device.

    Raises:
        ValueError: A CUDA device is asked for but CUDA is not available.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available here")
    return resolved


class _PendingMetrics:
    """Per-step metrics not yet read back to the host: tensors stay where the update
    left them until :meth:`drain` copies all of them in one transfer."""

    def __init__(self) -> None:
        self._steps: list[tuple[int, tuple[str, ...], torch.Tensor | list[float]]] = []

    def add(self, step: int, metrics: Mapping[str, float | torch.Tensor]) -> None:
        keys, values = tuple(metrics), list(metrics.values())
        device = next((v.device for v in values if isinstance(v, torch.Tensor)), None)
        if device is None:
            self._steps.append((step, keys, [float(v) for v in values]))
            return
        as_tensors = [
            v.detach().float().reshape(()).to(device)
            if isinstance(v, torch.Tensor)
            else torch.tensor(float(v), device=device)
            for v in values
        ]
        self._steps.append((step, keys, torch.stack(as_tensors)))

    def drain(self) -> list[tuple[int, dict[str, float]]]:
        """Every pending step's metrics as floats, oldest first; clears the queue."""
        tensors = [v for _, _, v in self._steps if isinstance(v, torch.Tensor)]
        by_device: dict[torch.device, list[float]] = {}
        for device in {t.device for t in tensors}:
            same = [t for t in tensors if t.device == device]
            by_device[device] = torch.cat(same).tolist()
        cursor = dict.fromkeys(by_device, 0)
        out = []
        for step, keys, values in self._steps:
            if isinstance(values, torch.Tensor):
                i, flat = cursor[values.device], by_device[values.device]
                floats = flat[i : i + len(keys)]
                cursor[values.device] = i + len(keys)
            else:
                floats = values
            out.append((step, dict(zip(keys, floats, strict=True))))
        self._steps.clear()
        return out


class OfflineTrainer:
    """Runs an ``OfflineAlgorithm`` on batches from a ``BatchSource`` for a fixed budget.

    Args:
        algo: The algorithm; moved to the trainer's device here.
        source: Where batches come from (``.sample()``); moved to the device per batch.
        config: Loop settings.
        log_dir: TensorBoard events go to ``<log_dir>/tensorboard``, checkpoints to
            ``<log_dir>/checkpoints``; ``None`` disables both (and resume).
        eval_fn: Optional ``eval_fn(step, algo) -> {name: value}``, called every
            ``config.eval_every`` steps and at the end, with modules in eval mode;
            values are logged as ``eval/<name>``.

    Example:
        >>> seed_everything(0)
        >>> algo = BC(obs_dim, action_dim, BCConfig(), normalizer)
        >>> trainer = OfflineTrainer(algo, sampler, TrainerConfig(num_steps=1000), "runs/bc")
        >>> history = trainer.train()
        >>> save_policy("policies/bc", algo.actor(), manifest)
    """

    def __init__(
        self,
        algo: OfflineAlgorithm,
        source: BatchSource,
        config: TrainerConfig | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        eval_fn: Callable[[int, OfflineAlgorithm], Mapping[str, float]] | None = None,
    ) -> None:
        self.algo = algo
        self.source = source
        self.config = config or TrainerConfig()
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.eval_fn = eval_fn
        self.device = resolve_device(self.config.device)
        if self.device.type == "cuda" and self.device.index is None:
            # as tensors name it ("cuda:0"), so a batch already there is seen to be there
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.algo.to(self.device)
        self.algo.mixed_precision = self.config.mixed_precision
        self.step = 0
        self.history: History = defaultdict(list)

    # --- the loop ------------------------------------------------------------------

    def train(self) -> History:
        """Runs (or resumes) training up to ``config.num_steps`` gradient steps.

        Returns:
            Logged history, tag -> ``[(step, value), ...]``, including entries restored
            from a checkpoint on resume. Steps are counted after the update (1-based).

        Raises:
            NonFiniteError: A batch field or a metric is NaN/inf (names field and step).
            ValueError: A checkpoint to resume from belongs to another algorithm/config.
        """
        cfg = self.config
        resumed_from = self._resume() if (cfg.resume and self.log_dir is not None) else None
        if resumed_from is None:
            seed_everything(cfg.seed)
        self.algo.on_train_start(cfg.num_steps)
        self.algo.train_mode(True)

        writer = self._make_writer()
        window: dict[str, list[float]] = defaultdict(list)
        pending = _PendingMetrics()
        window_start = time.perf_counter()
        from tqdm.auto import tqdm

        bar = tqdm(
            total=cfg.num_steps,
            initial=self.step,
            disable=not cfg.progress,
            desc=f"{self.algo.name or type(self.algo).__name__}",
            dynamic_ncols=True,
        )
        try:
            while self.step < cfg.num_steps:
                batch = self._next_batch()
                pending.add(self.step, self.algo.update(batch, self.step))
                self.step += 1
                bar.update(1)
                last = self.step == cfg.num_steps
                log_now = self.step % cfg.log_every == 0 or last
                eval_now = self.eval_fn is not None and (
                    last or (cfg.eval_every and self.step % cfg.eval_every == 0)
                )
                checkpoint_now = self.log_dir is not None and (
                    last or (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0)
                )
                if log_now or eval_now or checkpoint_now:
                    # Metrics come to the host here, in one copy, and are checked before
                    # anything is logged, evaluated or checkpointed.
                    for step, metrics in pending.drain():
                        self._check_metrics(metrics, step)
                        for key, value in metrics.items():
                            window[key].append(value)
                if log_now:
                    elapsed = time.perf_counter() - window_start
                    n_steps = len(next(iter(window.values()), [])) or 1
                    scalars = {f"train/{k}": float(np.mean(v)) for k, v in window.items()}
                    scalars["time/steps_per_s"] = n_steps / max(elapsed, 1e-9)
                    self._log(writer, scalars)
                    bar.set_postfix(
                        {k[6:]: f"{v:.4g}" for k, v in scalars.items() if "train/" in k}
                    )
                    window.clear()
                    window_start = time.perf_counter()
                if eval_now:
                    self._evaluate(writer)
                # After eval, so the RNG state saved matches an uninterrupted run's.
                if checkpoint_now:
                    self.save_checkpoint()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return dict(self.history)

    def _next_batch(self) -> TransitionBatch:
        batch = self.source.sample()
        fields = getattr(batch, "_fields", None)
        if fields is None:
            raise TypeError(
                f"batch source {type(self.source).__name__}.sample() returned "
                f"{type(batch).__name__}; expected a NamedTuple of tensors such as TransitionBatch"
            )
        if any(t.device != self.device for t in batch):  # a source on the device skips this
            batch = type(batch)(*(t.to(self.device, non_blocking=True) for t in batch))
        # A source that checked all its data once (the in-memory samplers) needs no
        # per-batch check: it costs a host sync and a few percent of a small update.
        if self.config.check_finite and not getattr(self.source, "checked_finite", False):
            checked = [
                (name, tensor)
                for name, tensor in zip(fields, batch, strict=True)
                if name != "reward" or self.algo.uses_rewards
            ]
            # One host sync for all fields rather than one per field.
            finite = torch.stack([torch.isfinite(t).all() for _, t in checked]).tolist()
            for (name, tensor), ok in zip(checked, finite, strict=True):
                if not ok:
                    bad = int((~torch.isfinite(tensor)).sum())
                    raise NonFiniteError(
                        f"batch field {name!r} has {bad} NaN/inf value(s) at step {self.step} "
                        f"(from {type(self.source).__name__}); check the dataset and its stats"
                    )
        return batch

    def _check_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if not self.config.check_finite:
            return
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise NonFiniteError(
                    f"{self.algo.name or type(self.algo).__name__} metric {key!r} is {value} at "
                    f"step {step}; training diverged (try a lower learning rate, gradient "
                    "clipping, or check the data); the last checkpoint is unaffected"
                )

    def _evaluate(self, writer: Any) -> None:
        self.algo.train_mode(False)
        try:
            metrics = self.eval_fn(self.step, self.algo)  # type: ignore[misc]
        finally:
            self.algo.train_mode(True)
        self._log(writer, {f"eval/{k}": float(v) for k, v in metrics.items()})

    def _log(self, writer: Any, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            self.history[tag].append((self.step, value))
            if writer is not None:
                writer.add_scalar(tag, value, self.step)

    def _make_writer(self) -> Any:
        if self.log_dir is None:
            return None
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crashed run logged past the resumed checkpoint.
        return SummaryWriter(str(self.log_dir / "tensorboard"), purge_step=self.step or None)

    # --- checkpoints ---------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Writes a checkpoint for the current step and prunes old ones.

        Returns:
            The checkpoint directory.
        """
        if self.log_dir is None:
            raise ValueError("save_checkpoint needs a log_dir")
        return write_checkpoint(
            self.log_dir,
            self.step,
            self.algo,
            self.source,
            self.history,
            self.config.keep_checkpoints,
        )

    def _resume(self) -> Path | None:
        assert self.log_dir is not None
        ckpt = latest_checkpoint(self.log_dir)
        if ckpt is None:
            return None
        self.load_checkpoint(ckpt)
        return ckpt

    def load_checkpoint(self, checkpoint_dir: str | os.PathLike[str]) -> None:
        """Restores algorithm, RNG, batch-source state, step and history from a checkpoint.

        Raises:
            ValueError: Wrong format, another algorithm, or a different algorithm config.
        """
        self.step, self.history = read_checkpoint(
            checkpoint_dir, self.algo, self.source, self.device
        )
