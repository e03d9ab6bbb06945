"""The one training loop every offline algorithm runs in, and the interface they implement.

An algorithm (BC, later TD3+BC, IQL, CQL/Cal-QL, FQE) is a small ``OfflineAlgorithm``
subclass: it owns its networks and optimizers and does one gradient step in ``update``.
Everything else lives here, once: seeding, device placement, mixed precision, the
NaN/inf guard, TensorBoard logging, progress display, periodic evaluation, checkpoints
and resume. As in SB3 the shared machinery sits in one place; unlike SB3's ``train()``,
extending an algorithm never means copying the loop.

Checkpoints (under ``<log_dir>/checkpoints/step_<N>/``) hold ``state.safetensors`` (every
module's ``state_dict``, optimizer tensors, RNG states) and ``trainer.json`` (step count,
algorithm name and config, optimizer hyper-parameters, the batch source's state, logged
history). Nothing is pickled. Each checkpoint is written to a hidden temp dir and renamed
into place, so a crash never leaves a half checkpoint that resume would pick up.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robot_rl.data.batch import TransitionBatch

CHECKPOINT_FORMAT = "robot_rl.offline_checkpoint"
CHECKPOINT_FORMAT_VERSION = 1

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


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.torch_cuda.{i}"] = state
    np_state = np.random.get_state()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.torch_cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def iter_checkpoints(log_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint dirs under ``<log_dir>/checkpoints``, oldest first."""
    root = Path(log_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if p.is_dir() and (p / "trainer.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.removeprefix("step_")))


def latest_checkpoint(log_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint dir under ``<log_dir>/checkpoints``, or ``None``."""
    done = iter_checkpoints(log_dir)
    return done[-1] if done else None


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
        root = self.log_dir / "checkpoints"
        final = root / f"step_{self.step:09d}"
        tmp = root / f".step_{self.step:09d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)

        algo_state = self.algo.state_dict()
        rng_tensors, rng_meta = _rng_state()
        tensors = {**{f"algo.{k}": v for k, v in algo_state.tensors.items()}, **rng_tensors}
        save_file(tensors, str(tmp / "state.safetensors"))
        source_state = (
            self.source.state_dict() if callable(getattr(self.source, "state_dict", None)) else None
        )
        meta = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "step": self.step,
            "algorithm": self.algo.name,
            "algo_config": self.algo.config_dict(),
            "algo_state": algo_state.metadata,
            "rng": rng_meta,
            "source_state": source_state,
            "history": {k: [list(e) for e in v] for k, v in self.history.items()},
        }
        (tmp / "trainer.json").write_text(json.dumps(meta))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)

        for old in iter_checkpoints(self.log_dir)[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return final

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
        ckpt = Path(checkpoint_dir)
        meta_path = ckpt / "trainer.json"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{meta_path}: unreadable checkpoint metadata ({exc})") from exc
        if (
            meta.get("format") != CHECKPOINT_FORMAT
            or meta.get("format_version") != CHECKPOINT_FORMAT_VERSION
        ):
            raise ValueError(
                f"{meta_path}: format {meta.get('format')!r} v{meta.get('format_version')!r}; "
                f"expected {CHECKPOINT_FORMAT!r} v{CHECKPOINT_FORMAT_VERSION}"
            )
        if meta["algorithm"] != self.algo.name:
            raise ValueError(
                f"{ckpt}: checkpoint is for algorithm {meta['algorithm']!r}, "
                f"not {self.algo.name!r}; use another log dir or resume=False"
            )
        # Compare through JSON so tuples and lists compare equal.
        current = json.loads(json.dumps(self.algo.config_dict()))
        if meta["algo_config"] != current:
            diff = sorted(
                k
                for k in set(current) | set(meta["algo_config"])
                if current.get(k) != meta["algo_config"].get(k)
            )
            raise ValueError(
                f"{ckpt}: algorithm config differs from the checkpoint's in {diff}; "
                "use another log dir or resume=False"
            )
        tensors = load_file(str(ckpt / "state.safetensors"))
        algo_tensors = {k[5:]: v for k, v in tensors.items() if k.startswith("algo.")}
        self.algo.load_state_dict(AlgorithmState(algo_tensors, meta["algo_state"]))
        self.algo.to(self.device)
        _set_rng_state(tensors, meta["rng"])
        if meta.get("source_state") is not None and callable(
            getattr(self.source, "load_state_dict", None)
        ):
            self.source.load_state_dict(meta["source_state"])
        self.step = int(meta["step"])
        self.history = defaultdict(list)
        for tag, entries in meta.get("history", {}).items():
            self.history[tag] = [(int(s), float(v)) for s, v in entries]
