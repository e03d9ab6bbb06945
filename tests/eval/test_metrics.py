"""Wilson and bootstrap intervals, and the episode summary built from them."""

import json
import math

import numpy as np
import pytest

from robot_rl.eval.metrics import (
    EpisodeStats,
    bootstrap_mean_ci,
    summarize_episodes,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        # Reference values: Wilson (1927) score interval, z = 1.959964 (95%).
        (8, 10, (0.4902, 0.9433)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (45, 50, (0.7864, 0.9565)),
        (1, 1, (0.2065, 1.0)),
    ],
)
def test_wilson_matches_reference_values(k, n, expected):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(expected[0], abs=5e-4)
    assert hi == pytest.approx(expected[1], abs=5e-4)


def test_wilson_all_success_and_all_fail_are_not_degenerate():
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0 and 0.8 < lo < 1.0
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.0 < hi < 0.2


def test_wilson_zero_episodes_is_the_whole_range():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_higher_confidence_is_wider_and_contains_the_estimate():
    lo95, hi95 = wilson_interval(30, 50, 0.95)
    lo99, hi99 = wilson_interval(30, 50, 0.99)
    assert lo99 < lo95 < 0.6 < hi95 < hi99


@pytest.mark.parametrize(("k", "n", "conf"), [(-1, 5, 0.95), (6, 5, 0.95), (1, 5, 1.0)])
def test_wilson_rejects_bad_input(k, n, conf):
    with pytest.raises(ValueError, match=r"wilson_interval|confidence"):
        wilson_interval(k, n, conf)


def test_bootstrap_contains_mean_and_is_reproducible():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=40)
    lo, hi = bootstrap_mean_ci(x, seed=7)
    assert lo < x.mean() < hi
    assert bootstrap_mean_ci(x, seed=7) == (lo, hi)
    assert bootstrap_mean_ci(x, seed=8) != (lo, hi)


def test_bootstrap_width_matches_theory_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(0.0, 1.0, size=25)
    large = rng.normal(0.0, 1.0, size=2500)
    w_small = np.subtract(*bootstrap_mean_ci(small, n_resamples=4000)[::-1])
    w_large = np.subtract(*bootstrap_mean_ci(large, n_resamples=4000)[::-1])
    # A 95% interval of a mean spans about 2 * 1.96 * sigma / sqrt(n).
    assert w_large == pytest.approx(2 * 1.96 / math.sqrt(2500), rel=0.15)
    assert w_large < w_small / 5


def test_bootstrap_edge_cases():
    assert all(math.isnan(v) for v in bootstrap_mean_ci([]))
    assert bootstrap_mean_ci([2.5]) == (2.5, 2.5)
    assert bootstrap_mean_ci([1.0] * 9) == (1.0, 1.0)
    with pytest.raises(ValueError, match="index 1"):
        bootstrap_mean_ci([0.0, math.nan])
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_mean_ci([1.0], n_resamples=0)


def test_summarize_episodes_counts_and_intervals():
    stats = summarize_episodes([True] * 8 + [False] * 2, [1.0] * 8 + [-1.0] * 2, [5] * 8 + [12] * 2)
    assert (stats.n, stats.n_success, stats.success_rate) == (10, 8, 0.8)
    assert stats.success_ci == wilson_interval(8, 10)
    assert stats.mean_return == pytest.approx(0.6)
    assert stats.return_ci[0] <= 0.6 <= stats.return_ci[1]
    assert stats.mean_length == pytest.approx(6.4)


def test_summarize_zero_episodes_is_strict_json():
    stats = summarize_episodes([], [], [])
    assert stats.n == 0 and math.isnan(stats.success_rate)
    d = stats.to_dict()
    assert d["success_rate"] is None and d["return_ci"] == [None, None]
    assert d["success_ci"] == [0.0, 1.0]
    json.dumps(d, allow_nan=False)  # raises if a NaN slipped through


def test_summarize_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 successes, 3 returns"):
        summarize_episodes([True, False], [1.0, 2.0, 3.0], [1, 2])


def test_episode_stats_is_frozen():
    stats = summarize_episodes([True], [1.0], [3])
    assert isinstance(stats, EpisodeStats)
    with pytest.raises(AttributeError):
        stats.n = 5  # type: ignore[misc]
