"""TD3+BC: TD3 with a behaviour-cloning term in the actor loss (Fujimoto & Gu, 2021)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.algos.algorithm import OfflineAlgorithm, adam
from robot_rl.config.algos import TD3BCConfig
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.network import (
    DeterministicActor,
    QEnsemble,
    network_kwargs,
    soft_update,
)
from robot_rl.policies.normalization import Normalizer, normalizer_for


class TD3BC(OfflineAlgorithm):
    """TD3+BC: twin-critic TD3 whose actor also regresses the dataset action.

    Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", NeurIPS 2021
    (arXiv:2106.06860). TD3 (Fujimoto et al., ICML 2018: clipped double Q, target policy
    smoothing, delayed actor updates) with the actor loss
    ``-lambda Q1(s, pi(s)) + (pi(s) - a)^2``, ``lambda = alpha / mean|Q1(s, pi(s))|``
    (the scale is not differentiated through). Observations are normalized by the
    dataset's stats, as in the paper.

    Metrics: ``critic_loss`` every step; ``actor_loss``, ``bc_loss`` and ``q_mean`` on
    the steps the actor is updated (logged averages are over those steps only).

    Args:
        obs_dim: Flat observation dims.
        action_dim: Action dims (actions in [-1, 1]).
        config: Hyper-parameters; defaults to ``TD3BCConfig()``.
        normalizer: Observation normalizer from the dataset's stats; identity if None.
    """

    name: ClassVar[str] = "td3bc"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: TD3BCConfig | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = config or TD3BCConfig()
        normalizer = normalizer_for("TD3BC", obs_dim, normalizer)
        net = network_kwargs(cfg)
        self.policy = DeterministicActor(normalizer, action_dim, **net)
        self.critic = QEnsemble(obs_dim, action_dim, n=2, **network_kwargs(cfg, critic=True))
        self.policy_target = copy.deepcopy(self.policy).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(
            self.policy.parameters(), lr=cfg.actor_lr if cfg.actor_lr is not None else cfg.lr
        )
        self.critic_optimizer = adam(self.critic.parameters(), lr=cfg.lr)

    def update(self, batch: TransitionBatch, step: int) -> dict[str, torch.Tensor]:
        """One critic step; on every ``policy_delay``-th step also an actor step and a
        target update."""
        cfg = self.config
        normalizer = self.policy.normalizer
        with self.autocast():
            obs = normalizer(batch.obs)
            next_obs = normalizer(batch.next_obs)
            with torch.no_grad():
                noise = (torch.randn_like(batch.action) * cfg.policy_noise).clamp(
                    -cfg.noise_clip, cfg.noise_clip
                )
                next_action = (self.policy_target.forward_normalized(next_obs) + noise).clamp(
                    -1.0, 1.0
                )
                next_q = self.critic_target(next_obs, next_action).float().amin(0)
                target = batch.reward + cfg.discount * (1.0 - batch.terminated) * next_q
            q = self.critic(obs, batch.action).float()
        # Sum of both critics' MSEs, as in the authors' code.
        critic_loss = (q - target).pow(2).mean(1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        if step % cfg.policy_delay != 0:
            return {"critic_loss": critic_loss.detach()}

        with self.autocast():
            action = self.policy.forward_normalized(obs)
            q_pi = self.critic(obs, action, member=0).float()
        action = action.float()
        lmbda = cfg.alpha / q_pi.abs().mean().detach().clamp_min(1e-6)
        bc_loss = F.mse_loss(action, batch.action)
        actor_loss = -lmbda * q_pi.mean() + bc_loss
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        soft_update(self.policy_target, self.policy, cfg.tau)
        values = [critic_loss.detach(), actor_loss.detach(), bc_loss.detach(), q_pi.detach().mean()]
        return dict(zip(("critic_loss", "actor_loss", "bc_loss", "q_mean"), values, strict=True))

    def actor(self) -> nn.Module:
        return self.policy

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.policy,
            "critic": self.critic,
            "actor_target": self.policy_target,
            "critic_target": self.critic_target,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optimizer, "critic": self.critic_optimizer}

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
