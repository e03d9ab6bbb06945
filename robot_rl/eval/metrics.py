"""Evaluation metrics with confidence intervals: Wilson score intervals for success rates,
percentile bootstrap intervals for means, and the per-evaluation summary built from them.

A success rate measured on a few dozen episodes is a noisy number; every figure the
evaluation reports (and the deployment gate later judges) carries its interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

# Resampled means are computed in blocks so memory stays bounded (about 8 MB of indices per
# block) however many episodes and resamples are asked for.
_BOOTSTRAP_BLOCK_ELEMENTS = 1_000_000


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson, 1927).

    Unlike the normal-approximation ("Wald") interval, it stays inside [0, 1] and does not
    collapse to a single point when every episode succeeds or every episode fails: 10 of 10
    successes at 95% gives roughly (0.72, 1.0), not (1.0, 1.0).

    Args:
        successes: Number of successful episodes, ``0 <= successes <= n``.
        n: Number of episodes.
        confidence: Two-sided confidence level, e.g. 0.95.

    Returns:
        ``(lower, upper)`` bounds of the success rate, each in [0, 1]. With ``n == 0`` nothing
        is known and the interval is ``(0.0, 1.0)``.

    Raises:
        ValueError: If the counts are negative, ``successes > n``, or ``confidence`` is not in
            (0, 1).
    """
    _check_confidence(confidence)
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(
            f"wilson_interval expects 0 <= successes <= n, got successes={successes}, n={n}"
        )
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    z2 = z * z
    p_hat = successes / n
    denom = 1.0 + z2 / n
    center = (p_hat + z2 / (2.0 * n)) / denom
    half_width = z * math.sqrt(p_hat * (1.0 - p_hat) / n + z2 / (4.0 * n * n)) / denom
    # At k == 0 or k == n the exact bound is 0 or 1; clamp away rounding error (e.g. 1+1e-17).
    lower = 0.0 if successes == 0 else max(0.0, center - half_width)
    upper = 1.0 if successes == n else min(1.0, center + half_width)
    return (lower, upper)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for the mean of ``values``.

    Draws ``n_resamples`` samples of ``len(values)`` values with replacement, takes each
    sample's mean, and returns the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles of those means (Efron & Tibshirani, 1993). The same seed gives the same
    interval.

    Args:
        values: Per-episode values (e.g. returns); must be finite.
        confidence: Two-sided confidence level, e.g. 0.95.
        n_resamples: Number of bootstrap resamples (>= 1).
        seed: Seed of the resampling generator.

    Returns:
        ``(lower, upper)``. With no values the mean is undefined and both bounds are NaN;
        with one value (or all values equal) both bounds equal that value.

    Raises:
        ValueError: If ``values`` is not one-dimensional or holds non-finite numbers, or if
            ``confidence`` / ``n_resamples`` are out of range.
    """
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"bootstrap_mean_ci expects a 1-D sequence, got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        return (math.nan, math.nan)
    if not np.all(np.isfinite(x)):
        bad = int(np.flatnonzero(~np.isfinite(x))[0])
        raise ValueError(f"bootstrap_mean_ci expects finite values; index {bad} is {x[bad]}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    block = max(1, _BOOTSTRAP_BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = 1.0 - confidence
    lower, upper = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return (float(lower), float(upper))


@dataclass(frozen=True)
class EpisodeStats:
    """Summary of one evaluation: success rate and mean return, each with its interval.

    Attributes:
        n: Number of episodes.
        n_success: Episodes counted as successful.
        success_rate: ``n_success / n`` (NaN when ``n == 0``).
        success_ci: Wilson score interval of the success rate.
        mean_return: Mean undiscounted episode return (sum of rewards; NaN when ``n == 0``).
        return_ci: Percentile bootstrap interval of the mean return.
        mean_length: Mean episode length in env steps (NaN when ``n == 0``).
        confidence: Confidence level of both intervals.
    """

    n: int
    n_success: int
    success_rate: float
    success_ci: tuple[float, float]
    mean_return: float
    return_ci: tuple[float, float]
    mean_length: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-friendly dict; NaN (undefined for n == 0) becomes ``None``."""
        return _json_safe(asdict(self))


def summarize_episodes(
    successes: Sequence[bool] | np.ndarray,
    returns: Sequence[float] | np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> EpisodeStats:
    """Builds the :class:`EpisodeStats` of a set of episodes.

    Args:
        successes: Per-episode success flags.
        returns: Per-episode undiscounted returns.
        lengths: Per-episode lengths in env steps.
        confidence: Confidence level of the success and return intervals.
        n_resamples: Bootstrap resamples for the return interval.
        seed: Seed of the bootstrap, so the same episodes always give the same summary.

    Returns:
        The summary.

    Raises:
        ValueError: If the three sequences differ in length.
    """
    s = np.asarray(successes, dtype=bool).reshape(-1)
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    ln = np.asarray(lengths, dtype=np.float64).reshape(-1)
    if not len(s) == len(r) == len(ln):
        raise ValueError(
            "summarize_episodes expects one value per episode in each sequence, got "
            f"{len(s)} successes, {len(r)} returns, {len(ln)} lengths"
        )
    n = len(s)
    k = int(s.sum())
    return EpisodeStats(
        n=n,
        n_success=k,
        success_rate=k / n if n else math.nan,
        success_ci=wilson_interval(k, n, confidence),
        mean_return=float(r.mean()) if n else math.nan,
        return_ci=bootstrap_mean_ci(r, confidence=confidence, n_resamples=n_resamples, seed=seed),
        mean_length=float(ln.mean()) if n else math.nan,
        confidence=confidence,
    )


def _json_safe(value: Any) -> Any:
    """Converts numpy scalars and tuples to plain Python and NaN/inf to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
