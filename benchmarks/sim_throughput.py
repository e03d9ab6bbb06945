"""Batched simulator (CPU backend) throughput against the raw physics limit and against
what a user would otherwise pick, all in one run.

For each world count (1, 4, 16, 64, 256, 1024; ``--quick``: 1, 16, 256) it measures env
steps/s (one env step = one control step of one world) and physics steps/s (env steps x
substeps) of, interleaved over the repetitions (median, after an untimed warm-up):

- ``batched``: ``BatchedSim.step`` with random actions (auto-resets included);
- ``batched_randomized``: the same with domain randomization (``--randomization``
  preset), when this ``BatchedSim`` accepts a ``randomization`` argument; otherwise the
  JSON says ``"off only"``;
- ``sb3_vecenv``: the same through the SB3 ``VecEnv`` adapter (numpy in and out);
- ``raw_rollout`` (the limit): ``mujoco.rollout`` on the same models, worlds and thread
  count, called once per control step with ``nstep`` = substeps, replaying the exact
  per-substep control arrays the warm-up run of ``BatchedSim`` produced, from the same
  start states, with zero initial warm-start and preallocated outputs: no env layer, no
  resets;
- ``sync_vector_env``: Gymnasium ``SyncVectorEnv`` over the single ``RobotEnv`` (same-step
  auto-reset, as ``BatchedSim``), same world count, one thread.

And at 16 envs: Gymnasium ``AsyncVectorEnv`` (one forked process per env, shared memory)
against ``BatchedSim`` at 16 worlds. Step counts shrink with the world count
(``--world-steps`` env steps per measurement, clipped to ``[--min-steps, --max-steps]``)
so the full run fits about 10 minutes on 2 cores.

    python benchmarks/sim_throughput.py [--quick] [--task reach] [--threads N]
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode
from mujoco import rollout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from robot_rl.config.schema import TaskConfig
from robot_rl.sim.batched import BatchedSim
from robot_rl.sim.env import RobotEnv
from robot_rl.sim.vec_env import SB3VecEnv

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def randomization_arg(preset: str) -> tuple[object | None, str]:
    """The ``randomization=`` argument for ``BatchedSim``, or None and why not.

    The hook for domain randomization: used only where this ``BatchedSim`` takes it.
    """
    if "randomization" not in inspect.signature(BatchedSim).parameters:
        return None, "off only: BatchedSim has no randomization argument"
    try:
        from omegaconf import OmegaConf

        from robot_rl.config.schema import RandomizationConfig

        yaml = OmegaConf.load(CONF_DIR / "randomization" / f"{preset}.yaml")
        merged = OmegaConf.merge(OmegaConf.structured(RandomizationConfig), yaml)
        return OmegaConf.to_object(merged), f"on: preset {preset}"
    except Exception as e:  # report, never abort the off measurements
        return None, f"off only: preset {preset!r} could not be built ({e})"


class _RecordingRollout:
    """Stands in for BatchedSim's Rollout during the warm-up, keeping what it was given."""

    def __init__(self, inner: rollout.Rollout) -> None:
        self.inner, self.models, self.first_state, self.controls = inner, None, None, []

    def rollout(self, models, datas, state, control, **kwargs):
        if self.first_state is None:
            self.models, self.first_state = list(models), np.array(state)
        self.controls.append(control)
        return self.inner.rollout(models, datas, state, control, **kwargs)


def timed(fn: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - start


def make_sim(n: int, task: TaskConfig, threads: int, randomization=None) -> BatchedSim:
    extra = {} if randomization is None else {"randomization": randomization}
    return BatchedSim(n, task, seed=0, n_threads=threads, **extra)


def record_controls(sim: BatchedSim, actions: np.ndarray) -> _RecordingRollout:
    """Runs ``actions`` once (the warm-up), recording every rollout call's inputs."""
    rec = _RecordingRollout(sim._rollout)
    sim._rollout = rec
    sim.reset()
    for a in actions:
        sim.step(a)
    sim._rollout = rec.inner
    return rec


def raw_stepper(rec: _RecordingRollout, n: int, threads: int, nstep: int):
    """mujoco.rollout alone, replaying the recorded controls; returns (step fn, close)."""
    model = rec.models[0]
    runner = rollout.Rollout(nthread=threads)
    datas = [mujoco.MjData(model) for _ in range(threads)]
    state = rec.first_state.copy()
    out_state = np.empty((n, nstep, state.shape[1]))
    out_sensor = np.empty((n, nstep, model.nsensordata))
    warm = np.zeros((n, model.nv))
    controls = iter(rec.controls)

    def step() -> None:
        runner.rollout(
            rec.models, datas, state, next(controls), nstep=nstep,
            initial_warmstart=warm, state=out_state, sensordata=out_sensor,
        )  # fmt: skip
        np.copyto(state, out_state[:, -1])

    def restart() -> None:
        nonlocal controls
        np.copyto(state, rec.first_state)
        controls = iter(rec.controls)

    return step, restart, runner.close


def single_env_factory(task: TaskConfig) -> Callable[[], RobotEnv]:
    return partial(RobotEnv, task_config=task)


def vector_env_stepper(vec: gym.vector.VectorEnv, actions: np.ndarray):
    it = iter(actions)
    return lambda: vec.step(next(it))


def measure_counts(args, task: TaskConfig, randomization, counts: list[int]) -> dict:
    rows = {}
    rng = np.random.default_rng(0)
    for n in counts:
        steps = int(np.clip(args.world_steps // n, args.min_steps, args.max_steps))
        actions = rng.uniform(-1, 1, (steps, n, 4))
        sim = make_sim(n, task, args.threads)
        rec = record_controls(sim, actions)
        nstep = sim.n_substeps
        raw_step, raw_restart, raw_close = raw_stepper(rec, n, args.threads, nstep)
        raw_step()  # warm the raw runner's thread pool
        sims = {"batched": sim}
        if randomization is not None:
            sims["batched_randomized"] = make_sim(n, task, args.threads, randomization)
        vec = SB3VecEnv(make_sim(n, task, args.threads))
        sync = None
        if n <= args.max_sync_worlds:
            fns = [single_env_factory(task)] * n
            sync = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name, s in sims.items():
                s.reset()
                it = iter(actions)
                times.setdefault(name, []).append(timed(lambda s=s, it=it: s.step(next(it)), steps))
            vec.reset()
            it = iter(actions)
            times.setdefault("sb3_vecenv", []).append(
                timed(lambda it=it, vec=vec: vec.step(next(it)), steps)
            )
            raw_restart()
            times.setdefault("raw_rollout", []).append(timed(raw_step, steps))
            if sync is not None:
                sync.reset(seed=0)
                times.setdefault("sync_vector_env", []).append(
                    timed(vector_env_stepper(sync, actions), steps)
                )
        raw_close()
        for s in sims.values():
            s.close()
        vec.close()
        if sync is not None:
            sync.close()
        row = {"steps": steps, "physics_substeps": nstep}
        for name, ts in times.items():
            env_sps = n * steps / statistics.median(ts)
            row[name] = {"env_steps_per_s": env_sps, "physics_steps_per_s": env_sps * nstep}
        raw = row["raw_rollout"]["env_steps_per_s"]
        batched = row["batched"]["env_steps_per_s"]
        row["ratio_batched_over_raw"] = batched / raw
        row["ratio_sb3_vecenv_over_batched"] = row["sb3_vecenv"]["env_steps_per_s"] / batched
        if "batched_randomized" in row:
            rand = row["batched_randomized"]["env_steps_per_s"]
            row["ratio_randomized_over_raw"] = rand / raw
            row["ratio_randomized_over_batched"] = rand / batched
        if "sync_vector_env" in row:
            row["ratio_batched_over_sync"] = batched / row["sync_vector_env"]["env_steps_per_s"]
        rows[str(n)] = row
        line = (
            f"{n:5d} worlds x {steps:4d} steps: batched {batched:8.0f} env/s "
            f"({batched * nstep:9.0f} physics/s)  raw {raw:8.0f}  "
            f"batched/raw {row['ratio_batched_over_raw']:.2f}"
        )
        if "ratio_randomized_over_raw" in row:
            line += f"  rand/raw {row['ratio_randomized_over_raw']:.2f}"
        line += f"  sb3/batched {row['ratio_sb3_vecenv_over_batched']:.2f}"
        if "ratio_batched_over_sync" in row:
            line += f"  batched/sync {row['ratio_batched_over_sync']:.2f}"
        print(line, flush=True)
    return rows


def measure_async(args, task: TaskConfig, n: int = 16) -> dict:
    steps = args.async_steps
    actions = np.random.default_rng(1).uniform(-1, 1, (steps + 1, n, 4))
    # Forked before this process starts any physics thread pool.
    vec = gym.vector.AsyncVectorEnv(
        [single_env_factory(task)] * n, autoreset_mode=AutoresetMode.SAME_STEP, context="fork"
    )
    sim = make_sim(n, task, args.threads)
    times: dict[str, list[float]] = {"async_vector_env": [], "batched": []}
    for r in range(args.repeats + 1):  # the first round is the warm-up
        vec.reset(seed=0)
        t_async = timed(vector_env_stepper(vec, actions), steps)
        sim.reset()
        it = iter(actions)
        t_sim = timed(lambda it=it: sim.step(next(it)), steps)
        if r:
            times["async_vector_env"].append(t_async)
            times["batched"].append(t_sim)
    vec.close()
    sim.close()
    row = {"worlds": n, "steps": steps, "physics_substeps": sim.n_substeps}
    for name, ts in times.items():
        env_sps = n * steps / statistics.median(ts)
        row[name] = {"env_steps_per_s": env_sps, "physics_steps_per_s": env_sps * sim.n_substeps}
    a, b = row["async_vector_env"]["env_steps_per_s"], row["batched"]["env_steps_per_s"]
    row["ratio_batched_over_async"] = b / a
    print(f"async {n} envs: {a:8.0f} env/s  batched {n} worlds: {b:8.0f}  ratio {b / a:.2f}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1, 16, 256 worlds, fewer steps")
    parser.add_argument("--task", default="reach", choices=["reach", "push", "lift"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--randomization", default="light", help="preset in conf/randomization")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--world-steps", type=int, default=None)
    parser.add_argument("--min-steps", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--async-steps", type=int, default=None)
    parser.add_argument("--max-sync-worlds", type=int, default=1024)
    args = parser.parse_args()
    quick = {"repeats": 2, "world_steps": 1024, "min_steps": 4, "max_steps": 200}
    full = {"repeats": 3, "world_steps": 8192, "min_steps": 8, "max_steps": 2000}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.async_steps is None:
        args.async_steps = 64 if args.quick else 256
    counts = [1, 16, 256] if args.quick else [1, 4, 16, 64, 256, 1024]
    task = TaskConfig(name=args.task)

    randomization, rand_status = randomization_arg(args.randomization)
    print(f"task {args.task}, {args.threads} threads, randomization {rand_status}", flush=True)
    start = time.perf_counter()
    async_row = measure_async(args, task)
    rows = measure_counts(args, task, randomization, counts)
    elapsed = time.perf_counter() - start

    goals = {"note": "issue 5, cpu on 2 cores"}
    if "256" in rows:
        r = rows["256"]
        goals["batched_over_raw_at_256"] = {"ratio": r["ratio_batched_over_raw"], "goal": 0.85}
        if "ratio_batched_over_sync" in r:
            goals["batched_over_sync_at_256"] = {"ratio": r["ratio_batched_over_sync"], "goal": 1.5}
    goals["batched_over_async_at_16"] = {
        "ratio": async_row["ratio_batched_over_async"],
        "goal": 1.5,
    }
    for g in goals.values():
        if isinstance(g, dict):
            g["met"] = g["ratio"] >= g["goal"]
    print({k: v for k, v in goals.items() if k != "note"})
    write_result(
        "sim_throughput",
        {
            "task": args.task,
            "threads": args.threads,
            "quick": args.quick,
            "repeats": args.repeats,
            "randomization": rand_status,
            "worlds": rows,
            "async_16": async_row,
            "goals": goals,
            "elapsed_s": elapsed,
        },
    )


if __name__ == "__main__":
    main()
