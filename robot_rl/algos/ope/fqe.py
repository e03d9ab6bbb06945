"""Fitted Q Evaluation: the value of a fixed target policy from logged transitions.

FQE regresses ``Q(s, a)`` onto ``r + gamma * bootstrap * E_eps Q'(s', pi(s') + sigma eps)``
with a slowly moving target network ``Q'``; the policy's value is the mean of
``Q(s_0, pi(s_0))`` over the logged episodes' start states, in the units of a discounted
sim return ``sum_{t<H} gamma^t r_t`` (see :mod:`robot_rl.algos.ope.data` for the horizon).
It runs in the shared :class:`~robot_rl.algos.trainer.OfflineTrainer` like every offline
algorithm; only the loss differs.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.algos.algorithm import OfflineAlgorithm, adam
from robot_rl.algos.ope.data import FQEBatch, OPEData, RowSource
from robot_rl.algos.trainer import OfflineTrainer, TrainerConfig, seed_everything
from robot_rl.policies.network import ACTIVATIONS, build_mlp, soft_update
from robot_rl.policies.normalization import Normalizer


@dataclass
class FQEConfig:
    """FQE hyper-parameters.

    Attributes:
        hidden_sizes: Widths of the Q-network's hidden layers.
        activation: A key of ``policies.network.ACTIVATIONS``.
        layer_norm: LayerNorm after each hidden layer.
        lr: Adam learning rate.
        batch_size: Transitions per gradient step.
        steps: Gradient steps per fit. Values travel one step back per target update,
            so this must be well above ``horizon / tau`` in spirit; 10k suffices for
            horizons of ~100 at the default tau.
        tau: Polyak rate of the target network per step (1.0 = copy every step).
        target_noise_samples: Noisy target actions per ``s'`` averaged in the target
            (and 8x as many per start state in the estimate) for a policy with σ > 0.
        max_grad_norm: Clip the gradient norm to this; ``None`` disables clipping.
    """

    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    lr: float = 3e-4
    batch_size: int = 256
    steps: int = 10_000
    tau: float = 0.005
    target_noise_samples: int = 4
    max_grad_norm: float | None = 10.0

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"FQEConfig.activation {self.activation!r} unknown; "
                f"expected one of {sorted(ACTIVATIONS)}"
            )
        if self.lr <= 0 or self.batch_size < 1 or self.steps < 1:
            raise ValueError(
                f"FQEConfig needs lr > 0, batch_size >= 1, steps >= 1; got lr={self.lr}, "
                f"batch_size={self.batch_size}, steps={self.steps}"
            )
        if not 0 < self.tau <= 1 or self.target_noise_samples < 1:
            raise ValueError(
                f"FQEConfig needs 0 < tau <= 1 and target_noise_samples >= 1; got "
                f"tau={self.tau}, target_noise_samples={self.target_noise_samples}"
            )


class QFunction(nn.Module):
    """``Q(s, a[, steps left])`` on raw flat observations, in units of ``value_scale``.

    Args:
        normalizer: Observation normalizer (the store's stats).
        action_dim: Action dims.
        horizon_steps: ``H``; > 0 adds ``(H - t) / H`` as an input; 0 = stationary.
        hidden_sizes, activation, layer_norm: The MLP.
    """

    def __init__(
        self,
        normalizer: Normalizer,
        action_dim: int,
        horizon_steps: int,
        hidden_sizes: tuple[int, ...],
        activation: str,
        layer_norm: bool,
    ) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.horizon_steps = int(horizon_steps)
        extra = 1 if self.horizon_steps > 0 else 0
        self.net = build_mlp(
            normalizer.dim + action_dim + extra, 1, hidden_sizes, activation, layer_norm
        )

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, steps_left: torch.Tensor
    ) -> torch.Tensor:
        parts = [self.normalizer(obs), action]
        if self.horizon_steps > 0:
            parts.append((steps_left / self.horizon_steps).unsqueeze(-1))
        return self.net(torch.cat(parts, dim=-1)).squeeze(-1)


class FQE(OfflineAlgorithm):
    """Fitted Q Evaluation of one fixed target policy.

    Le, Voloshin & Yue, "Batch Policy Learning under Constraints", ICML 2019 (FQE);
    practice as in Voloshin et al., "Empirical Study of Off-Policy Policy Evaluation for
    Reinforcement Learning", NeurIPS 2021 Datasets & Benchmarks: an MLP Q-function, a
    target network, MSE to the bootstrapped target. The target policy is fixed: its
    deterministic action at every ``s'`` comes precomputed in the batch
    (``FQEBatch.next_action``); a noisy policy's expectation over its Gaussian noise is
    a Monte-Carlo average over ``target_noise_samples`` clipped noisy actions.

    Rewards are divided by ``value_scale`` inside (Q-values of O(1) train better) and
    :meth:`value` multiplies back.

    Args:
        obs_dim: Flat observation dims.
        action_dim: Action dims.
        gamma: Discount per control step.
        horizon_steps: ``H`` (0 = infinite horizon, stationary Q).
        noise_std: The target policy's action-noise σ.
        value_scale: Typical magnitude of a return (the data's scale).
        config: Hyper-parameters.
        normalizer: Observation normalizer; identity if None.
    """

    name: ClassVar[str] = "fqe"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        gamma: float,
        horizon_steps: int = 0,
        noise_std: float = 0.0,
        value_scale: float = 1.0,
        config: FQEConfig | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= gamma <= 1 or (gamma == 1 and horizon_steps == 0):
            raise ValueError(f"FQE: gamma must be in [0, 1) (1 only with a horizon), got {gamma}")
        if value_scale <= 0:
            raise ValueError(f"FQE: value_scale must be > 0, got {value_scale}")
        self.config = config or FQEConfig()
        self.gamma = float(gamma)
        self.horizon_steps = int(horizon_steps)
        self.noise_std = float(noise_std)
        self.value_scale = float(value_scale)
        normalizer = normalizer if normalizer is not None else Normalizer.identity(obs_dim)
        c = self.config
        self.q = QFunction(
            normalizer, action_dim, horizon_steps, c.hidden_sizes, c.activation, c.layer_norm
        )
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = adam(self.q.parameters(), lr=c.lr)

    def _noisy(self, action: torch.Tensor, n: int, generator=None) -> torch.Tensor:
        """``(B, A) -> (n, B, A)`` clipped noisy actions; ``(1, B, A)`` when σ = 0."""
        if self.noise_std == 0:
            return action.unsqueeze(0)
        eps = torch.randn((n, *action.shape), device=action.device, generator=generator)
        return (action.unsqueeze(0) + self.noise_std * eps).clamp(-1.0, 1.0)

    def update(self, batch: FQEBatch, step: int) -> dict[str, torch.Tensor]:
        """One step of ``mean((Q(s, a) - y)^2)``, then a Polyak step of the target."""
        with torch.no_grad(), self.autocast():
            next_a = self._noisy(batch.next_action, self.config.target_noise_samples)
            m = next_a.shape[0]
            q_next = self.q_target(
                batch.next_obs.expand(m, *batch.next_obs.shape).reshape(
                    -1, batch.next_obs.shape[-1]
                ),
                next_a.reshape(-1, next_a.shape[-1]),
                (batch.steps_left - 1).repeat(m),
            )
            q_next = q_next.float().reshape(m, -1).mean(0)
            y = batch.reward / self.value_scale + self.gamma * batch.bootstrap * q_next
        with self.autocast():
            q = self.q(batch.obs, batch.action, batch.steps_left)
        loss = F.mse_loss(q.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.q.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        soft_update(self.q_target, self.q, self.config.tau)
        return {"loss": loss.detach(), "q_mean": q.detach().float().mean() * self.value_scale}

    @torch.no_grad()
    def value(
        self,
        obs: np.ndarray,
        mean_action: np.ndarray,
        steps_left: np.ndarray,
        *,
        n_samples: int | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """``E_eps Q(s, clip(pi(s) + σ eps), H - t)`` per row, in return units (float64)."""
        self.q.eval()
        n = n_samples or 8 * self.config.target_noise_samples
        gen = torch.Generator(device=self.device).manual_seed(seed)
        out = []
        for i in range(0, len(obs), 8192):
            o = torch.as_tensor(obs[i : i + 8192], device=self.device)
            a = self._noisy(torch.as_tensor(mean_action[i : i + 8192], device=self.device), n, gen)
            k = torch.as_tensor(steps_left[i : i + 8192], device=self.device)
            m = a.shape[0]
            q = self.q(o.repeat(m, 1), a.reshape(-1, a.shape[-1]), k.repeat(m))
            out.append(q.float().reshape(m, -1).mean(0).cpu().numpy())
        self.q.train()
        return np.concatenate(out).astype(np.float64) * self.value_scale

    def actor(self) -> nn.Module:
        raise TypeError("FQE evaluates a fixed policy and has no actor of its own to save")

    def modules(self) -> dict[str, nn.Module]:
        return {"q": self.q, "q_target": self.q_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.optimizer}

    def config_dict(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.config),
            "gamma": self.gamma,
            "horizon_steps": self.horizon_steps,
            "noise_std": self.noise_std,
            "value_scale": self.value_scale,
        }


def value_scale(data: OPEData, gamma: float) -> float:
    """A typical return magnitude: mean |r| times the effective horizon."""
    horizon = 1.0 / (1.0 - gamma) if gamma < 1 else float(data.horizon_steps)
    if data.horizon_steps > 0:
        horizon = min(horizon, float(data.horizon_steps))
    return max(float(np.mean(np.abs(data.reward))) * horizon, 1e-6)


@dataclass
class FQEFit:
    """One fitted FQE and its per-episode start-state values.

    Attributes:
        algo: The trained FQE.
        start_values: ``(n_episodes,)`` estimated value of each episode's start state.
        final_loss: Mean loss over the last logged window.
        train_s: Wall time of training, seconds.
    """

    algo: FQE
    start_values: np.ndarray
    final_loss: float
    train_s: float


def fit_fqe(
    data: OPEData,
    mean_actions: np.ndarray,
    *,
    noise_std: float,
    gamma: float,
    config: FQEConfig | None = None,
    episode_weights: np.ndarray | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> FQEFit:
    """Fits FQE for one target policy on ``data`` with the shared trainer.

    Args:
        data: The store's rows.
        mean_actions: ``(N, action_dim)`` the policy's deterministic action at every row.
        noise_std: The policy's action-noise σ.
        gamma: Discount per step.
        config: FQE hyper-parameters.
        episode_weights: Optional ``(n_episodes,)`` draw counts (bootstrap refits).
        seed: Seeds network initialization and batches.
        device: Torch device.
        progress: Show a progress bar.
    """
    config = config or FQEConfig()
    rows = np.flatnonzero(data.has_transition)
    if len(rows) == 0:
        raise ValueError(f"{data.path}: no transitions to fit FQE on")
    weights = None
    if episode_weights is not None:
        weights = np.asarray(episode_weights, np.float64)[data.episode[rows]]
    steps_left = data.steps_left()
    fields = {
        "obs": data.obs,
        "action": data.action,
        "reward": data.reward.astype(np.float32),
        "next_obs": data.obs[data.next_row],
        "next_action": mean_actions[data.next_row].astype(np.float32),
        "bootstrap": data.bootstrap,
        "steps_left": steps_left,
    }
    source = RowSource(
        fields, FQEBatch, rows, weights=weights, batch_size=config.batch_size, seed=seed
    )
    std = data.obs.std(axis=0)
    normalizer = Normalizer(data.obs.mean(axis=0), std)
    seed_everything(seed)
    algo = FQE(
        data.obs_dim,
        data.action_dim,
        gamma=gamma,
        horizon_steps=data.horizon_steps,
        noise_std=noise_std,
        value_scale=value_scale(data, gamma),
        config=config,
        normalizer=normalizer,
    )
    trainer_cfg = TrainerConfig(
        num_steps=config.steps,
        seed=seed,
        log_every=min(500, config.steps),
        device=str(device),
        progress=progress,
    )
    start = time.perf_counter()
    history = OfflineTrainer(algo, source, trainer_cfg).train()
    train_s = time.perf_counter() - start
    starts = data.episode_starts
    start_values = algo.value(data.obs[starts], mean_actions[starts], steps_left[starts], seed=seed)
    final = history.get("train/loss", [(0, float("nan"))])[-1][1]
    return FQEFit(algo, start_values, float(final), train_s)
