"""IQL: implicit Q-learning with expectile regression and advantage-weighted extraction
(Kostrikov, Nair & Levine, 2022)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from robot_rl.algos.algorithm import OfflineAlgorithm, adam
from robot_rl.config.algos import IQLConfig
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.network import (
    DeterministicActor,
    GaussianActor,
    QEnsemble,
    ValueNetwork,
    network_kwargs,
    soft_update,
)
from robot_rl.policies.normalization import Normalizer, normalizer_for


class IQL(OfflineAlgorithm):
    """Implicit Q-learning: in-sample value learning, then advantage-weighted regression.

    Kostrikov, Nair & Levine, "Offline Reinforcement Learning with Implicit Q-Learning",
    ICLR 2022 (arXiv:2110.06169). Never queries Q at actions outside the data:

    * ``V`` regresses ``min_i Q_target_i(s, a)`` with the asymmetric expectile loss
      ``|tau - 1(u < 0)| u^2``;
    * twin ``Q`` regress ``r + gamma (1 - done) V(s')``;
    * the actor maximizes ``exp(beta (Q_target(s, a) - V(s)))`` (clipped) times the
      log-likelihood (or minus the squared error) of the dataset action.

    As in common PyTorch ports (CORL), the actor's advantage uses ``V`` from before this
    step's value update (the JAX original recomputes it after), saving a forward pass.

    Args:
        obs_dim: Flat observation dims.
        action_dim: Action dims (actions in [-1, 1]).
        config: Hyper-parameters; defaults to ``IQLConfig()``.
        normalizer: Observation normalizer from the dataset's stats; identity if None.
    """

    name: ClassVar[str] = "iql"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: IQLConfig | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = config or IQLConfig()
        normalizer = normalizer_for("IQL", obs_dim, normalizer)
        net = network_kwargs(cfg)
        self.policy: GaussianActor | DeterministicActor
        if cfg.actor == "gaussian":
            self.policy = GaussianActor(normalizer, action_dim, state_dependent_std=False, **net)
        else:
            self.policy = DeterministicActor(normalizer, action_dim, **net)
        self.critic = QEnsemble(obs_dim, action_dim, n=2, **network_kwargs(cfg, critic=True))
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNetwork(obs_dim, **network_kwargs(cfg, critic=True))
        self.actor_lr = cfg.actor_lr if cfg.actor_lr is not None else cfg.lr
        self.actor_optimizer = adam(self.policy.parameters(), lr=self.actor_lr)
        self.critic_optimizer = adam(self.critic.parameters(), lr=cfg.lr)
        self.value_optimizer = adam(self.value.parameters(), lr=cfg.lr)
        #: Steps of the cosine schedule (the run's num_steps); None = constant rate.
        self.schedule_steps: int | None = None

    def on_train_start(self, num_steps: int) -> None:
        if self.config.actor_lr_schedule == "cosine":
            self.schedule_steps = int(num_steps)

    def _actor_lr(self, step: int) -> float:
        if self.schedule_steps is None:
            return self.actor_lr
        progress = min(step / self.schedule_steps, 1.0)
        return self.actor_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def update(self, batch: TransitionBatch, step: int) -> dict[str, torch.Tensor]:
        """One step of the value, actor and critic losses, then a target update."""
        cfg = self.config
        normalizer = self.policy.normalizer
        with self.autocast():
            obs = normalizer(batch.obs)
            next_obs = normalizer(batch.next_obs)
            with torch.no_grad():
                target_q = self.critic_target(obs, batch.action).float().amin(0)
                next_v = self.value(next_obs).float()
                q_target = batch.reward + cfg.discount * (1.0 - batch.terminated) * next_v
            v = self.value(obs).float()

        # Value: expectile regression towards the target critics.
        diff = target_q - v
        value_loss = ((cfg.expectile - (diff < 0).float()).abs() * diff.pow(2)).mean()
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()

        # Actor: advantage-weighted regression onto the dataset actions.
        weight = torch.exp(cfg.temperature * diff.detach()).clamp_max(cfg.max_weight)
        with self.autocast():
            if isinstance(self.policy, GaussianActor):
                bc_losses = -self.policy.log_prob(obs, batch.action)
            else:
                pred = self.policy.forward_normalized(obs).float()
                bc_losses = (pred - batch.action).pow(2).sum(-1)
        actor_loss = (weight * bc_losses).mean()
        if self.schedule_steps is not None:
            for group in self.actor_optimizer.param_groups:
                group["lr"] = self._actor_lr(step)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()

        # Critics: TD regression onto r + gamma V(s').
        with self.autocast():
            q = self.critic(obs, batch.action).float()
        critic_loss = (q - q_target).pow(2).mean(1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.critic_target, self.critic, cfg.tau)

        values = [
            critic_loss.detach(),
            value_loss.detach(),
            actor_loss.detach(),
            v.detach().mean(),
            weight.mean(),
        ]
        keys = ("critic_loss", "value_loss", "actor_loss", "v_mean", "weight_mean")
        return dict(zip(keys, values, strict=True))

    def actor(self) -> nn.Module:
        """The deterministic policy ``tanh(mean)`` (the Gaussian's mean when stochastic)."""
        if isinstance(self.policy, GaussianActor):
            return self.policy.deterministic()
        return self.policy

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.policy,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "value": self.value,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "actor": self.actor_optimizer,
            "critic": self.critic_optimizer,
            "value": self.value_optimizer,
        }

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def extra_state(self) -> dict[str, Any]:
        return {"schedule_steps": self.schedule_steps}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.schedule_steps = state.get("schedule_steps")
