"""The offline training run, whatever the algorithm (the ``train`` group)."""

from __future__ import annotations

from dataclasses import dataclass

from robot_rl.config.validation import _check

#: Settings of the training run that were ``algo.<key>`` before they moved to ``train``.
MOVED_TO_TRAIN = (
    "steps",
    "batch_size",
    "seed",
    "device",
    "mixed_precision",
    "log_every",
    "checkpoint_every",
)


@dataclass
class TrainConfig:
    """The offline training run, whatever the algorithm (``train.<field>``).

    Attributes:
        steps: Gradient steps.
        batch_size: Transitions per gradient step.
        seed: Seeds the networks, the batch sampler and python/numpy/torch.
        device: cpu, cuda, cuda:<i>, or auto (cuda when present, else cpu).
        mixed_precision: Forward passes under bf16 autocast (losses stay float32): faster
            on GPUs and on CPUs with bf16 matrix units, at bf16's ~3 significant digits
            in activations.
        log_every: Log the mean of each metric over this many steps (TensorBoard).
        checkpoint_every: Write a checkpoint every this many steps, all kept (0: only the
            last, at the end).
    """

    steps: int = 20_000
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = False
    log_every: int = 250
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        _check(self.steps > 0, "train.steps", self.steps, "> 0")
        _check(self.batch_size > 0, "train.batch_size", self.batch_size, "> 0")
        _check(
            self.device in ("auto", "cpu", "cuda")
            or (self.device.startswith("cuda:") and self.device[5:].isdigit()),
            "train.device",
            self.device,
            "auto, cpu, cuda or cuda:<i>",
        )
        _check(self.log_every > 0, "train.log_every", self.log_every, "> 0")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every", self.checkpoint_every, ">= 0")
