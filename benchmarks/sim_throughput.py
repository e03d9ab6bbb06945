"""Batched simulator throughput against the raw physics limit and against what a user
would otherwise pick, all in one run; with ``--warp``, the MuJoCo Warp backend against
raw MuJoCo Warp stepping.

CPU backend: for each world count (1, 4, 16, 64, 256, 1024; ``--quick``: 1, 16, 256) it
measures env steps/s (one env step = one control step of one world) and physics steps/s
(env steps x substeps) of, interleaved over the repetitions (median, after an untimed
warm-up):

- ``batched``: ``BatchedSim.step`` with random actions (auto-resets included);
- ``batched_randomized``: the same with domain randomization (``--randomization``
  preset; skipped for ``none``);
- ``sb3_vecenv``: the same through the SB3 ``VecEnv`` adapter (numpy in and out);
- ``raw_rollout`` (the limit): ``mujoco.rollout`` on the same models, worlds and thread
  count, called once per control step with ``nstep`` = substeps, replaying the exact
  per-substep control arrays the warm-up run of ``BatchedSim`` produced, from the same
  start states, with zero initial warm-start and preallocated outputs: no env layer, no
  resets;
- ``sync_vector_env``: Gymnasium ``SyncVectorEnv`` over the single ``RobotEnv`` (same-step
  auto-reset, as ``BatchedSim``), same world count, one thread.

And at 16 envs: Gymnasium ``AsyncVectorEnv`` (one forked process per env, shared memory)
against ``BatchedSim`` at 16 worlds.

What is timed: every window starts right after a reset and is a whole number of episode
horizons (reach 50 control steps, push/lift 100), so every world truncates and auto-resets
inside it exactly as often as in steady state (all worlds start together, so the reset
of all of them falls on the window's last step). Windows hold about ``--world-steps``
env steps (at least one horizon, at most ``--max-steps`` control steps) and are timed
``--repeats`` times, fewer where that would exceed ``--repeat-env-steps`` env steps (by
default 256 worlds twice, 1024 once). The default run takes about 5 minutes on 2 cores
for reach (``--quick``: about 1.5), push and lift more (horizons twice as long).

Warp (``--warp``): for each of ``--warp-tasks`` and ``--warp-counts`` worlds on
``--warp-device`` it measures

- ``raw_warp`` (the limit): ``mujoco_warp.put_model`` / ``put_data(nworld=N)`` of
  ``BatchedSim``'s own model, then per control step: write that step's controls into
  ``d.ctrl`` (a device-to-device copy), zero the warm start (as ``BatchedSim`` does) and
  ``mujoco_warp.step`` x substeps, captured once as a CUDA graph and replayed on CUDA;
  one synchronize at the end of the window. The controls are the final per-substep
  targets the timed ``BatchedSim`` run produced, from the same start states, so both see
  the same contacts (push: arm, cube, table). No env layer, no resets, no host transfer;
- ``batched_warp``: ``BatchedSim(sim_config=SimConfig(backend="warp"))`` stepping random
  actions, with actions and returned tensors on the Warp device as a GPU training loop
  keeps them (the whole env layer: IK, controls, rewards, observations, the per-step
  host sync, auto-resets through the single env on the host);

and ``ratio_batched_over_raw`` in physics steps/s (goal on a GPU: >= 0.8), plus the same
ratio over the steps in which no world reset (where the gap is). Windows: one episode
horizon on CUDA (auto-resets inside; ``step_s_max`` shows the reset step), 8 control
steps on the CPU device (no resets inside; about 1 minute at 16 and 64 worlds per task
once Warp's kernel cache is warm, compiling it first takes a few minutes);
``--warp-steps`` overrides. Both are warmed up first (kernel compilation, graph capture).
A ``--skip-cpu`` run writes ``sim_throughput_warp.json``, leaving the CPU numbers of the
last full run in ``sim_throughput.json``.

    python benchmarks/sim_throughput.py [--quick] [--task reach] [--threads N]
    python benchmarks/sim_throughput.py --warp [--skip-cpu] [--warp-device cuda]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.vector import AutoresetMode
from mujoco import rollout
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result

from robot_rl.config.randomization import RandomizationConfig
from robot_rl.config.sim import SimConfig, TaskConfig
from robot_rl.sim.batched import BatchedSim
from robot_rl.sim.env import RobotEnv
from robot_rl.sim.vec_env import SB3VecEnv

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def load_randomization(preset: str) -> RandomizationConfig | None:
    """The ``conf/randomization/<preset>.yaml`` preset, or None for ``none``."""
    if preset == "none":
        return None
    yaml = OmegaConf.load(CONF_DIR / "randomization" / f"{preset}.yaml")
    merged = OmegaConf.merge(OmegaConf.structured(RandomizationConfig), yaml)
    return OmegaConf.to_object(merged)


def window_steps(horizon: int, n: int, world_steps: int, max_steps: int) -> int:
    """Control steps per timed window: whole horizons, about ``world_steps`` env steps."""
    k = max(1, math.ceil(world_steps / (n * horizon)))
    return horizon * max(1, min(k, max_steps // horizon))


class Recording(NamedTuple):
    """What one run of ``BatchedSim`` handed its physics backend."""

    models: list[mujoco.MjModel]  # the worlds' models at the first step
    first_state: np.ndarray  # (N, nstate) float64 full-physics states after the reset
    controls: list  # per control step, what ``keep`` made of the (N, S, nu) controls


def timed(fn: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - start


#: Whether BatchedSim runs its safety filter (``--safety-filter``; on, as by default).
SAFETY_FILTER = True


def make_sim(n: int, task: TaskConfig, threads: int, randomization=None) -> BatchedSim:
    sim_config = SimConfig(safety_filter=SAFETY_FILTER)
    return BatchedSim(
        n, task, sim_config=sim_config, seed=0, n_threads=threads, randomization=randomization
    )


def start_states(sim: BatchedSim) -> np.ndarray:
    """All worlds' full-physics states, (N, nstate) float64, in one read."""
    physics = sim._physics
    if hasattr(physics, "backend"):  # warp: one device read, not one per world
        return physics.backend.get_state()
    return physics.state.copy()


def recorded_run(
    sim: BatchedSim, actions, keep: Callable = lambda c: c, timer: list | None = None
) -> tuple[Recording, np.ndarray]:
    """Resets ``sim`` and steps it through ``actions``, keeping every control array it hands
    its physics backend (one per control step). With ``timer``, appends each step's
    seconds to it. Returns the recording and, per step, whether any world reset in it."""
    sim.reset()
    physics = sim._physics
    rec = Recording(list(sim.models), start_states(sim), [])
    inner = physics.step

    def step(models, control) -> None:
        rec.controls.append(keep(control))
        inner(models, control)

    physics.step = step  # shadows the method on this instance only
    reset = []
    try:
        for a in actions:
            t = time.perf_counter()
            _, _, terminated, truncated, _ = sim.step(a)
            if timer is not None:
                timer.append(time.perf_counter() - t)
            reset.append(bool((terminated | truncated).any()))
    finally:
        del physics.step
    return rec, np.array(reset)


def raw_stepper(rec: Recording, n: int, threads: int, nstep: int):
    """mujoco.rollout alone, replaying the recorded controls; returns (step, restart, close)."""
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
        sim = make_sim(n, task, args.threads)
        steps = window_steps(sim.horizon_steps, n, args.world_steps, args.max_steps)
        repeats = max(1, min(args.repeats, args.repeat_env_steps // (n * steps)))
        actions = rng.uniform(-1, 1, (steps, n, *sim.action_space.shape))
        rec, _ = recorded_run(sim, actions)  # also the warm-up of `sim`
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
        # Short untimed warm-ups of the others (first-call allocations, lazy imports).
        for s in list(sims.values())[1:]:
            s.reset()
            s.step(actions[0])
        vec.reset()
        vec.step(actions[0])
        if sync is not None:
            sync.reset(seed=0)
            sync.step(actions[0])
        times: dict[str, list[float]] = {}
        for _ in range(repeats):
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
        row = {
            "steps": steps,
            "horizon_steps": sim.horizon_steps,
            "resets_per_world_in_window": steps // sim.horizon_steps,
            "repeats": repeats,
            "physics_substeps": nstep,
        }
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
            f"{n:5d} worlds x {steps:4d} steps x{repeats}: batched {batched:7.0f} env/s "
            f"({batched * nstep:8.0f} physics/s)  raw {raw:7.0f}  "
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
    env = RobotEnv(task_config=task)
    horizon, action_shape = env.horizon_steps, env.action_space.shape
    env.close()
    steps = args.async_horizons * horizon
    actions = np.random.default_rng(1).uniform(-1, 1, (steps + 1, n, *action_shape))
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
    row = {"worlds": n, "steps": steps, "horizon_steps": horizon}
    row["physics_substeps"] = sim.n_substeps
    for name, ts in times.items():
        env_sps = n * steps / statistics.median(ts)
        row[name] = {"env_steps_per_s": env_sps, "physics_steps_per_s": env_sps * sim.n_substeps}
    a, b = row["async_vector_env"]["env_steps_per_s"], row["batched"]["env_steps_per_s"]
    row["ratio_batched_over_async"] = b / a
    print(
        f"async {n} envs x {steps} steps: {a:7.0f} env/s  batched {n} worlds: {b:7.0f}  "
        f"batched/async {b / a:.2f}",
        flush=True,
    )
    return row


# --- MuJoCo Warp ---------------------------------------------------------------------------
def resolve_warp_device(device: str) -> str:
    """``auto`` as BatchedSim resolves it: cuda when torch sees a GPU, else Warp's CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class RawWarp:
    """MuJoCo Warp alone: ``model``'s worlds stepped with recorded per-step controls."""

    def __init__(self, model, start: np.ndarray, ctrl, n_substeps: int, device):
        import mujoco_warp as mjw
        import warp as wp

        from robot_rl.sim.backends.warp import full_state_offsets

        self.wp, self.mjw, self.n_substeps = wp, mjw, n_substeps
        self.device = wp.get_device(device)
        n = len(start)
        with wp.ScopedDevice(self.device):
            self.m = mjw.put_model(model)
            data = mujoco.MjData(model)
            mujoco.mj_forward(model, data)
            # nconmax/njmax: MuJoCo Warp's defaults, as WarpBackend (and so BatchedSim).
            self.d = mjw.put_data(model, data, nworld=n)
        # (steps, N, nu) float32 on the device, recorded there: no host copy per step.
        self._ctrl_torch = ctrl.contiguous()
        self.ctrl = wp.from_torch(self._ctrl_torch)
        off = full_state_offsets(model)
        self._start = {
            "time": start[:, off["mjSTATE_TIME"][0]],
            **{
                key: start[:, off[name][0] : sum(off[name])]
                for key, name in (("qpos", "mjSTATE_QPOS"), ("qvel", "mjSTATE_QVEL"))
            },
        }
        self._graph = None
        self.restart()

    def restart(self) -> None:
        for key, value in self._start.items():
            getattr(self.d, key).assign(value.astype(np.float32))
        self.d.qacc_warmstart.zero_()
        self.wp.synchronize_device(self.device)

    def _substeps(self) -> None:
        self.d.qacc_warmstart.zero_()
        for _ in range(self.n_substeps):
            self.mjw.step(self.m, self.d)

    def step(self, k: int) -> None:
        wp = self.wp
        wp.copy(self.d.ctrl, self.ctrl[k])
        if self._graph is not None:
            wp.capture_launch(self._graph)
        else:
            self._substeps()

    def warm_up(self) -> None:
        """Compiles (first control step), then captures the CUDA graph; restarts."""
        wp = self.wp
        with wp.ScopedDevice(self.device):
            self.step(0)
            if self.device.is_cuda:
                with wp.ScopedCapture(device=self.device) as capture:
                    self._substeps()
                self._graph = capture.graph
                self.step(0)
        self.restart()

    def run(self, steps: int) -> float:
        wp = self.wp
        with wp.ScopedDevice(self.device):
            start = time.perf_counter()
            for k in range(steps):
                self.step(k)
            wp.synchronize_device(self.device)
            elapsed = time.perf_counter() - start
        flags = self.d.overflow.numpy()
        if np.any(flags):
            raise RuntimeError(f"raw MuJoCo Warp overflowed in {np.count_nonzero(flags)} worlds")
        return elapsed


def measure_warp(args) -> dict:
    import torch
    import warp as wp

    device = resolve_warp_device(args.warp_device)
    wp.init()
    dev = wp.get_device(device)
    counts = args.warp_counts or ([1024, 4096, 16384, 32768] if dev.is_cuda else [16, 64])
    print(f"warp on {dev.alias} ({dev.name}), worlds {counts}", flush=True)
    sim_config = SimConfig(backend="warp", warp_device=device, safety_filter=SAFETY_FILTER)
    torch_device = wp.device_to_torch(dev)
    gen = torch.Generator(device=torch_device).manual_seed(2)
    rows: dict[str, dict] = {}
    for task_name in args.warp_tasks:
        task = TaskConfig(name=task_name)
        rows[task_name] = {}
        for n in counts:
            t0 = time.perf_counter()
            sim = BatchedSim(n, task, sim_config=sim_config, seed=0, device=torch_device)
            nstep, horizon = sim.n_substeps, sim.horizon_steps
            steps = args.warp_steps or (horizon if dev.is_cuda else 8)
            # Actions and returned tensors on the device, as a GPU training loop keeps them.
            shape = (steps, n, *sim.action_space.shape)
            actions = torch.rand(shape, generator=gen, device=torch_device) * 2 - 1
            recorded_run(sim, actions[:2])  # compile, capture
            runs = []
            for r in range(args.warp_repeats):
                step_s: list[float] = []
                keep = (lambda c: c[:, -1].clone()) if r == 0 else (lambda c: None)
                rec, reset = recorded_run(sim, actions, keep, step_s)
                runs.append((np.array(step_s), reset, rec))
            rec = runs[0][2]
            raw = RawWarp(sim.model, rec.first_state, torch.stack(rec.controls), nstep, dev)
            raw.warm_up()
            raw_s = []
            for r in range(args.warp_repeats):
                if r:
                    raw.restart()
                raw_s.append(raw.run(steps))
            batched_s = statistics.median(float(run[0].sum()) for run in runs)
            step_s = np.concatenate([run[0] for run in runs])
            reset = np.concatenate([run[1] for run in runs])
            del rec, runs, raw
            sim.close()
            row = {
                "steps": steps,
                "horizon_steps": horizon,
                "resets_per_world_in_window": steps // horizon,
                "repeats": args.warp_repeats,
                "physics_substeps": nstep,
            }
            for name, secs in (("raw_warp", statistics.median(raw_s)), ("batched_warp", batched_s)):
                env_sps = n * steps / secs
                row[name] = {"env_steps_per_s": env_sps, "physics_steps_per_s": env_sps * nstep}
            raw_pps = row["raw_warp"]["physics_steps_per_s"]
            b = row["batched_warp"]
            b["step_s_median"] = float(np.median(step_s))
            b["step_s_max"] = float(step_s.max())
            b["reset_steps"] = int(reset.sum())
            ratio = row["ratio_batched_over_raw"] = b["physics_steps_per_s"] / raw_pps
            line = (
                f"warp {task_name:5s} {n:6d} worlds x {steps:3d} steps: "
                f"raw {raw_pps:11.0f} physics/s  batched {b['physics_steps_per_s']:11.0f} "
                f"physics/s ({b['env_steps_per_s']:9.0f} env/s)  batched/raw {ratio:.2f}"
            )
            if reset.any() and not reset.all():
                # Where the gap is: the same rate over the steps in which no world reset.
                calm = n * nstep / float(step_s[~reset].mean()) / raw_pps
                row["ratio_batched_over_raw_excluding_reset_steps"] = calm
                line += f" (without reset steps {calm:.2f})"
            row["wall_s"] = time.perf_counter() - t0
            rows[task_name][str(n)] = row
            print(f"{line}  [{row['wall_s']:.0f} s]", flush=True)
    return {
        "device": dev.alias,
        "device_name": dev.name,
        "warp": wp.config.version,
        "counts": counts,
        "timed": (
            "batched_warp: BatchedSim.step from a reset, actions and outputs on the device; "
            "auto-resets inside where steps >= horizon_steps (reset_steps counts them). "
            "raw_warp: the same controls (final substep targets) from the same states, "
            "ctrl copy + zeroed warm start + substeps per control step (a CUDA graph on "
            "cuda), one synchronize per window, no resets"
        ),
        "tasks": rows,
        "goal": {"ratio_batched_over_raw": 0.8, "applies": "cuda"},
    }


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1, 16, 256 worlds, fewer steps")
    parser.add_argument(
        "--safety-filter",
        choices=["on", "off"],
        default="on",
        help="run BatchedSim with its safety filter (default) or without",
    )
    parser.add_argument("--counts", type=int_list, default=None, help="CPU world counts")
    parser.add_argument("--task", default="reach", choices=["reach", "push", "lift"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--randomization", default="light", help="preset in conf/randomization")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--world-steps", type=int, default=None, help="env steps per window")
    parser.add_argument("--max-steps", type=int, default=None, help="control steps per window")
    parser.add_argument(
        "--repeat-env-steps", type=int, default=None, help="time once above this window size"
    )
    parser.add_argument("--async-horizons", type=int, default=None)
    parser.add_argument("--max-sync-worlds", type=int, default=1024)
    parser.add_argument("--skip-cpu", action="store_true", help="only the warp section")
    parser.add_argument("--warp", action="store_true", help="add the MuJoCo Warp section")
    parser.add_argument("--warp-device", default="auto", help="auto | cpu | cuda[:i]")
    parser.add_argument(
        "--warp-counts", type=int_list, default=None, help="default 1024,4096,16384,32768 / 16,64"
    )
    parser.add_argument(
        "--warp-tasks", type=lambda s: [t for t in s.split(",") if t], default=["reach", "push"]
    )
    parser.add_argument(
        "--warp-steps", type=int, default=None, help="default: one horizon (cuda), 8 (cpu)"
    )
    parser.add_argument("--warp-repeats", type=int, default=1)
    args = parser.parse_args()
    global SAFETY_FILTER
    SAFETY_FILTER = args.safety_filter == "on"
    quick = {"repeats": 2, "world_steps": 1024, "max_steps": 200, "repeat_env_steps": 8000}
    full = {"repeats": 3, "world_steps": 2048, "max_steps": 500, "repeat_env_steps": 25600}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.async_horizons is None:
        args.async_horizons = 1 if args.quick else 4
    if args.counts is None:
        args.counts = [1, 16, 256] if args.quick else [1, 4, 16, 64, 256, 1024]
    if args.skip_cpu and not args.warp:
        parser.error("--skip-cpu leaves nothing to measure without --warp")

    result: dict = {"args": vars(args).copy()}
    start = time.perf_counter()
    if not args.skip_cpu:
        task = TaskConfig(name=args.task)
        randomization = load_randomization(args.randomization)
        rand_status = "off only" if randomization is None else f"on: preset {args.randomization}"
        print(f"task {args.task}, {args.threads} threads, randomization {rand_status}", flush=True)
        async_row = measure_async(args, task)
        rows = measure_counts(args, task, randomization, args.counts)
        goals = {"note": "issue 5, cpu on 2 cores"}
        if "256" in rows:
            r = rows["256"]
            goals["batched_over_raw_at_256"] = {"ratio": r["ratio_batched_over_raw"], "goal": 0.85}
            if "ratio_batched_over_sync" in r:
                goals["batched_over_sync_at_256"] = {
                    "ratio": r["ratio_batched_over_sync"],
                    "goal": 1.5,
                }
        goals["batched_over_async_at_16"] = {
            "ratio": async_row["ratio_batched_over_async"],
            "goal": 1.5,
        }
        for g in goals.values():
            if isinstance(g, dict):
                g["met"] = g["ratio"] >= g["goal"]
        print({k: v for k, v in goals.items() if k != "note"}, flush=True)
        result["cpu"] = {
            "task": args.task,
            "threads": args.threads,
            "randomization": rand_status,
            "timed": (
                "each window starts after a reset and spans whole episode horizons, so every "
                "world auto-resets inside it (raw_rollout: no resets)"
            ),
            "worlds": rows,
            "async_16": async_row,
            "goals": goals,
        }
    if args.warp:
        result["warp"] = measure_warp(args)
    result["elapsed_s"] = time.perf_counter() - start
    # A warp-only run keeps the CPU numbers of the last full run.
    write_result("sim_throughput_warp" if args.skip_cpu else "sim_throughput", result)


if __name__ == "__main__":
    main()
