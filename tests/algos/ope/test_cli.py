"""robot-rl-ope end to end on tiny stores: table, JSON report, Spearman, clear errors."""

import json

import numpy as np
import pytest
import torch

from robot_rl.algos.ope.evaluate import spearman
from robot_rl.cli.ope import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.policies.artifact import PolicyManifest, save_policy
from robot_rl.policies.network import DeterministicActor
from robot_rl.policies.normalization import Normalizer

FAST = ["--fqe-steps", "30", "--fqe-hidden", "16", "--behaviour-steps", "20",
        "--bootstrap-resamples", "100", "--device", "cpu"]  # fmt: skip


def _policy(path, obs_key="x", seed=0, **manifest_kw):
    torch.manual_seed(seed)
    actor = DeterministicActor(Normalizer.identity(2), 2, hidden_sizes=(8,))
    manifest = PolicyManifest(
        algorithm="bc", obs_keys=[obs_key], obs_shapes={obs_key: [2]}, action_dim=2, **manifest_kw
    )
    save_policy(path, actor, manifest)
    return path


def test_cli_reports_estimates_json_and_spearman(make_store, tmp_path, capsys):
    make_store("store", 8, 5, last="terminated").close()
    a, b = _policy(tmp_path / "a", seed=0), _policy(tmp_path / "b", seed=1)
    truth = tmp_path / "true.json"
    truth.write_text(json.dumps({"A": 1.0, "B": 2.0}))
    out = tmp_path / "report.json"
    code = main(
        [str(tmp_path / "store"), "--policy", f"A={a}", "--policy", f"B={b}",
         "--gamma", "0.9", "--true-returns", str(truth), "--out", str(out), *FAST]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "FQE" in text and "WIS" in text and "Spearman" in text
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["results"]] == ["A", "B"]
    for r in report["results"]:
        assert r["fqe_ci"][0] <= r["fqe"] <= r["fqe_ci"][1]
        assert r["fqe_ci_kind"] == "start_states" and r["behaviour"] == "estimated"
        assert r["wis"] is not None and 1.0 <= r["ess"] <= 8.0
        assert r["horizon_steps"] == 5 and r["gamma"] == 0.9
    expected = (1 - 0.9**5) / (1 - 0.9)  # reward 1 on all 5 steps
    assert report["logged_return"]["mean"] == pytest.approx(expected)
    assert report["spearman"]["n"] == 2 and report["spearman"]["fqe"] in (-1.0, 1.0)
    thin = [r["name"] for r in report["results"] if r["ess"] < 0.1 * r["n_episodes"]]
    assert ("effective sample size under 10%" in text) == bool(thin)


def test_cli_expert_on_a_store_without_its_obs_keys(make_store, tmp_path, capsys):
    make_store("store", 2, 3).close()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "store"), "--expert-noise", "0,0.5", "--no-is", *FAST])
    assert exc.value.code == 1
    assert "missing ['ee_pos', 'object_pos', 'goal']" in capsys.readouterr().out


def test_cli_errors_name_the_problem(make_store, tmp_path, capsys):
    make_store("norew", 2, 3, reward=None).close()
    make_store("ok", 2, 3).close()
    EpisodeStore.create(
        tmp_path / "empty", obs_spec={"x": ((2,), "float32")}, action_dim=2,
        control_hz=20.0, robot="panda", task="reach",
    ).close()  # fmt: skip
    pol = _policy(tmp_path / "p")
    wrong = _policy(tmp_path / "wrong", obs_key="joint_pos")
    cases = [
        (["norew", "--policy", str(pol)], ["has no rewards", "relabel"]),
        (["empty", "--policy", str(pol)], ["no committed episodes"]),
        (["ok", "--policy", str(wrong)], ["joint_pos", "['x']"]),
        (["ok"], ["nothing to evaluate"]),
    ]
    for argv, words in cases:
        with pytest.raises(SystemExit) as exc:
            main([str(tmp_path / argv[0]), *argv[1:], *FAST])
        assert exc.value.code == 1
        text = capsys.readouterr().out.replace("\n", "")
        for word in words:
            assert word in text, (argv, text)


def test_spearman_with_ties_and_degenerate_inputs():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties get average ranks: ranks (1.5, 1.5, 3) vs (1, 2, 3).
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(np.sqrt(3) / 2)
    assert np.isnan(spearman([1, 1], [1, 2]))


def test_thin_ess_flags_policies_whose_weights_rest_on_a_few_episodes():
    from types import SimpleNamespace

    from robot_rl.cli.ope import thin_ess

    results = [
        SimpleNamespace(name="iql", ess=1.0, n_episodes=100),  # the first-run case
        SimpleNamespace(name="bc", ess=10.0, n_episodes=100),  # exactly a tenth: fine
        SimpleNamespace(name="expert", ess=None, n_episodes=100),  # no IS estimate
        SimpleNamespace(name="noisy", ess=0.7, n_episodes=8),
    ]
    assert thin_ess(results) == ["iql", "noisy"]


def test_cli_defaults_are_the_configs(capsys):
    # Unset options keep the dataclasses' defaults (no second copy of the numbers), set
    # ones reach them, and --help shows the dataclasses' values.
    from robot_rl.algos.ope import BehaviourConfig, FQEConfig, OPEConfig
    from robot_rl.cli.ope import _config, build_parser

    parser = build_parser()
    assert _config(parser.parse_args(["s"])) == OPEConfig()
    cfg = _config(parser.parse_args(["s", "--fqe-steps", "7", "--gamma", "0.5", "--seed", "3"]))
    assert (cfg.fqe.steps, cfg.gamma, cfg.seed) == (7, 0.5, 3)
    assert cfg.fqe.lr == FQEConfig().lr and cfg.behaviour == BehaviourConfig()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"FQE gradient steps per fit (default: {FQEConfig().steps})" in text
    assert f"behaviour-fit steps (default: {BehaviourConfig().steps})" in text
