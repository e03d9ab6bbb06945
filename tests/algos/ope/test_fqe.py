"""FQE recovers known values; the data layout it learns from handles horizons and ends."""

import numpy as np
import pytest

from robot_rl.algos.ope import (
    FQEConfig,
    FunctionTarget,
    OPEConfig,
    evaluate_policies,
    load_ope_data,
)
from robot_rl.algos.ope.fqe import fit_fqe

GAMMA, T = 0.9, 10
TRUE_VALUE = (1 - GAMMA**T) / (1 - GAMMA)  # reward 1 on each of T steps: 6.513

SMALL = FQEConfig(hidden_sizes=(64, 64), lr=1e-3, steps=1500, tau=0.05, batch_size=128)


def _zero_policy(keys=("x",)):
    return FunctionTarget(lambda x: np.zeros((len(x), 2), np.float32), list(keys))


def test_infinite_horizon_fqe_recovers_terminated_episode_value(make_store):
    # Episodes end by termination; the obs carries t/T, so a stationary Q can tell the
    # steps left.
    store = make_store("s", n_episodes=20, T=T, last="terminated")
    data = load_ope_data(store, horizon_steps=0)
    assert data.has_transition.all() and data.bootstrap.sum() == 20 * (T - 1)
    fit = fit_fqe(data, np.zeros_like(data.action), noise_std=0.0, gamma=GAMMA, config=SMALL)
    assert fit.start_values.mean() == pytest.approx(TRUE_VALUE, rel=0.05)


def test_finite_horizon_fqe_uses_steps_left_on_time_limited_episodes(make_store):
    # Episodes cut by a time limit and obs without time: only the steps-left input tells
    # Q how much reward remains. The last step (k=1) gives a transition with no bootstrap.
    store = make_store("s", n_episodes=20, T=T, last="truncated", time_in_obs=False)
    data = load_ope_data(store)
    assert data.horizon_steps == T
    assert data.has_transition.all()
    assert (data.bootstrap[data.t == T - 1] == 0).all() and (
        data.bootstrap[data.t < T - 1] == 1
    ).all()
    fit = fit_fqe(data, np.zeros_like(data.action), noise_std=0.0, gamma=GAMMA, config=SMALL)
    assert fit.start_values.mean() == pytest.approx(TRUE_VALUE, rel=0.05)
    # Stationary reading of the same data: a time-limit end gives no last transition.
    data_inf = load_ope_data(store, horizon_steps=0)
    assert data_inf.has_transition.sum() == 20 * (T - 1)


def test_horizon_shorter_than_episodes_drops_later_rows(make_store):
    store = make_store("s", n_episodes=3, T=T, last="truncated")
    data = load_ope_data(store, horizon_steps=4)
    assert data.n_rows == 12 and data.t.max() == 3
    np.testing.assert_allclose(data.discounted_returns(GAMMA), (1 - GAMMA**4) / (1 - GAMMA))


def test_evaluate_policies_fqe_estimate_and_ci(make_store):
    store = make_store("s", n_episodes=20, T=T, last="terminated")
    cfg = OPEConfig(gamma=GAMMA, horizon_steps=0, fqe=SMALL, importance_sampling=False)
    (result,) = evaluate_policies(store, {"zero": _zero_policy()}, cfg)
    assert result.fqe == pytest.approx(TRUE_VALUE, rel=0.05)
    assert result.fqe_ci_kind == "start_states"
    assert result.fqe_ci[0] <= result.fqe <= result.fqe_ci[1]
    assert result.wis is None and result.behaviour is None
    d = result.to_dict()
    assert d["name"] == "zero" and d["fqe_ci"] == list(result.fqe_ci)


def test_bootstrap_refits_give_an_interval_around_the_estimate(make_store):
    store = make_store("s", n_episodes=10, T=5, last="terminated")
    fqe = FQEConfig(hidden_sizes=(32, 32), lr=1e-3, steps=300, tau=0.1, batch_size=64)
    cfg = OPEConfig(
        gamma=GAMMA, horizon_steps=0, fqe=fqe, importance_sampling=False, bootstrap_refits=3
    )
    (result,) = evaluate_policies(store, {"zero": _zero_policy()}, cfg)
    assert result.fqe_ci_kind == "refit"
    truth = (1 - GAMMA**5) / (1 - GAMMA)
    assert result.fqe_ci[0] < result.fqe_ci[1]
    assert result.fqe_ci[0] - 0.5 < truth < result.fqe_ci[1] + 0.5


def test_noisy_target_averages_q_over_its_noise(make_store):
    # One-step problems (no bootstrap), reward -|a|^2: Q(s, a) = -|a|^2, so the
    # deterministic zero action is worth 0 and the noisy one -E|clip(0.5 eps)|^2.
    store = make_store("s", n_episodes=1, T=400, last="terminated")
    data = load_ope_data(store, horizon_steps=0)
    data.reward = -(data.action.astype(np.float64) ** 2).sum(axis=1)
    data.bootstrap[:] = 0
    cfg = FQEConfig(hidden_sizes=(64, 64), lr=3e-3, steps=1000, tau=0.1, batch_size=128)
    zeros = np.zeros_like(data.action)
    values = {}
    for sigma in (0.0, 0.5):
        fit = fit_fqe(data, zeros, noise_std=sigma, gamma=GAMMA, config=cfg)
        values[sigma] = fit.algo.value(data.obs[:100], zeros[:100], data.steps_left()[:100]).mean()
    assert values[0.0] == pytest.approx(0.0, abs=0.1)
    # E sum_d min(0.25 eps_d^2, 1) = 0.46 with the clip at 1.
    assert values[0.5] == pytest.approx(-0.46, abs=0.1)
