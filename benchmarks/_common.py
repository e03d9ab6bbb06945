"""Shared by the benchmark scripts: where results go, and machine facts recorded with them."""

from __future__ import annotations

import functools
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


def command() -> str:
    """This process's command line, as one could paste it into a shell."""
    return shlex.join(["python", *sys.argv])


@functools.cache
def git_commit() -> str | None:
    """The commit of the code that runs, with ``+dirty`` when tracked files outside
    ``benchmarks/results/`` differ from it; None outside a git checkout. Read once per
    process, at import (below): a long run records the code it loaded, not a later
    checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = git(
            "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


git_commit()


def machine_info() -> dict:
    import mujoco
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "mujoco": mujoco.__version__,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": git_commit(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, result: dict, path: Path | None = None) -> Path:
    """Writes ``result`` with the command line and machine to ``results/<name>.json``, or
    to ``path`` where given."""
    path = path or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"command": command(), "machine": machine_info(), **result}
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return path


#: Offline-RL benchmarks evaluate on seeds 10_000 + i; their datasets use seeds below.
EVAL_SEED = 10_000


def benchmark_train_config(steps: int, seed: int):
    """The training run of every offline-RL quality benchmark: ``steps`` gradient steps
    of 256 transitions, 20 log points."""
    from robot_rl.config.train import TrainConfig

    return TrainConfig(steps=steps, batch_size=256, seed=seed, log_every=max(1, steps // 20))


def train_and_evaluate(
    store_path: Path,
    task: str,
    algo_cfg,
    train_cfg,
    out_dir: Path,
    eval_episodes: int,
    threads: int,
) -> dict:
    """Pretrain ``algo_cfg`` (an algorithm config, e.g. ``IQLConfig``) for the run
    ``train_cfg`` (a ``TrainConfig``) on the store, then run its policy for
    ``eval_episodes`` batched sim episodes of ``task`` from :data:`EVAL_SEED`: the
    shared core of one run of the offline-RL quality benchmarks."""
    import torch

    from robot_rl.algos.pretrain import pretrain
    from robot_rl.config.sim import TaskConfig
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.eval.batched import evaluate_batched
    from robot_rl.policies import load_policy

    torch.set_num_threads(threads)
    shutil.rmtree(out_dir, ignore_errors=True)  # a run without its JSON starts afresh
    with EpisodeStore.open(store_path) as store:
        t0 = time.perf_counter()
        result = pretrain(store, algo_cfg, out_dir, train=train_cfg, progress=False)
        train_s = time.perf_counter() - t0
        n_train_episodes, reward_source = store.n_episodes, store.reward_source
    ev = evaluate_batched(
        load_policy(result.policy_dir),
        TaskConfig(name=task),
        n_episodes=eval_episodes,
        seed=EVAL_SEED,
        n_threads=threads,
    )
    s = ev.stats
    return {
        "algo": algo_cfg.name,
        "seed": train_cfg.seed,
        "steps": train_cfg.steps,
        "train_episodes": n_train_episodes,
        "reward_source": reward_source,
        "train_s": train_s,
        "updates_per_s": train_cfg.steps / train_s,
        "eval_episodes": ev.n_episodes,
        "eval_seed": EVAL_SEED,
        "success_rate": s.success_rate,
        "success_ci": list(s.success_ci),
        "mean_return": s.mean_return,
        "eval_s": ev.wall_time_s,
        "machine": machine_info(),
    }


def write_run(path: Path, result: dict) -> None:
    """Write one run's JSON atomically (a killed run leaves no half file to skip)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"command": command(), **result}, indent=2) + "\n")
    tmp.replace(path)
    lo, hi = result["success_ci"]
    print(
        f"  success {result['success_rate']:.0%} [{lo:.0%}, {hi:.0%}], "
        f"{result['updates_per_s']:.0f} updates/s, eval {result['eval_s']:.0f} s",
        flush=True,
    )
