"""Importance-sampling estimators of a policy's value: trajectory-wise and per-decision
weighted IS, with the behaviour policy logged or estimated.

**Densities.** Logged actions are clipped to [-1, 1] (the recipes and the env clip), so
both policies are modelled as *clipped* Gaussians ``clip(mu(s) + std eps, -1, 1)``: the
density inside the box, and the Gaussian tail mass at a bound for an action that sits on
it (a censored, "Tobit" likelihood). Both ratios' terms are taken with respect to the
same measure, so the importance ratio is well defined for actions on the bounds, where
a plain Gaussian density would be arbitrary.

**Behaviour.** Logged (store key ``behaviour_logprob``, one log-density per row under the
same clipped-Gaussian convention) or estimated: a clipped Gaussian with state-dependent
mean (``tanh`` of an MLP) and log-std, fit by maximum likelihood on the store
(:class:`GaussianBehaviour`). A behaviour that is a mixture (e.g. the ``mixed`` recipe's
uniformly random actions) is only approximated by it.

**Target.** A deterministic target makes IS degenerate (every weight is 0 where the logged
action differs from the policy's). The target is therefore the clipped Gaussian around
its deterministic action with std ``max(noise_std, target_std)``: exact for a policy that
really acts with Gaussian noise σ >= target_std, and a smoothed stand-in (a different,
noisier policy) for a deterministic one. Over long horizons the weights of products of
per-step ratios collapse onto a few episodes; the effective sample size (Kish,
``(sum w)^2 / sum w^2``) reported next to every estimate says how many episodes carry it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from robot_rl.algos.algorithm import OfflineAlgorithm, adam
from robot_rl.algos.ope.data import BOUND_TOL, OPEData, RowSource, transition_fields
from robot_rl.algos.trainer import OfflineTrainer, TrainerConfig, seed_everything
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.network import build_mlp
from robot_rl.policies.normalization import Normalizer


def clipped_gaussian_log_prob(
    action: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """Log-likelihood of ``action`` under ``clip(N(mean, exp(log_std)^2), -1, 1)`` per dim,
    summed over the last dim: the density inside (-1, 1), the tail mass on a bound."""
    std = log_std.exp()
    z = (action - mean) / std
    inside = -0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    at_high = torch.special.log_ndtr((mean - 1.0) / std)
    at_low = torch.special.log_ndtr((-1.0 - mean) / std)
    lp = torch.where(
        action >= 1.0 - BOUND_TOL,
        at_high,
        torch.where(action <= -1.0 + BOUND_TOL, at_low, inside),
    )
    return lp.sum(-1)


@dataclass
class BehaviourConfig:
    """Hyper-parameters of the estimated behaviour policy.

    Attributes:
        hidden_sizes: Widths of the MLP's hidden layers.
        lr: Adam learning rate.
        batch_size: Rows per gradient step.
        steps: Gradient steps.
        log_std_min: Lower clamp of the log std (normalized action units).
        log_std_max: Upper clamp of the log std.
    """

    hidden_sizes: tuple[int, ...] = (256, 256)
    lr: float = 1e-3
    batch_size: int = 256
    steps: int = 3000
    log_std_min: float = -5.0
    log_std_max: float = 1.0

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        if self.lr <= 0 or self.batch_size < 1 or self.steps < 1:
            raise ValueError(
                f"BehaviourConfig needs lr > 0, batch_size >= 1, steps >= 1; got "
                f"{self.lr}, {self.batch_size}, {self.steps}"
            )
        if not self.log_std_min < self.log_std_max:
            raise ValueError("BehaviourConfig: log_std_min must be < log_std_max")


class GaussianBehaviour(OfflineAlgorithm):
    """Maximum-likelihood clipped-Gaussian behaviour cloning: ``mu(s) = tanh(f(s))``,
    state-dependent ``log_std(s)``, likelihood as :func:`clipped_gaussian_log_prob`.

    The estimated behaviour policy of importance sampling (Hanna, Niekum & Stone,
    "Importance Sampling Policy Evaluation with an Estimated Behavior Policy", ICML 2019,
    show an estimated behaviour can even lower the estimator's error).
    """

    name: ClassVar[str] = "behaviour_gaussian"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: BehaviourConfig | None = None,
        normalizer: Normalizer | None = None,
    ) -> None:
        super().__init__()
        self.config = config or BehaviourConfig()
        self.action_dim = int(action_dim)
        self.normalizer = normalizer if normalizer is not None else Normalizer.identity(obs_dim)
        self.net = nn.Sequential(
            self.normalizer, build_mlp(obs_dim, 2 * action_dim, self.config.hidden_sizes)
        )
        self.optimizer = adam(self.net.parameters(), lr=self.config.lr)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)`` for raw flat observations."""
        out = self.net(obs).float()
        mean, log_std = out[..., : self.action_dim], out[..., self.action_dim :]
        return torch.tanh(mean), log_std.clamp(self.config.log_std_min, self.config.log_std_max)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.distribution(obs)
        return clipped_gaussian_log_prob(action, mean, log_std)

    def update(self, batch: TransitionBatch, step: int) -> dict[str, torch.Tensor]:
        with self.autocast():
            nll = -self.log_prob(batch.obs, batch.action).mean()
        self.optimizer.zero_grad(set_to_none=True)
        nll.backward()
        self.optimizer.step()
        return {"nll": nll.detach()}

    def actor(self) -> nn.Module:
        raise TypeError("the estimated behaviour policy is not saved as a policy artifact")

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.optimizer}

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)


def fit_behaviour(
    data: OPEData,
    config: BehaviourConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Fits :class:`GaussianBehaviour` on every row; returns the log-likelihood of each
    logged action under it, ``(N,)`` float64."""
    config = config or BehaviourConfig()
    source = RowSource(
        transition_fields(data),
        TransitionBatch,
        np.arange(data.n_rows),
        batch_size=config.batch_size,
        seed=seed,
    )
    seed_everything(seed)
    normalizer = Normalizer(data.obs.mean(axis=0), data.obs.std(axis=0))
    algo = GaussianBehaviour(data.obs_dim, data.action_dim, config, normalizer)
    cfg = TrainerConfig(
        num_steps=config.steps,
        seed=seed,
        log_every=min(500, config.steps),
        device=str(device),
        progress=progress,
    )
    OfflineTrainer(algo, source, cfg).train()
    algo.train_mode(False)
    out = []
    with torch.no_grad():
        for i in range(0, data.n_rows, 65_536):
            o = torch.as_tensor(data.obs[i : i + 65_536], device=algo.device)
            a = torch.as_tensor(data.action[i : i + 65_536], device=algo.device)
            out.append(algo.log_prob(o, a).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def target_log_prob(action: np.ndarray, mean_action: np.ndarray, std: float) -> np.ndarray:
    """Log-likelihood ``(N,)`` of logged actions under ``clip(N(mean_action, std^2))``."""
    a = torch.as_tensor(action, dtype=torch.float64)
    m = torch.as_tensor(mean_action, dtype=torch.float64)
    log_std = torch.full_like(m, math.log(std))
    return clipped_gaussian_log_prob(a, m, log_std).numpy()


@dataclass
class ISEstimate:
    """Importance-sampling estimates of one policy's value.

    Attributes:
        wis: Trajectory-wise weighted IS, ``sum_i w_i G_i / sum_i w_i``.
        pdwis: Per-decision weighted IS, ``sum_t gamma^t sum_i w_it r_it / sum_i w_it``.
        ess: Kish effective sample size of the trajectory weights (1..n_episodes).
        wis_bootstrap: Bootstrap replicates of ``wis`` (episodes resampled).
        pdwis_bootstrap: Bootstrap replicates of ``pdwis``.
    """

    wis: float
    pdwis: float
    ess: float
    wis_bootstrap: np.ndarray
    pdwis_bootstrap: np.ndarray


def is_estimates(
    reward: np.ndarray,
    episode: np.ndarray,
    t: np.ndarray,
    log_ratio: np.ndarray,
    gamma: float,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> ISEstimate:
    """WIS and per-decision WIS from per-row rewards and log importance ratios.

    Rows are grouped by ``episode`` (0..n-1) and ordered by ``t``. After an episode ends
    its reward is 0 and its weight stays at its last value (an absorbing state), so
    episodes of different lengths share one per-decision normalization.

    Args:
        reward: ``(N,)`` rewards.
        episode: ``(N,)`` episode index of each row, 0..n-1.
        t: ``(N,)`` time step of each row.
        log_ratio: ``(N,)`` ``log pi_e(a|s) - log pi_b(a|s)`` per row.
        gamma: Discount.
        n_resamples: Bootstrap replicates (episodes resampled with replacement).
        seed: Seed of the bootstrap.
    """
    n = int(episode.max()) + 1
    horizon = int(t.max()) + 1
    # (n, horizon) grids: rewards (0 past the end) and cumulative log-weights (held).
    r = np.zeros((n, horizon))
    lr = np.zeros((n, horizon))
    r[episode, t] = reward
    lr[episode, t] = log_ratio
    cum = np.cumsum(lr, axis=1)
    # Normalizing per t cancels in every ratio below and keeps exp() finite.
    w_t = np.exp(cum - cum.max(axis=0, keepdims=True))
    disc = gamma ** np.arange(horizon)
    returns = (r * disc).sum(axis=1)
    w = np.exp(cum[:, -1] - cum[:, -1].max())
    wis = float((w * returns).sum() / w.sum())
    pd_num, pd_den = w_t * r, w_t
    pdwis = float((disc * pd_num.sum(0) / pd_den.sum(0)).sum())
    ess = float(w.sum() ** 2 / (w**2).sum())

    # A resample without any episode of non-negligible weight has 0/0 = NaN replicates;
    # callers take nan-quantiles.
    rng = np.random.default_rng(seed)
    wis_b = np.empty(n_resamples)
    pd_b = np.empty(n_resamples)
    block = max(1, 2_000_000 // max(n, horizon))
    with np.errstate(invalid="ignore", divide="ignore"):
        for lo in range(0, n_resamples, block):
            hi = min(lo + block, n_resamples)
            idx = rng.integers(0, n, size=(hi - lo, n))
            counts = np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)
            wis_b[lo:hi] = (counts @ (w * returns)) / (counts @ w)
            pd_b[lo:hi] = ((counts @ pd_num) / (counts @ pd_den) * disc).sum(axis=1)
    return ISEstimate(wis, pdwis, ess, wis_b, pd_b)
