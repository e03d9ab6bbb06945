"""On a small reach store, FQE ranks the scripted expert above its very noisy self."""

import json

import pytest

from robot_rl.cli.ope import main
from robot_rl.teleop.make_dataset import make_dataset


@pytest.mark.slow
def test_fqe_ranks_expert_above_noisy_expert_on_reach(tmp_path):
    store = tmp_path / "reach"
    make_dataset("reach", "mixed", store, n_episodes=16, seed=0)
    out = tmp_path / "report.json"
    code = main(
        [str(store), "--expert-noise", "0,1.0", "--fqe-steps", "1000", "--fqe-hidden",
         "64,64", "--fqe-lr", "1e-3", "--fqe-tau", "0.02", "--behaviour-steps", "200",
         "--bootstrap-resamples", "200", "--device", "cpu", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert results["expert_sigma=0"]["fqe"] > results["expert_sigma=1"]["fqe"]
    # Dense reach rewards are negative distances: both values are below zero.
    assert results["expert_sigma=1"]["fqe"] < 0
