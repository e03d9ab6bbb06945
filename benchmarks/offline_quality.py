"""Offline RL quality on the fixed benchmark datasets: success of each algorithm's policy
in simulation, on held-out seeds.

The grid (defaults = the issue's recipe): tasks push and lift; datasets ``mixed`` (30%
expert σ=0.1, 70% expert σ=0.5 with 30% random actions) and ``expert`` (σ=0.1), 1000
episodes each from ``robot-rl-data make-dataset``; algorithms BC, filtered BC (BC on the
top 10% of episodes by return), TD3+BC, IQL and CQL on the mixed datasets, BC on the
expert datasets; 3 seeds, 10k gradient steps, batch 256, 2x256 networks; 100 evaluation
episodes on held-out seeds (10_000 + i; the datasets use seeds below 1000).

Every run writes its own JSON under ``benchmarks/results/offline_quality/runs/``, and the
script skips runs whose JSON exists, so it resumes where it stopped (and may span several
sessions). The summary (``benchmarks/results/offline_quality.json``) is rebuilt from
whatever runs exist, with the issue's bars:

- mixed push/lift: IQL and CQL >= BC + 15 points (or >= 90% where BC > 75%), and above
  filtered BC;
- expert push/lift: BC >= 80%.

    python benchmarks/offline_quality.py                 # the whole grid (hours on 2 CPUs)
    python benchmarks/offline_quality.py --summary-only  # rebuild the table
    python benchmarks/offline_quality.py --tasks push --algos bc,iql --seeds 0
    python benchmarks/offline_quality.py --variant ln --set layer_norm=true --algos iql

Several copies may run at once (one per core, each with ``--threads 1``): each run is
claimed with a ``.lock`` file first, so copies share the grid instead of repeating it.

A ``--variant NAME`` run overrides algorithm-config fields with ``--set`` and keeps its
JSON under ``runs/variants/NAME/``, outside the summary: it is for trying settings, not
for the reported table (which always uses the algorithms' defaults).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS_DIR,
    benchmark_train_config,
    train_and_evaluate,
    write_result,
    write_run,
)

DATA_DIR = RESULTS_DIR / "offline_data"
RUNS_DIR = RESULTS_DIR / "offline_quality" / "runs"
#: (dataset, algorithm) pairs that count, per task.
DEFAULT_GRID = (
    ("mixed", "bc"),
    ("mixed", "filtered_bc"),
    ("mixed", "td3bc"),
    ("mixed", "iql"),
    ("mixed", "cql"),
    ("expert", "bc"),
)


def dataset(task: str, recipe: str, n_episodes: int) -> Path:
    """The benchmark store, recorded once (seed 0) and reused."""
    from robot_rl.teleop.make_dataset import make_dataset

    path = DATA_DIR / f"{task}_{recipe}_{n_episodes}.zarr"
    if not (path / "commit.json").exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        print(f"recording {path.name} ...", flush=True)
        summary = make_dataset(task, recipe, path, n_episodes=n_episodes, seed=0, overwrite=True)
        print(f"  {summary.n_episodes} episodes in {summary.wall_time_s:.0f} s", flush=True)
    return path


def filtered(src: Path, fraction: float = 0.1) -> Path:
    """The top ``fraction`` of ``src``'s episodes by return, as a new store."""
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.governance import filter_episodes

    dst = src.with_name(src.stem + f"_top{int(fraction * 100)}.zarr")
    if (dst / "commit.json").exists():
        return dst
    with EpisodeStore.open(src) as store:
        rewards, ends = store.array("reward"), np.asarray(store.episode_ends)
    returns = np.add.reduceat(rewards, np.r_[0, ends[:-1]])
    n_keep = max(1, round(fraction * len(returns)))
    keep = set(np.argsort(-returns, kind="stable")[:n_keep].tolist())
    filter_episodes(src, dst, lambda i, _prov: i in keep)
    return dst


def run_one(task: str, recipe: str, algo: str, seed: int, args: argparse.Namespace) -> dict:
    from robot_rl.config.algos import ALGORITHM_CONFIGS

    store_path = dataset(task, recipe, args.episodes)
    if algo == "filtered_bc":
        store_path = filtered(store_path)
    work = f"{task}_{recipe}_{algo}_s{seed}" + (f"_{args.variant}" if args.variant else "")
    config_cls = ALGORITHM_CONFIGS["bc" if algo == "filtered_bc" else algo]
    unknown = sorted(set(args.overrides) - set(config_cls.__dataclass_fields__))
    if unknown:
        raise SystemExit(f"--set {unknown}: not settings of {config_cls.__name__} ({algo})")
    cfg = config_cls(**args.overrides)
    train = benchmark_train_config(args.steps, seed)
    out_dir = RESULTS_DIR / "offline_quality" / "runs_scratch" / work
    result = train_and_evaluate(
        store_path, task, cfg, train, out_dir, args.eval_episodes, args.threads
    )
    return {
        "task": task,
        "dataset": recipe,
        **result,
        "algo": algo,
        "variant": args.variant,
        "overrides": args.overrides,
    }


def claim(path: Path) -> bool:
    """Take the run ``path`` for this process (a ``.lock`` file holding its pid), so that
    several copies of this script, one per core, share the grid. A lock whose process is
    gone (a killed run) is taken over."""
    import os

    lock = path.with_suffix(".lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(lock.read_text() or 0), 0)
                return False  # another copy is on it
            except (ProcessLookupError, ValueError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process died
                continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def parse_overrides(sets: list[str]) -> dict:
    """``["layer_norm=true", "discount=0.95"]`` -> algorithm-config keyword arguments
    (fields of some algorithm's config, robot_rl.config.algos; each run checks that its
    algorithm has them)."""
    import contextlib

    import yaml

    from robot_rl.config.algos import ALGORITHM_CONFIGS

    fields = {name for cls in ALGORITHM_CONFIGS.values() for name in cls.__dataclass_fields__}
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or key not in fields - {"name"}:
            raise SystemExit(
                f"--set {item!r}: expected KEY=VALUE with KEY a field of an algorithm's "
                "config (robot_rl/config/algos.py)"
            )
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "3e-5" (no dot) as a string
            with contextlib.suppress(ValueError):
                parsed = float(parsed)
        out[key] = parsed
    return out


def summarize(runs: list[dict]) -> dict:
    """Mean success per (task, dataset, algo) over seeds, and the issue's bars."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in runs:
        groups.setdefault((r["task"], r["dataset"], r["algo"]), []).append(r["success_rate"])
    table = {
        f"{t}/{d}/{a}": {"mean": float(np.mean(v)), "std": float(np.std(v)), "seeds": len(v)}
        for (t, d, a), v in sorted(groups.items())
    }
    bars = []
    for task in sorted({t for t, _, _ in groups}):

        def mean(d: str, a: str, task: str = task) -> float | None:
            v = groups.get((task, d, a))
            return float(np.mean(v)) if v else None

        bc, fbc = mean("mixed", "bc"), mean("mixed", "filtered_bc")
        for algo in ("iql", "cql"):
            got = mean("mixed", algo)
            if got is None or bc is None:
                continue
            need = 0.90 if bc > 0.75 else bc + 0.15
            ok = got >= need and (fbc is None or got > fbc)
            bars.append(
                {
                    "bar": f"{task} mixed: {algo} >= {need:.0%} and > filtered BC",
                    "value": got,
                    "filtered_bc": fbc,
                    "met": bool(ok),
                }
            )
        exp = mean("expert", "bc")
        if exp is not None:
            bars.append({"bar": f"{task} expert: bc >= 80%", "value": exp, "met": exp >= 0.8})
    return {"table": table, "bars": bars}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="push,lift")
    ap.add_argument("--algos", default=None, help="restrict to these algorithms")
    ap.add_argument("--datasets", default="mixed,expert")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--episodes", type=int, default=1000, help="episodes per dataset")
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--variant", default=None, help="name of a non-default setting to try")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="algorithm-config override, e.g. layer_norm=true (YAML value), only with --variant",
    )
    args = ap.parse_args()
    args.overrides = parse_overrides(args.sets)
    if args.overrides and not args.variant:
        ap.error("--set changes the algorithms' defaults: name the try with --variant")
    runs_dir = RUNS_DIR / "variants" / args.variant if args.variant else RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        algos = set(args.algos.split(",")) if args.algos else None
        datasets = set(args.datasets.split(","))
        # Seeds outermost: a partial run covers every cell of the grid once before any
        # gets a second seed.
        for seed in (int(s) for s in args.seeds.split(",")):
            for task in args.tasks.split(","):
                for recipe, algo in DEFAULT_GRID:
                    if recipe not in datasets or (algos and algo not in algos):
                        continue
                    tag = f"{task}_{recipe}_{algo}_s{seed}_n{args.episodes}_k{args.steps}"
                    path = runs_dir / f"{tag}.json"
                    if path.exists() or not claim(path):
                        continue
                    try:
                        print(f"{tag} ...", flush=True)
                        write_run(path, run_one(task, recipe, algo, seed, args))
                    finally:
                        path.with_suffix(".lock").unlink(missing_ok=True)
    runs = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*.json"))]
    summary = summarize(runs)
    for key, row in summary["table"].items():
        print(f"{key:32s} {row['mean']:6.1%} ± {row['std']:.1%}  ({row['seeds']} seeds)")
    for bar in summary["bars"]:
        print(f"{'MET ' if bar['met'] else 'MISS'} {bar['bar']}: {bar['value']:.1%}")
    if args.variant:
        write_result(f"offline_quality_{args.variant}", {"runs": len(runs), **summary})
    else:
        write_result("offline_quality", {"runs": len(runs), **summary})


if __name__ == "__main__":
    main()
