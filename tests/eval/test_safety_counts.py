"""Evaluation counts the safety filter's interventions per constraint, the same in the
sequential and the batched runner, and the report shows them."""

import numpy as np
import torch

from robot_rl.config.sim import SimConfig, TaskConfig
from robot_rl.eval.batched import evaluate_batched
from robot_rl.eval.report import RunReport, write_report
from robot_rl.eval.runner import evaluate
from robot_rl.sim.env import RobotEnv

TASK = TaskConfig(name="reach", action_mode="joint_delta", horizon_steps=30)


class BendIntoTheTable:
    """Joint 2 forward at full speed: the hand goes down into the table."""

    def reset(self):
        pass

    def act(self, obs):
        action = np.zeros(8, dtype=np.float32)
        action[1] = action[7] = 1.0
        return action


def _batch_policy(obs):
    action = torch.zeros(obs["joint_pos"].shape[0], 8)
    action[:, 1] = action[:, 7] = 1.0
    return action


def test_interventions_are_counted_alike_in_both_runners_and_reported(tmp_path):
    seq = evaluate(
        lambda: RobotEnv(task_config=TASK), BendIntoTheTable(), n_episodes=2, seed=3,
        progress=False,
    )  # fmt: skip
    bat = evaluate_batched(_batch_policy, TASK, n_episodes=2, seed=3, n_threads=1)
    for run in (seq, bat):
        summary = run.to_dict()["safety_interventions"]
        assert summary["episodes"]["table"] == 2
        assert summary["steps"]["table"] >= 2
    assert [e.safety_interventions for e in seq.episodes] == [
        e.safety_interventions for e in bat.episodes
    ]
    files = write_report(RunReport(title="t", evaluations={"bend": bat}), tmp_path)
    text = files.markdown.read_text()
    assert "### Safety filter" in text and "table" in text


def test_no_counts_without_the_filter():
    off = TaskConfig(name="reach", action_mode="joint_delta", horizon_steps=10)
    run = evaluate_batched(
        _batch_policy, off, n_episodes=1, seed=3, n_threads=1,
        sim_config=SimConfig(safety_filter=False),
    )  # fmt: skip
    assert run.to_dict()["safety_interventions"] == {"steps": {}, "episodes": {}}
