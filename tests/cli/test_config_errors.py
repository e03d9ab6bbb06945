"""Config mistakes as a user meets them on the command line: each ends the command
before anything runs, with exit status 2 and the key named."""

import dataclasses
import json

import pytest
import yaml

from robot_rl.config.algos import IQLConfig
from robot_rl.config.schema import TrainConfig
from tests.cli.test_pipeline import run_cli


@pytest.mark.slow
def test_eval_runs_on_the_warp_backend(tmp_path):
    """``sim=warp`` is honoured: the episodes run in MuJoCo Warp (its CPU device here),
    and the scripted reach expert still succeeds."""
    proc = run_cli(
        "evaluate", "policy=expert", "task=reach", "sim=warp", "eval.n_episodes=4",
        "eval.video_episodes=0", "progress=false", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["config"]["sim"]["backend"] == "warp"
    assert "success 100.0%" in proc.stdout


def test_pretrain_cfg_job_shows_the_chosen_algorithms_fields_only():
    proc = run_cli("pretrain", "algo=iql", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert list(cfg["algo"]) == [f.name for f in dataclasses.fields(IQLConfig)]
    assert list(cfg["train"]) == [f.name for f in dataclasses.fields(TrainConfig)]


@pytest.mark.parametrize(
    "args,message",
    [
        (["algo=bc", "algo.expectile=0.8"], "algo.expectile is not a setting of algo=bc"),
        (["algo.steps=10"], "algo.steps has moved to train.steps"),
        (["robot.limits_file=a.yaml"], "robot.limits_file has moved to robot.description"),
    ],
)
def test_pretrain_names_a_misplaced_algorithm_setting(args, message, tmp_path):
    proc = run_cli("pretrain", *args, "dataset.path=x", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stdout
