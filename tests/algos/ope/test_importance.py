"""Importance sampling: exact when target == behaviour, CIs narrow with data, logged
behaviour log-probabilities are used, clipped-Gaussian densities."""

import math

import numpy as np
import pytest
import torch

from robot_rl.algos.ope import (
    BehaviourConfig,
    FQEConfig,
    FunctionTarget,
    OPEConfig,
    evaluate_policies,
    is_estimates,
    load_ope_data,
)
from robot_rl.algos.ope.importance import clipped_gaussian_log_prob, fit_behaviour, target_log_prob

GAMMA = 0.95
TINY_FQE = FQEConfig(hidden_sizes=(16,), steps=20, batch_size=32)


def _episodes(n, seed=0, max_len=12):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, max_len, size=n)
    episode = np.repeat(np.arange(n), lengths)
    t = np.concatenate([np.arange(k) for k in lengths])
    reward = rng.normal(loc=1.0, size=len(t))
    return reward, episode, t


def test_wis_and_pdwis_equal_monte_carlo_when_target_is_behaviour():
    reward, episode, t = _episodes(40)
    est = is_estimates(reward, episode, t, np.zeros(len(t)), GAMMA, n_resamples=100)
    mc = np.bincount(episode, reward * GAMMA**t).mean()
    assert est.wis == pytest.approx(mc, rel=1e-12)
    assert est.pdwis == pytest.approx(mc, rel=1e-12)
    assert est.ess == pytest.approx(40.0)


def test_wis_weights_episodes_by_their_ratio():
    # Two one-step episodes, returns 0 and 1; the second is 3x as likely under the target.
    est = is_estimates(
        np.array([0.0, 1.0]), np.array([0, 1]), np.array([0, 0]), np.log([1.0, 3.0]), GAMMA
    )
    assert est.wis == pytest.approx(0.75)
    assert est.ess == pytest.approx(16 / 10)


def test_bootstrap_ci_contains_estimate_and_narrows_with_more_episodes():
    widths = []
    for n in (20, 320):
        reward, episode, t = _episodes(n, seed=n)
        log_ratio = np.random.default_rng(n).normal(scale=0.1, size=len(t))
        est = is_estimates(reward, episode, t, log_ratio, GAMMA, n_resamples=500)
        lo, hi = np.quantile(est.wis_bootstrap, [0.025, 0.975])
        assert lo <= est.wis <= hi
        lo_pd, hi_pd = np.quantile(est.pdwis_bootstrap, [0.025, 0.975])
        assert lo_pd <= est.pdwis <= hi_pd
        widths.append(hi - lo)
    assert widths[1] < 0.5 * widths[0]


def test_clipped_gaussian_puts_tail_mass_on_the_bounds():
    mean, log_std = torch.tensor([[0.5]]), torch.tensor([[math.log(0.5)]])
    at_bound = clipped_gaussian_log_prob(torch.tensor([[1.0]]), mean, log_std)
    assert float(at_bound.exp()) == pytest.approx(0.158655, abs=1e-5)  # P(z >= 1)
    # Density inside plus both point masses integrate to 1.
    grid = torch.linspace(-1 + 1e-4, 1 - 1e-4, 20001).unsqueeze(-1)
    dens = clipped_gaussian_log_prob(grid, mean.expand_as(grid), log_std.expand_as(grid)).exp()
    low = clipped_gaussian_log_prob(torch.tensor([[-1.0]]), mean, log_std)
    total = float(torch.trapezoid(dens, grid.squeeze(-1)) + at_bound.exp() + low.exp())
    assert total == pytest.approx(1.0, abs=1e-3)


def test_logged_behaviour_logprob_equal_to_target_gives_monte_carlo(make_store):
    # The store logs, per row, the log-density of its action under the target's own
    # Gaussian (mean 0, the IS target std): every ratio is 1, so WIS is the MC average.
    std = 0.3

    def logged(frames, rng):
        return target_log_prob(frames["action"], np.zeros_like(frames["action"]), std)

    store = make_store(
        "s", 12, 6, last="terminated", extra_keys={"behaviour_logprob": logged}, seed=3
    )
    data = load_ope_data(store)
    assert data.obs_keys == ["x"] and data.behaviour_logprob is not None
    zero = FunctionTarget(lambda x: np.zeros((len(x), 2), np.float32), ["x"])
    cfg = OPEConfig(gamma=GAMMA, fqe=TINY_FQE, is_target_std=std, bootstrap_resamples=200)
    (result,) = evaluate_policies(store, {"zero": zero}, cfg)
    mc = data.discounted_returns(GAMMA).mean()
    assert result.behaviour == "logged"
    assert result.wis == pytest.approx(mc, rel=1e-5)
    assert result.pdwis == pytest.approx(mc, rel=1e-5)
    assert result.ess == pytest.approx(12.0, rel=1e-5)


def test_estimated_behaviour_fits_the_logged_action_noise(make_store):
    # Actions uniform in [-1, 1]: the best Gaussian (std 1/sqrt(3)) scores -0.87 per dim,
    # the uniform itself log(1/2); the fit must get close to the former.
    store = make_store("s", 20, 20, last="terminated")
    data = load_ope_data(store)
    logp = fit_behaviour(data, BehaviourConfig(hidden_sizes=(32,), steps=300, lr=3e-3))
    assert logp.shape == (data.n_rows,)
    narrow = target_log_prob(data.action, np.zeros_like(data.action), 0.1).mean()
    assert narrow < logp.mean() < 2 * math.log(0.5) + 0.05
    assert logp.mean() > 2 * -0.87 - 0.1
