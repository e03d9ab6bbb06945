"""Behaviour cloning: regress the demonstrator's actions from observations (MSE)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.algos.trainer import OfflineAlgorithm, adam
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.network import ACTIVATIONS, DeterministicActor
from robot_rl.policies.normalization import Normalizer, normalizer_for


@dataclass
class BCConfig:
    """Behaviour-cloning hyper-parameters.

    Attributes:
        hidden_sizes: Widths of the actor's hidden layers (units per layer).
        activation: Hidden activation, a key of ``policies.network.ACTIVATIONS``.
        layer_norm: LayerNorm after each hidden layer.
        lr: Adam(W) learning rate, per gradient step.
        batch_size: Transitions per gradient step. BC does not sample; whoever builds
            the batch source (the CLI) reads it from here.
        weight_decay: Decoupled (AdamW) weight decay per step, as a fraction of the
            weights times ``lr``; 0 disables it.
        max_grad_norm: Clip the global L2 gradient norm to this before each step;
            ``None`` disables clipping.
    """

    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    lr: float = 3e-4
    batch_size: int = 256
    weight_decay: float = 0.0
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"BCConfig.activation {self.activation!r} unknown; "
                f"expected one of {sorted(ACTIVATIONS)}"
            )
        if self.lr <= 0 or self.batch_size < 1 or self.weight_decay < 0:
            raise ValueError(
                "BCConfig needs lr > 0, batch_size >= 1 and weight_decay >= 0; got "
                f"lr={self.lr}, batch_size={self.batch_size}, weight_decay={self.weight_decay}"
            )
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(
                f"BCConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm}"
            )


class BC(OfflineAlgorithm):
    """Behaviour cloning with a tanh-squashed deterministic actor and an MSE loss.

    Supervised learning of the demonstrator's action given the observation, the oldest
    form of learning from demonstration: Pomerleau, "ALVINN: An Autonomous Land Vehicle
    in a Neural Network", NeurIPS 1989; Bain & Sammut, "A Framework for Behavioural
    Cloning", Machine Intelligence 15, 1995. It ignores rewards, so it is only as good
    as the data it copies; it is also the baseline and the warm start of the offline RL
    algorithms here (TD3+BC adds exactly this loss to its actor objective).

    Args:
        obs_dim: Flat observation dims.
        action_dim: Action dims (actions in [-1, 1]).
        config: Hyper-parameters; defaults to ``BCConfig()``.
        normalizer: Observation normalizer from the dataset's stats; identity if None.
    """

    name: ClassVar[str] = "bc"
    uses_rewards: ClassVar[bool] = False

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: BCConfig | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        super().__init__()
        self.config = config or BCConfig()
        normalizer = normalizer_for("BC", obs_dim, normalizer)
        self.policy = DeterministicActor(
            normalizer,
            action_dim,
            hidden_sizes=self.config.hidden_sizes,
            activation=self.config.activation,
            layer_norm=self.config.layer_norm,
        )
        # Normalizer buffers are not parameters, so the optimizer never touches them.
        self.optimizer = adam(
            self.policy.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )

    def update(self, batch: TransitionBatch, step: int) -> dict[str, torch.Tensor]:
        """One gradient step of ``mean((pi(s) - a)^2)`` over the batch."""
        with self.autocast():
            pred_action = self.policy(batch.obs)
        # Loss in float32 even under bf16 autocast, for a precise loss and gradient.
        loss = F.mse_loss(pred_action.float(), batch.action)

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics = {"loss": loss.detach()}
        if self.config.max_grad_norm is not None:
            grad_norm = nn.utils.clip_grad_norm_(
                self.policy.parameters(), self.config.max_grad_norm
            )
            metrics["grad_norm"] = grad_norm
        self.optimizer.step()
        return metrics

    def actor(self) -> nn.Module:
        return self.policy

    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.policy}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.optimizer}

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
