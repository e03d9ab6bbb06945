"""OPE on a store whose actions are in raw units: the same estimates as on its normalized
twin, for a policy that acts in those units."""

import numpy as np
import pytest

from robot_rl.algos.ope import (
    ArtifactTarget,
    FQEConfig,
    FunctionTarget,
    OPEConfig,
    evaluate_policies,
)
from robot_rl.algos.ope.data import BEHAVIOUR_LOGPROB_KEY, load_ope_data
from robot_rl.policies.artifact import load_policy
from tests.algos.ope.test_cli import _policy

LOW, HIGH = [0.0, -2.0], [10.0, 2.0]
LOG_HALF = float(np.log(5.0) + np.log(2.0))  # log-Jacobian of [-1, 1]^2 -> the bounds


def _logprob(shift: float):
    """A logged behaviour log-density per row (any finite values do), minus ``shift``."""
    return {
        BEHAVIOUR_LOGPROB_KEY: lambda frames, rng: rng.normal(-1.0, 0.3, len(frames["x"])) - shift
    }


def test_raw_unit_store_gives_the_estimates_of_its_normalized_twin(make_store, tmp_path):
    unit = make_store("unit", 12, 8, last="truncated", extra_keys=_logprob(0.0))
    raw = make_store(
        "raw", 12, 8, last="truncated", extra_keys=_logprob(LOG_HALF), action_bounds=(LOW, HIGH)
    )
    d_unit, d_raw = load_ope_data(unit), load_ope_data(raw)
    # Logged actions come back in [-1, 1], their log-densities in the same measure.
    np.testing.assert_allclose(d_raw.action, d_unit.action, rtol=0, atol=1e-6)
    np.testing.assert_allclose(d_raw.behaviour_logprob, d_unit.behaviour_logprob, atol=1e-5)
    # Twin policies: one actor, acting in [-1, 1] or in the raw bounds.
    p_unit = ArtifactTarget(load_policy(_policy(tmp_path / "pu", obs_key="x")))
    p_raw = ArtifactTarget(
        load_policy(_policy(tmp_path / "pr", obs_key="x", action_low=LOW, action_high=HIGH))
    )
    cfg = OPEConfig(
        gamma=0.9,
        fqe=FQEConfig(hidden_sizes=(16, 16), steps=60, batch_size=32),
        bootstrap_resamples=200,
        device="cpu",
    )
    (a,) = evaluate_policies(d_unit, {"p": p_unit}, cfg)
    (b,) = evaluate_policies(d_raw, {"p": p_raw}, cfg)
    assert a.behaviour == b.behaviour == "logged"
    assert b.fqe == pytest.approx(a.fqe, rel=1e-4, abs=1e-5)
    assert b.wis == pytest.approx(a.wis, rel=1e-4)
    assert b.pdwis == pytest.approx(a.pdwis, rel=1e-4)
    # Without the mapping of the policy's actions the raw twin would disagree: its raw
    # outputs read as normalized actions are mostly outside [-1, 1].
    raw_out = p_raw.mean_actions(d_raw.obs_dict(), d_raw.episode_starts)
    assert np.abs(raw_out[:, 0]).max() > 1.5


@pytest.mark.parametrize("bound", [10.0, 0.7], ids=["exact", "rounded_in_float32"])
def test_a_logged_log_density_at_a_bound_is_a_mass_and_keeps_its_value(make_store, bound):
    # Actions exactly on a bound carry a probability mass under the clipped-Gaussian
    # convention: no Jacobian for that dim. 0.7 is not a float32: the stored action sits
    # just below the float64 bound, and must still count as on it.
    low, high = [-bound, -2.0], [bound, 2.0]

    def on_bound(frames, rng):
        frames["action"][:, 0] = np.float32(bound)  # the stored (raw) actions, on the bound
        return np.full(len(frames["x"]), -2.0)

    store = make_store(
        "s", 3, 4, extra_keys={BEHAVIOUR_LOGPROB_KEY: on_bound}, action_bounds=(low, high)
    )
    data = load_ope_data(store)
    assert np.all(data.action[:, 0] >= 1.0 - 1e-6)
    inside_y = np.abs(data.action[:, 1]) < 1
    # Only dim 1 (half-width 2) is off its bounds: log 2 is added, not log(bound) + log 2.
    np.testing.assert_allclose(data.behaviour_logprob[inside_y], -2.0 + np.log(2.0), atol=1e-6)


def test_logged_log_densities_need_recorded_bounds(make_store):
    """Bounds from the data's min/max are not the bounds anything was clipped to: the
    extreme rows would be misread as masses. Refused, naming both ways out."""
    store = make_store("s", 3, 4, action_scale=5.0, extra_keys=_logprob(0.0))
    with pytest.raises(ValueError, match=r"dims \[0, 1\] come from the data's min/max"):
        load_ope_data(store)
    # Without logged densities (OPE estimates the behaviour) the store is fine.
    assert load_ope_data(make_store("t", 3, 4, action_scale=5.0)).action.max() == 1.0


def test_a_function_target_acts_in_the_store_units(make_store):
    store = make_store("s", 2, 4, action_bounds=(LOW, HIGH))
    centre = FunctionTarget(lambda x: np.tile([5.0, 0.0], (len(x), 1)), ["x"])
    cfg = OPEConfig(
        gamma=0.9, fqe=FQEConfig(hidden_sizes=(8,), steps=5, batch_size=8), device="cpu"
    )
    data = load_ope_data(store)
    raw = centre.mean_actions(data.obs_dict(), data.episode_starts)
    np.testing.assert_array_equal(data.to_unit(raw), np.zeros_like(raw))
    (result,) = evaluate_policies(data, {"centre": centre}, cfg)  # runs end to end
    assert np.isfinite(result.fqe)
