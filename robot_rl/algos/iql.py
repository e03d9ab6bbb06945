"""IQL: implicit Q-learning with expectile regression and advantage-weighted extraction
(Kostrikov, Nair & Levine, 2022)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from robot_rl.algos.trainer import OfflineAlgorithm, adam
from robot_rl.data.batch import TransitionBatch
from robot_rl.data.sampler import REWARD_NORMALIZATIONS
from robot_rl.policies.network import (
    ACTIVATIONS,
    DeterministicActor,
    GaussianActor,
    QEnsemble,
    ValueNetwork,
    network_kwargs,
    soft_update,
)
from robot_rl.policies.normalization import Normalizer, normalizer_for

ACTOR_TYPES = ("gaussian", "deterministic")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class IQLConfig:
    """IQL hyper-parameters (defaults: the paper's for D4RL MuJoCo, plus LayerNorm).

    Attributes:
        hidden_sizes: Hidden layer widths of the actor, the value net and each critic.
        activation: Hidden activation, a key of ``policies.network.ACTIVATIONS``.
        layer_norm: LayerNorm after each hidden layer of every network, the actor's
            included. On by default, unlike the paper: on mixed push at 10k steps it
            raised success from 71% (2 seeds) to 77% (3 seeds; LayerNorm in the critics
            and value net alone gave 73%). The cost: SB3's actors have no LayerNorm, so
            such a policy cannot be exported to SB3; ``layer_norm=False`` with
            ``critic_layer_norm=True`` trains an exportable one.
        critic_layer_norm: LayerNorm after each hidden layer of the critics and the
            value net (implied by ``layer_norm``); LayerNorm in the critic is the main
            ingredient of ReBRAC (Tarasov et al., 2023).
        lr: Adam learning rate of the critics and the value net, per gradient step.
        actor_lr: Adam learning rate of the actor; ``None`` = ``lr``.
        actor_lr_schedule: "cosine" decays the actor's learning rate to 0 over the run's
            ``num_steps`` (as the paper does; the run length comes from the trainer's
            ``on_train_start``, without which the rate stays constant); or "constant".
        batch_size: Transitions per gradient step (read by whoever builds the sampler).
        discount: Discount factor gamma per control step, in (0, 1].
        tau: Polyak rate of the target critics per step, in (0, 1].
        expectile: Expectile of the value regression, in (0.5, 1): 0.5 is a mean (SARSA),
            towards 1 approaches the max over in-data actions.
        temperature: Inverse temperature beta of the advantage weights
            ``exp(beta (Q - V))``; 0 is behaviour cloning.
        max_weight: Advantage weights are clipped at this (100 in the paper).
        actor: "gaussian" (the paper's: a Gaussian around ``tanh(mean)`` with a
            state-independent log std, trained by weighted log-likelihood) or
            "deterministic" (weighted MSE to the dataset action). The saved policy is
            ``tanh(mean)`` either way.
        reward_normalization: "none", or "return_range" (the paper's for D4RL
            locomotion): the batch source scales rewards by ``1000 / (max - min episode
            return)`` of the dataset (``robot_rl.data.sampler.return_range_scale``), so
            the advantage weights do not depend on the reward's units. Off by default:
            on mixed push at 10k steps it lowered success from 69% to 52% without
            LayerNorm and from 77% to 50% with it (one seed each), the sharper weights
            following a critic that is far from converged.
    """

    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = True
    critic_layer_norm: bool = True
    lr: float = 3e-4
    actor_lr: float | None = None
    actor_lr_schedule: str = "cosine"
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7
    temperature: float = 3.0
    max_weight: float = 100.0
    actor: str = "gaussian"
    reward_normalization: str = "none"

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        bad = []
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            bad.append(f"hidden_sizes={self.hidden_sizes} (non-empty, positive)")
        if self.activation not in ACTIVATIONS:
            bad.append(f"activation={self.activation!r} (one of {sorted(ACTIVATIONS)})")
        if not self.lr > 0 or (self.actor_lr is not None and not self.actor_lr > 0):
            bad.append(f"lr={self.lr}, actor_lr={self.actor_lr} (> 0)")
        if self.actor_lr_schedule not in LR_SCHEDULES:
            bad.append(f"actor_lr_schedule={self.actor_lr_schedule!r} (one of {LR_SCHEDULES})")
        if self.batch_size < 1:
            bad.append(f"batch_size={self.batch_size} (>= 1)")
        if not 0 < self.discount <= 1:
            bad.append(f"discount={self.discount} (in (0, 1])")
        if not 0 < self.tau <= 1:
            bad.append(f"tau={self.tau} (in (0, 1])")
        if not 0.5 <= self.expectile < 1:
            bad.append(f"expectile={self.expectile} (in [0.5, 1))")
        if not self.temperature >= 0:
            bad.append(f"temperature={self.temperature} (>= 0)")
        if not self.max_weight > 0:
            bad.append(f"max_weight={self.max_weight} (> 0)")
        if self.actor not in ACTOR_TYPES:
            bad.append(f"actor={self.actor!r} (one of {ACTOR_TYPES})")
        if self.reward_normalization not in REWARD_NORMALIZATIONS:
            bad.append(
                f"reward_normalization={self.reward_normalization!r} "
                f"(one of {REWARD_NORMALIZATIONS})"
            )
        if bad:
            raise ValueError("invalid IQLConfig: " + "; ".join(bad))


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
