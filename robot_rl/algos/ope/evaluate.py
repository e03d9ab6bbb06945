"""Offline evaluation of one or many policies on one store: FQE and importance sampling,
each with a bootstrap confidence interval over episodes.

**Confidence intervals.** Episodes, not transitions, are the independent units, so every
bootstrap resamples episodes with replacement.

* FQE, default (``bootstrap_refits = 0``): one Q-function is fitted on all episodes and
  the *start-state average* is bootstrapped. Cheap, but it only captures the spread of
  start states; the error of the fitted Q-function itself (finite data, function
  approximation) is not in it, so the interval is too narrow. ``fqe_ci_kind`` says
  ``"start_states"``.
* FQE with ``bootstrap_refits = B``: FQE is refitted on B episode-resampled datasets and
  the interval is the percentile interval of the B estimates (``"refit"``), which does
  include the fitting error. It costs B more fits; B of 10-20 gives a rough interval.
* Importance sampling: exact episode bootstrap (each replicate re-weights the episodes;
  nothing is refitted, not even the estimated behaviour policy).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robot_rl.algos.ope.data import OPEData, load_ope_data
from robot_rl.algos.ope.fqe import FQEConfig, fit_fqe
from robot_rl.algos.ope.importance import (
    BehaviourConfig,
    fit_behaviour,
    is_estimates,
    target_log_prob,
)
from robot_rl.algos.ope.policies import TargetPolicy, as_target
from robot_rl.algos.trainer import resolve_device
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.eval.metrics import _json_safe, bootstrap_mean_ci


@dataclass
class OPEConfig:
    """Settings of :func:`evaluate_policies`.

    Attributes:
        gamma: Discount per control step, as in the sim return to compare with.
        horizon_steps: ``H``, episode length in control steps of the sim return;
            ``None`` = the store's longest episode; 0 = infinite horizon.
        fqe: FQE hyper-parameters.
        bootstrap_refits: FQE refits on resampled episodes for the FQE interval;
            0 = bootstrap the start states of one fit (see the module docstring).
        bootstrap_resamples: Resamples of the cheap bootstraps (start states, IS).
        confidence: Two-sided confidence level of every interval.
        importance_sampling: Also compute WIS/PDWIS.
        is_target_std: Smallest std of the target's Gaussian in IS (normalized units).
        behaviour: Hyper-parameters of the estimated behaviour policy.
        seed: Seeds networks, batches and bootstraps.
        device: Torch device for FQE and behaviour fitting; ``None`` = cuda if present.
        progress: Show training progress bars.
    """

    gamma: float = 0.99
    horizon_steps: int | None = None
    fqe: FQEConfig = field(default_factory=FQEConfig)
    bootstrap_refits: int = 0
    bootstrap_resamples: int = 2000
    confidence: float = 0.95
    importance_sampling: bool = True
    is_target_std: float = 0.1
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    seed: int = 0
    device: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"OPEConfig.gamma must be in [0, 1], got {self.gamma}")
        if self.bootstrap_refits < 0 or self.bootstrap_resamples < 1:
            raise ValueError(
                "OPEConfig needs bootstrap_refits >= 0 and bootstrap_resamples >= 1; got "
                f"{self.bootstrap_refits}, {self.bootstrap_resamples}"
            )
        if not 0 < self.confidence < 1:
            raise ValueError(f"OPEConfig.confidence must be in (0, 1), got {self.confidence}")
        if not self.is_target_std > 0:
            raise ValueError(f"OPEConfig.is_target_std must be > 0, got {self.is_target_std}")


@dataclass
class OPEResult:
    """Offline estimates of one policy's value ``E[sum_{t<H} gamma^t r_t]``.

    Attributes:
        name: The policy's name.
        fqe: FQE estimate.
        fqe_ci: Its interval (see ``fqe_ci_kind``).
        fqe_ci_kind: ``"start_states"`` (one fit, start states resampled: too narrow) or
            ``"refit"`` (FQE refitted on resampled episodes).
        wis: Weighted importance sampling estimate (``None`` when IS is off).
        wis_ci: Its bootstrap interval.
        pdwis: Per-decision weighted IS estimate.
        pdwis_ci: Its bootstrap interval.
        ess: Effective sample size of the IS weights, in episodes.
        behaviour: ``"logged"`` or ``"estimated"`` (the IS behaviour policy).
        is_target_std: Std of the target Gaussian used by IS.
        noise_std: The policy's own action noise σ.
        n_episodes: Episodes evaluated on.
        gamma: Discount.
        horizon_steps: ``H`` (0 = infinite).
        confidence: Level of the intervals.
        fqe_final_loss: FQE's last logged TD loss (in ``value_scale`` units squared).
        fqe_train_s: Seconds spent fitting FQE (all refits included).
    """

    name: str
    fqe: float
    fqe_ci: tuple[float, float]
    fqe_ci_kind: str
    wis: float | None
    wis_ci: tuple[float, float] | None
    pdwis: float | None
    pdwis_ci: tuple[float, float] | None
    ess: float | None
    behaviour: str | None
    is_target_std: float | None
    noise_std: float
    n_episodes: int
    gamma: float
    horizon_steps: int
    confidence: float
    fqe_final_loss: float
    fqe_train_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN becomes ``None``)."""
        return _json_safe(dataclasses.asdict(self))


def _percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (math.nan, math.nan)
    alpha = 1.0 - confidence
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def logged_returns(data: OPEData, gamma: float) -> np.ndarray:
    """Discounted return of each logged episode (the behaviour policy's on-policy MC)."""
    return data.discounted_returns(gamma)


def evaluate_policies(
    store: EpisodeStore | OPEData,
    policies: Mapping[str, Any],
    cfg: OPEConfig | None = None,
    *,
    on_result: Callable[[OPEResult], None] | None = None,
) -> list[OPEResult]:
    """Estimates the value of every policy from the store's logged episodes.

    Args:
        store: An open episode store, or data already read with ``load_ope_data``.
        policies: ``{name: policy}``; a policy is a ``LoadedPolicy`` (deterministic) or
            a :class:`~robot_rl.algos.ope.policies.TargetPolicy` (``ArtifactTarget`` with noise,
            ``ExpertTarget``, ``FunctionTarget``).
        cfg: Settings.
        on_result: Called with each result as soon as it is ready.

    Returns:
        One :class:`OPEResult` per policy, in the order given.

    Raises:
        ValueError: An empty store, a store without rewards, or a policy whose observation
            keys or action size do not match the store (both named).
    """
    cfg = cfg or OPEConfig()
    if not policies:
        raise ValueError("evaluate_policies: no policies to evaluate")
    data = (
        store
        if isinstance(store, OPEData)
        else load_ope_data(store, horizon_steps=cfg.horizon_steps)
    )
    targets: dict[str, TargetPolicy] = {name: as_target(p) for name, p in policies.items()}
    for target in targets.values():
        target.check_store(data.obs_shapes, data.action_dim, data.path)
    device = resolve_device(cfg.device)

    behaviour_logprob, behaviour = None, None
    if cfg.importance_sampling:
        if data.behaviour_logprob is not None:
            behaviour_logprob, behaviour = data.behaviour_logprob, "logged"
        else:
            behaviour_logprob = fit_behaviour(
                data, cfg.behaviour, seed=cfg.seed, device=device, progress=cfg.progress
            )
            behaviour = "estimated"

    results = []
    obs = data.obs_dict()
    for name, target in targets.items():
        mean_actions = np.asarray(target.mean_actions(obs, data.episode_starts), np.float32)
        if mean_actions.shape != data.action.shape:
            raise ValueError(
                f"policy {name!r} returned actions of shape {mean_actions.shape} for "
                f"{data.n_rows} rows; expected {data.action.shape}"
            )
        mean_actions = data.to_unit(mean_actions)  # env units -> the logged actions' [-1, 1]
        result = _evaluate_one(name, target, mean_actions, data, cfg, device, behaviour_logprob)
        result.behaviour = behaviour
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _evaluate_one(
    name: str,
    target: TargetPolicy,
    mean_actions: np.ndarray,
    data: OPEData,
    cfg: OPEConfig,
    device: torch.device,
    behaviour_logprob: np.ndarray | None,
) -> OPEResult:
    fit = fit_fqe(
        data,
        mean_actions,
        noise_std=target.noise_std,
        gamma=cfg.gamma,
        config=cfg.fqe,
        seed=cfg.seed,
        device=device,
        progress=cfg.progress,
    )
    fqe = float(fit.start_values.mean())
    train_s = fit.train_s
    if cfg.bootstrap_refits == 0:
        fqe_ci = bootstrap_mean_ci(
            fit.start_values,
            confidence=cfg.confidence,
            n_resamples=cfg.bootstrap_resamples,
            seed=cfg.seed,
        )
        kind = "start_states"
    else:
        rng = np.random.default_rng(cfg.seed)
        estimates = []
        for b in range(cfg.bootstrap_refits):
            counts = np.bincount(
                rng.integers(0, data.n_episodes, data.n_episodes), minlength=data.n_episodes
            ).astype(np.float64)
            refit = fit_fqe(
                data,
                mean_actions,
                noise_std=target.noise_std,
                gamma=cfg.gamma,
                config=cfg.fqe,
                episode_weights=counts,
                seed=cfg.seed + 1 + b,
                device=device,
                progress=cfg.progress,
            )
            train_s += refit.train_s
            estimates.append(float((counts * refit.start_values).sum() / counts.sum()))
        fqe_ci = _percentile_ci(np.asarray(estimates), cfg.confidence)
        kind = "refit"

    wis = wis_ci = pdwis = pdwis_ci = ess = target_std = None
    if behaviour_logprob is not None:
        target_std = max(target.noise_std, cfg.is_target_std)
        log_ratio = target_log_prob(data.action, mean_actions, target_std) - behaviour_logprob
        est = is_estimates(
            data.reward,
            data.episode,
            data.t,
            log_ratio,
            cfg.gamma,
            n_resamples=cfg.bootstrap_resamples,
            seed=cfg.seed,
        )
        wis, pdwis, ess = est.wis, est.pdwis, est.ess
        wis_ci = _percentile_ci(est.wis_bootstrap, cfg.confidence)
        pdwis_ci = _percentile_ci(est.pdwis_bootstrap, cfg.confidence)

    return OPEResult(
        name=name,
        fqe=fqe,
        fqe_ci=(float(fqe_ci[0]), float(fqe_ci[1])),
        fqe_ci_kind=kind,
        wis=wis,
        wis_ci=wis_ci,
        pdwis=pdwis,
        pdwis_ci=pdwis_ci,
        ess=ess,
        behaviour=None,
        is_target_std=target_std,
        noise_std=target.noise_std,
        n_episodes=data.n_episodes,
        gamma=cfg.gamma,
        horizon_steps=data.horizon_steps,
        confidence=cfg.confidence,
        fqe_final_loss=fit.final_loss,
        fqe_train_s=train_s,
    )


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); NaN when either
    side is constant or there are fewer than 2 pairs."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"spearman: need two 1-D sequences of one length, got {x.shape}, {y.shape}"
        )
    if len(x) < 2:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else math.nan
