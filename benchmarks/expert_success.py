"""Scripted-expert success per task over seeded episodes, with 95% Wilson intervals.

python benchmarks/expert_success.py [--episodes 500] [--noise 0.0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from robot_rl.eval.runner import evaluate
from robot_rl.sim.env import RobotEnv
from robot_rl.sim.experts import make_expert


class NoisyExpert:
    """The expert with Gaussian noise on its normalized actions (the dataset recipe)."""

    def __init__(self, task: str, std: float, seed: int) -> None:
        import numpy as np

        self.expert, self.std, self.rng = make_expert(task), std, np.random.default_rng(seed)

    def reset(self) -> None:
        self.expert.reset()

    def act(self, obs):
        import numpy as np

        a = self.expert.act(obs)
        return np.clip(a + self.std * self.rng.standard_normal(a.shape), -1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tasks = {}
    for task in ("reach", "push", "lift"):
        result = evaluate(
            lambda task=task: RobotEnv(task),
            NoisyExpert(task, args.noise, args.seed),
            n_episodes=args.episodes,
            seed=args.seed,
            progress=False,
        )
        s = result.stats
        tasks[task] = {
            "success_rate": s.success_rate,
            "success_ci95": list(s.success_ci),
            "mean_length_steps": s.mean_length,
            "failed_seeds": [e.seed for e in result.episodes if not e.success],
        }
        print(
            f"{task:6s} success {s.success_rate:.1%} [{s.success_ci[0]:.1%}, "
            f"{s.success_ci[1]:.1%}] mean length {s.mean_length:.1f} steps"
        )
    write_result(
        f"expert_success_noise{args.noise}",
        {"episodes": args.episodes, "noise_std": args.noise, "tasks": tasks, "bar": 0.95},
    )


if __name__ == "__main__":
    main()
