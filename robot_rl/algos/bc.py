"""Behaviour cloning: regress the demonstrator's actions from observations (MSE)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.algos.algorithm import OfflineAlgorithm, adam
from robot_rl.config.algos import BCConfig
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.network import DeterministicActor
from robot_rl.policies.normalization import Normalizer, normalizer_for


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
