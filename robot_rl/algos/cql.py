"""CQL: conservative Q-learning on a SAC backbone (Kumar et al., 2020), with the Cal-QL
calibration (Nakamoto et al., 2023) as an option."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from robot_rl.algos.algorithm import OfflineAlgorithm, adam
from robot_rl.config.algos import CQLConfig
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.network import (
    GaussianActor,
    QEnsemble,
    network_kwargs,
    soft_update,
)
from robot_rl.policies.normalization import Normalizer, normalizer_for


class LogTemperature(nn.Module):
    """A learned scalar ``log alpha`` (SAC's entropy temperature), as a module so it is
    checkpointed and moved like every other network."""

    def __init__(self, init_value: float) -> None:
        super().__init__()
        self.log_value = nn.Parameter(torch.tensor(math.log(init_value)))

    def forward(self) -> torch.Tensor:
        return self.log_value


class CQL(OfflineAlgorithm):
    """Conservative Q-learning (CQL(H)) with a SAC actor; Cal-QL when ``calibrated``.

    Kumar, Zhou, Tucker & Levine, "Conservative Q-Learning for Offline Reinforcement
    Learning", NeurIPS 2020 (arXiv:2006.04779). Twin critics are trained on the TD error
    plus ``cql_alpha * (logsumexp_a Q(s, a) - Q(s, a_data))``, the log-sum-exp estimated by
    importance sampling over uniform actions and actions from pi(.|s) and pi(.|s'), which
    pushes down Q off the data and up on it. The actor is SAC's (Haarnoja et al. 2018): a
    tanh-Gaussian maximizing ``min Q - alpha log pi`` with the entropy temperature tuned
    to a target entropy.

    Cal-QL (Nakamoto et al., "Cal-QL: Calibrated Offline RL Pre-Training for Efficient
    Online Fine-Tuning", NeurIPS 2023, arXiv:2303.05479): inside the regularizer, the
    policy actions' Q-values are replaced by ``max(Q, G)`` with ``G`` the Monte-Carlo
    return-to-go of the transition's state under the data's behaviour, so Q is never
    pushed below the behaviour's value. The batch must then carry ``mc_return``:
    ``(B,)`` float32, ``G_t = sum_{k>=t} gamma^(k-t) r_k`` to the end of the episode, with
    ``gamma`` = ``config.discount`` (any NamedTuple with TransitionBatch's fields plus
    ``mc_return`` works; the trainer moves and NaN-checks it like the other fields).

    The saved policy is the actor's deterministic ``tanh(mean)``.

    Args:
        obs_dim: Flat observation dims.
        action_dim: Action dims (actions in [-1, 1]).
        config: Hyper-parameters; defaults to ``CQLConfig()``.
        normalizer: Observation normalizer from the dataset's stats; identity if None.
    """

    name: ClassVar[str] = "cql"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: CQLConfig | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        super().__init__()
        self.config = cfg = config or CQLConfig()
        normalizer = normalizer_for("CQL", obs_dim, normalizer)
        net = network_kwargs(cfg)
        self.action_dim = int(action_dim)
        self.policy = GaussianActor(normalizer, action_dim, state_dependent_std=True, **net)
        self.critic = QEnsemble(obs_dim, action_dim, n=2, **network_kwargs(cfg, critic=True))
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = LogTemperature(cfg.init_entropy_alpha)
        self.target_entropy = (
            float(cfg.target_entropy) if cfg.target_entropy is not None else -float(action_dim)
        )
        self.actor_optimizer = adam(self.policy.parameters(), lr=cfg.actor_lr)
        self.critic_optimizer = adam(self.critic.parameters(), lr=cfg.lr)
        self.alpha_optimizer = adam(
            self.log_alpha.parameters(),
            lr=cfg.entropy_lr if cfg.entropy_lr is not None else cfg.actor_lr,
        )
        # log density of the uniform distribution on [-1, 1]^action_dim
        self._uniform_log_density = -self.action_dim * math.log(2.0)

    def update(self, batch: TransitionBatch, step: int) -> dict[str, torch.Tensor]:
        """One actor + temperature step, then one critic step and a target update."""
        cfg = self.config
        mc_return = getattr(batch, "mc_return", None)
        if cfg.calibrated and mc_return is None:
            raise ValueError(
                f"CQL with calibrated=True (Cal-QL) needs a Monte-Carlo return-to-go per "
                f"transition, but the {type(batch).__name__} has no field 'mc_return' "
                f"(fields: {list(getattr(batch, '_fields', []))}); use a batch source that "
                "adds mc_return (shape (B,), discounted with this config's discount), or "
                "set calibrated=False for plain CQL"
            )
        b, n, a_dim = batch.action.shape[0], cfg.n_action_samples, self.action_dim
        normalizer = self.policy.normalizer
        alpha = self.log_alpha().exp().detach()

        with self.autocast():
            obs = normalizer(batch.obs)
            next_obs = normalizer(batch.next_obs)
            with torch.no_grad():
                # n policy actions at s and at s' in one forward pass; the first one at s'
                # doubles as the TD backup's next action.
                both = torch.cat([obs, next_obs]).unsqueeze(1).expand(-1, n, -1)
                sampled, sampled_logp = self.policy.sample(both.reshape(2 * b * n, -1))
                sampled = sampled.view(2, b, n, a_dim)
                sampled_logp = sampled_logp.view(2, b, n)
                next_q = self.critic_target(next_obs, sampled[1, :, 0]).float().amin(0)
                if cfg.backup_entropy:
                    next_q = next_q - alpha * sampled_logp[1, :, 0]
                target = batch.reward + cfg.discount * (1.0 - batch.terminated) * next_q

            # Actor and temperature (SAC), against the current critics; during the BC
            # warm-up the actor fits the data's actions instead.
            action_pi, logp_pi = self.policy.sample(obs)
            if step < cfg.bc_warmup_steps:
                objective = self.policy.log_prob(obs, batch.action)
            else:
                objective = self.critic(obs, action_pi).float().amin(0)
        actor_loss = (alpha * logp_pi - objective).mean()
        alpha_loss = -(self.log_alpha() * (logp_pi.detach() + self.target_entropy)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        # Critics: TD error + conservative regularizer, all Q-values in one forward pass.
        random_actions = torch.rand(b, n, a_dim, device=obs.device) * 2.0 - 1.0
        ood_actions = torch.cat([random_actions, sampled[0], sampled[1]], dim=1)  # (b, 3n, A)
        with self.autocast():
            obs_all = torch.cat(
                [obs, obs.unsqueeze(1).expand(-1, 3 * n, -1).reshape(b * 3 * n, -1)]
            )
            act_all = torch.cat([batch.action, ood_actions.reshape(b * 3 * n, a_dim)])
            q_all = self.critic(obs_all, act_all).float()
        q_data = q_all[:, :b]
        q_rand, q_cur, q_next = q_all[:, b:].view(2, b, 3 * n).split(n, dim=2)
        # How the critics rate the policy's own actions against the data's (before any
        # Cal-QL bound): above 0 by more than a step's reward, the policy is overrated.
        q_policy_gap = (q_cur.detach().amin(0).mean(1) - q_data.detach().amin(0)).mean()
        if cfg.calibrated:
            bound = mc_return.view(1, b, 1)
            bound_rate = (q_cur < bound).float().mean()
            q_cur = torch.maximum(q_cur, bound)
            q_next = torch.maximum(q_next, bound)
        if cfg.importance_sample:
            # Importance-sampled log-sum-exp (CQL(H)): subtract each proposal's log density.
            ood = torch.cat(
                [
                    q_rand - self._uniform_log_density,
                    q_cur - sampled_logp[0],
                    q_next - sampled_logp[1],
                ],
                dim=2,
            )
        else:
            ood = torch.cat([q_rand, q_data.unsqueeze(2), q_cur, q_next], dim=2)
        temp = cfg.cql_temperature
        cql_gap = (torch.logsumexp(ood / temp, dim=2) * temp - q_data).mean(1)  # (2,)
        td_loss = (q_data - target).pow(2).mean(1).sum()
        critic_loss = td_loss + cfg.cql_alpha * cql_gap.sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.critic_target, self.critic, cfg.tau)

        keys = [
            "critic_loss",
            "td_loss",
            "cql_gap",
            "actor_loss",
            "alpha",
            "entropy",
            "q_mean",
            "q_policy_minus_data",
        ]
        values = [
            critic_loss.detach(),
            td_loss.detach(),
            cql_gap.detach().mean(),
            actor_loss.detach(),
            alpha,
            -logp_pi.detach().mean(),
            q_data.detach().mean(),
            q_policy_gap,
        ]
        if cfg.calibrated:
            keys.append("bound_rate")
            values.append(bound_rate)
        return dict(zip(keys, values, strict=True))

    def actor(self) -> nn.Module:
        """The deterministic policy ``tanh(mean)`` of the tanh-Gaussian actor."""
        return self.policy.deterministic()

    def modules(self) -> dict[str, nn.Module]:
        return {
            "actor": self.policy,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "log_alpha": self.log_alpha,
        }

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "actor": self.actor_optimizer,
            "critic": self.critic_optimizer,
            "log_alpha": self.alpha_optimizer,
        }

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)
