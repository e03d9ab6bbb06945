"""Single-env step throughput against raw MuJoCo stepping of the same model.

The ratio env/raw is the cost of the Python env layer (action mapping, differential IK,
observation and reward) on top of the physics of one control step (``nstep`` substeps).

    python benchmarks/env_step.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import mujoco
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from robot_rl.sim.env import RobotEnv


def time_env(task: str, steps: int, seed: int = 0) -> float:
    env = RobotEnv(task)
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (steps, 4))
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def time_raw(task: str, steps: int) -> float:
    env = RobotEnv(task)  # same compiled model and substeps, no env layer
    model, data = env.model, mujoco.MjData(env.model)
    data.qpos[env.scene.arm_qpos_adr] = env.start_q
    data.ctrl[env.scene.arm_actuators] = env.start_q
    mujoco.mj_forward(model, data)
    start = time.perf_counter()
    for _ in range(steps):
        mujoco.mj_step(model, data, nstep=env.n_substeps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = {}
    for task in ("reach", "push", "lift"):
        env_sps = statistics.median(time_env(task, args.steps) for _ in range(args.repeats))
        raw_sps = statistics.median(time_raw(task, args.steps) for _ in range(args.repeats))
        rows[task] = {
            "env_steps_per_s": env_sps,
            "raw_control_steps_per_s": raw_sps,
            "ratio_env_over_raw": env_sps / raw_sps,
            "physics_substeps": RobotEnv(task).n_substeps,
        }
        print(
            f"{task:6s} env {env_sps:8.0f} steps/s   raw mj_step(nstep) {raw_sps:8.0f} /s   "
            f"ratio {env_sps / raw_sps:.2f}"
        )
    write_result("env_step", {"steps": args.steps, "repeats": args.repeats, "tasks": rows})


if __name__ == "__main__":
    main()
