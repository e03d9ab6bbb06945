"""Offline policy evaluation on mixed push: does FQE rank policies as the simulator does?

The policies (defaults = the issue's recipe): the checkpoints every 2k steps of one BC and
one IQL run (10k steps, seed 0) on the 1000-episode ``mixed`` push dataset, plus the
scripted push expert with Gaussian action noise σ ∈ {0, 0.2, 0.5, 1.0} (noise on the
normalized action, then clipped to [-1, 1], as the dataset recipes perturb it): 14 in all.

For each policy:

* **true return**: the mean *discounted* return ``sum_{t<H} gamma^t r_t`` over held-out
  sim episodes (seeds ``10_000 + i``; the datasets use seeds below 1000), with the
  dataset's task settings (dense reward, terminate on success, the task's horizon H),
  played on :class:`~robot_rl.sim.batched.BatchedSim`;
* **offline estimates** from the store alone (:func:`robot_rl.algos.ope.evaluate_policies`): FQE
  with the same gamma and horizon, its start-state bootstrap interval (which leaves out
  the fitting error, so it is too narrow), and WIS/PDWIS with an estimated behaviour
  policy (``--no-is`` to skip).

It reports the Spearman rank correlation of each estimator with the true returns over all
policies (the issue's bar: FQE >= 0.7) and within each group.

Every stage caches its output under ``benchmarks/results/ope_ranking/``, so a rerun picks
up where it stopped: a training run resumes from its newest checkpoint and is skipped
once its last checkpoint exists; checkpoints become policy artifacts once; each policy's
true return and offline estimates (per FQE seed) are one JSON each, reused while their
settings match.
The summary (``benchmarks/results/ope_ranking.json``) is rebuilt from whatever exists.

    python benchmarks/ope_ranking.py                      # the whole recipe (~20 min, 1 thread)
    python benchmarks/ope_ranking.py --fqe-seed 1 --out ope_ranking_fqe_seed1  # FQE's seed
    python benchmarks/ope_ranking.py --fqe-steps 5000     # cheaper FQE (recomputed)
    python benchmarks/ope_ranking.py --summary-only       # rebuild the table
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import EVAL_SEED, RESULTS_DIR, write_result

SHARED_STORE = RESULTS_DIR / "offline_data" / "push_mixed_1000.zarr"
TASK, RECIPE = "push", "mixed"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path: Path, data: dict) -> None:
    from robot_rl.eval.metrics import _json_safe

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2) + "\n")
    os.replace(tmp, path)


# --- data -----------------------------------------------------------------------------


def dataset(args: argparse.Namespace, work: Path) -> Path:
    """The shared 1000-episode store when it is complete (read only), else our own."""
    if args.store is not None:
        return Path(args.store)
    if args.episodes == 1000 and (SHARED_STORE / "commit.json").is_file():
        return SHARED_STORE
    path = work / "data" / f"{TASK}_{RECIPE}_{args.episodes}.zarr"
    if not (path / "commit.json").is_file():
        from robot_rl.teleop.make_dataset import make_dataset

        log(f"making {path} ({args.episodes} episodes)")
        make_dataset(TASK, RECIPE, path, n_episodes=args.episodes, seed=0)
    return path


# --- training and checkpoints -> policies ----------------------------------------------


def train_config(args: argparse.Namespace) -> Any:
    """The training run of every policy here: it keeps every periodic checkpoint."""
    from robot_rl.config.train import TrainConfig

    return TrainConfig(
        steps=args.train_steps,
        batch_size=256,
        checkpoint_every=args.checkpoint_every,
        log_every=max(1, min(250, args.checkpoint_every)),
        device="cpu",
        seed=args.train_seed,
    )


def train(store: Any, algo: Any, run: Any, run_dir: Path) -> float:
    """One ``pretrain`` run of the algorithm config ``algo`` for the ``TrainConfig``
    ``run`` (it keeps every periodic checkpoint); seconds spent (0 if cached)."""
    from robot_rl.algos.pretrain import pretrain

    last = run_dir / "train" / "checkpoints" / f"step_{run.steps:09d}"
    if (last / "trainer.json").is_file():
        return 0.0
    log(f"training {algo.name} for {run.steps} steps -> {run_dir}")
    t0 = time.perf_counter()
    pretrain(store, algo, run_dir, train=run, progress=False)
    return time.perf_counter() - t0


def policy_dir(work: Path, name: str, args: argparse.Namespace) -> Path:
    return work / "policies" / f"{name}_s{args.train_seed}_{args.train_steps}"


def run_dir(work: Path, algo: str, args: argparse.Namespace) -> Path:
    return work / "runs" / f"{algo}_s{args.train_seed}_{args.train_steps}"


def artifact_policies(store: Any, args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """Trains the runs and exports their checkpoints; ``{policy name: artifact dir}``."""
    import torch

    from robot_rl.algos.checkpoint import iter_checkpoints
    from robot_rl.algos.pretrain import export_checkpoint
    from robot_rl.config.algos import ALGORITHM_CONFIGS

    dirs: dict[str, Path] = {}
    for name in args.algos:
        algo, run = ALGORITHM_CONFIGS[name](), train_config(args)
        rdir = run_dir(work, name, args)
        seconds = train(store, algo, run, rdir)
        if seconds:
            write_json(rdir / "timing.json", {"train_s": seconds, "steps": run.steps})
        wanted = set(range(args.checkpoint_every, args.train_steps + 1, args.checkpoint_every))
        found = {int(c.name.removeprefix("step_")): c for c in iter_checkpoints(rdir / "train")}
        missing = sorted(wanted - set(found))
        if missing:
            raise RuntimeError(f"{rdir}: checkpoints for steps {missing} are missing")
        for step in sorted(wanted):
            pname = f"{name}_step{step}"
            pdir = policy_dir(work, pname, args)
            if not (pdir / "manifest.json").is_file():
                with torch.no_grad():
                    export_checkpoint(store, algo, found[step], pdir)
            dirs[pname] = pdir
    return dirs


# --- true discounted returns in the simulator ------------------------------------------


def noisy_expert(task_config: Any, noise_std: float) -> Any:
    """The scripted expert with Gaussian noise σ on its normalized actions, clipped to
    [-1, 1] (``make_dataset.PerturbedPolicy``), one per world; each episode's noise comes
    from a generator seeded by its episode seed."""
    from robot_rl.eval.batched import PerWorldPolicies
    from robot_rl.sim.experts import make_expert
    from robot_rl.teleop.make_dataset import Behaviour, PerturbedPolicy

    behaviour = Behaviour("noisy", noise_std)
    return PerWorldPolicies(
        lambda seed: PerturbedPolicy(
            make_expert(TASK, task_config.max_ee_step_m),
            behaviour,
            np.random.default_rng([seed, 7]),
        )
    )


def true_return(
    name: str, spec: dict, task_config: Any, args: argparse.Namespace, work: Path
) -> dict:
    """The policy's true discounted return (cached per policy and settings)."""
    import torch

    from robot_rl.eval.batched import evaluate_batched
    from robot_rl.eval.metrics import bootstrap_mean_ci
    from robot_rl.policies import load_policy

    settings = {
        "policy": spec["id"],
        "gamma": args.gamma,
        "n_episodes": args.eval_episodes,
        "seed": EVAL_SEED,
        "task": dataclasses.asdict(task_config),
    }
    path = work / "true_returns" / f"{name}.json"
    cached = read_json(path)
    if cached is not None and cached.get("settings") == json.loads(json.dumps(settings)):
        return cached
    if spec["kind"] == "artifact":
        policy: Any = load_policy(spec["dir"])
    else:
        policy = noisy_expert(task_config, spec["noise_std"])
    t0 = time.perf_counter()
    with torch.no_grad():
        ev = evaluate_batched(
            policy,
            task_config,
            n_episodes=args.eval_episodes,
            seed=EVAL_SEED,
            n_threads=args.threads,
            discount=args.gamma,
        )
    r = {
        "discounted": np.array([e.discounted_return for e in ev.episodes]),
        "undiscounted": np.array([e.episode_return for e in ev.episodes]),
        "length": np.array([e.length for e in ev.episodes]),
        "success": np.array([e.success for e in ev.episodes]),
    }
    result = {
        "name": name,
        "settings": settings,
        "discounted_return": float(r["discounted"].mean()),
        "discounted_return_ci": list(bootstrap_mean_ci(r["discounted"], seed=0)),
        "discounted_return_std": float(r["discounted"].std(ddof=1)),
        "undiscounted_return": float(r["undiscounted"].mean()),
        "success_rate": float(r["success"].mean()),
        "mean_length": float(r["length"].mean()),
        "eval_s": time.perf_counter() - t0,
    }
    write_json(path, result)
    log(
        f"  true {name}: discounted {result['discounted_return']:.3f}, success "
        f"{result['success_rate']:.0%} ({result['eval_s']:.0f} s)"
    )
    return result


# --- offline estimates -------------------------------------------------------------------


def ope_dir(work: Path, args: argparse.Namespace) -> Path:
    return work / "ope" / f"seed{args.fqe_seed}"


def ope_settings(args: argparse.Namespace, horizon: int, store_generation: str | None) -> dict:
    return {
        "store_generation": store_generation,
        "gamma": args.gamma,
        "horizon_steps": horizon,
        "fqe_steps": args.fqe_steps,
        "importance_sampling": not args.no_is,
        "seed": args.fqe_seed,
    }


def offline_estimates(
    store_path: Path,
    specs: dict[str, dict],
    horizon: int,
    args: argparse.Namespace,
    work: Path,
) -> dict[str, dict]:
    """FQE (and WIS/PDWIS) of every policy; each cached as soon as it is ready."""
    from robot_rl.algos.ope import (
        ArtifactTarget,
        BehaviourConfig,
        ExpertTarget,
        FQEConfig,
        OPEConfig,
        evaluate_policies,
        load_ope_data,
    )
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.policies import load_policy

    with EpisodeStore.open(store_path, mode="r") as store:
        generation = store.generation
        settings = ope_settings(args, horizon, generation)
        results: dict[str, dict] = {}
        todo = []
        for name, spec in specs.items():
            cached = read_json(ope_dir(work, args) / f"{name}.json")
            if cached is not None and cached.get("settings") == settings | {"policy": spec["id"]}:
                results[name] = cached
            else:
                todo.append(name)
        if not todo:
            return results
        data = load_ope_data(store, horizon_steps=horizon)
    cfg = OPEConfig(
        gamma=args.gamma,
        horizon_steps=horizon,
        fqe=FQEConfig(steps=args.fqe_steps),
        importance_sampling=not args.no_is,
        behaviour=BehaviourConfig(),
        seed=args.fqe_seed,
        device="cpu",
    )
    targets: dict[str, Any] = {}
    for name in todo:
        spec = specs[name]
        if spec["kind"] == "artifact":
            targets[name] = ArtifactTarget(load_policy(spec["dir"]))
        else:
            targets[name] = ExpertTarget(data.task, spec["noise_std"], args.max_ee_step_m)
    log(
        f"OPE of {len(todo)} policies on {data.n_episodes} episodes ({data.n_rows} rows), "
        f"H={data.horizon_steps}, FQE {args.fqe_steps} steps"
    )
    t0 = time.perf_counter()

    def save(r: Any) -> None:
        d = r.to_dict() | {"settings": settings | {"policy": specs[r.name]["id"]}}
        d["wall_s_since_start"] = time.perf_counter() - t0
        write_json(ope_dir(work, args) / f"{r.name}.json", d)
        results[r.name] = d
        wis = "-" if r.wis is None else f"{r.wis:.3f}"
        log(f"  OPE {r.name}: FQE {r.fqe:.3f}, WIS {wis} ({r.fqe_train_s:.0f} s FQE)")

    evaluate_policies(data, targets, cfg, on_result=save)
    return results


# --- summary -----------------------------------------------------------------------------


def summarize(specs: dict[str, dict], true: dict[str, dict], ope: dict[str, dict]) -> dict:
    from robot_rl.algos.ope import spearman

    rows = []
    for name, spec in specs.items():
        t, o = true.get(name), ope.get(name)
        rows.append(
            {
                "policy": name,
                "group": spec["group"],
                "true_discounted_return": t and t["discounted_return"],
                "true_ci": t and t["discounted_return_ci"],
                "true_success_rate": t and t["success_rate"],
                "true_undiscounted_return": t and t["undiscounted_return"],
                "fqe": o and o["fqe"],
                "fqe_ci": o and o["fqe_ci"],
                "fqe_ci_kind": o and o["fqe_ci_kind"],
                "fqe_final_loss": o and o["fqe_final_loss"],
                "fqe_train_s": o and o["fqe_train_s"],
                "wis": o and o.get("wis"),
                "wis_ci": o and o.get("wis_ci"),
                "pdwis": o and o.get("pdwis"),
                "pdwis_ci": o and o.get("pdwis_ci"),
                "ess": o and o.get("ess"),
            }
        )

    def rank(sub: list[dict]) -> dict:
        out: dict[str, Any] = {"n": 0}
        for key in ("fqe", "wis", "pdwis"):
            pairs = [
                (r[key], r["true_discounted_return"])
                for r in sub
                if r[key] is not None and r["true_discounted_return"] is not None
            ]
            out[key] = spearman(*map(list, zip(*pairs, strict=True))) if len(pairs) > 1 else None
            out[f"n_{key}"] = len(pairs)
            out["n"] = max(out["n"], len(pairs))
        return out

    groups = sorted({r["group"] for r in rows})
    spearmans = {
        "all": rank(rows),
        **{g: rank([r for r in rows if r["group"] == g]) for g in groups},
    }
    fqe_all = spearmans["all"]["fqe"]
    complete = spearmans["all"]["n_fqe"] == len(specs)
    return {
        "rows": rows,
        "spearman": spearmans,
        "bar": {
            "bar": "FQE Spearman vs true discounted returns >= 0.7 over all policies",
            "value": fqe_all,
            "n_policies": spearmans["all"]["n_fqe"],
            "complete": complete,
            "met": None if fqe_all is None else bool(fqe_all >= 0.7),
        },
    }


def print_table(summary: dict) -> None:
    def f(v: Any, ci: Any = None) -> str:
        if v is None:
            return "-"
        s = f"{v:8.3f}"
        if ci and all(c is not None for c in ci):
            s += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
        return s

    print(
        f"{'policy':<20} {'true disc. return [95% CI]':<30} {'succ':>5}  "
        f"{'FQE [start-state CI]':<30} {'WIS':>8} {'PDWIS':>8}"
    )
    for r in summary["rows"]:
        succ = "-" if r["true_success_rate"] is None else f"{r['true_success_rate']:.0%}"
        print(
            f"{r['policy']:<20} {f(r['true_discounted_return'], r['true_ci']):<30} {succ:>5}  "
            f"{f(r['fqe'], r['fqe_ci']):<30} {f(r['wis']):>8} {f(r['pdwis']):>8}"
        )
    for g, s in summary["spearman"].items():
        print(
            f"Spearman ({g}, n={s['n']}): "
            + ", ".join(f"{k} {f(s[k]).strip()}" for k in ("fqe", "wis", "pdwis"))
        )
    b = summary["bar"]
    print(f"bar: {b['bar']}: {b['value']} over {b['n_policies']} policies -> met={b['met']}")


# --- main --------------------------------------------------------------------------------


def policy_order(names: list[str]) -> list[str]:
    """Interleaves the groups so that a run cut short still spans the range of policies."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.split("_")[0], []).append(n)
    for g in groups.values():  # extremes first: earliest, last, then the middle
        g[:] = [g[0], g[-1], *g[1:-1]] if len(g) > 2 else g
    out = []
    for i in range(max(len(g) for g in groups.values())):
        out += [g[i] for g in groups.values() if i < len(g)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=None, help="episode store (default: mixed push, 1000)")
    ap.add_argument("--episodes", type=int, default=1000, help="episodes of the dataset")
    ap.add_argument("--algos", default="bc,iql")
    ap.add_argument("--train-steps", type=int, default=10_000)
    ap.add_argument("--checkpoint-every", type=int, default=2000)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--expert-noise", default="0,0.2,0.5,1.0")
    ap.add_argument("--max-ee-step-m", type=float, default=0.02, help="task.max_ee_step_m")
    ap.add_argument("--eval-episodes", type=int, default=100, help="held-out sim episodes")
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--fqe-steps", type=int, default=10_000)
    ap.add_argument("--fqe-seed", type=int, default=0, help="seeds FQE, behaviour, bootstrap")
    ap.add_argument("--no-is", action="store_true", help="skip WIS/PDWIS")
    ap.add_argument("--stages", default="train,true,ope", help="stages to run (others: cache)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work-dir", type=Path, default=RESULTS_DIR / "ope_ranking")
    ap.add_argument("--out", default="ope_ranking", help="summary name under results/")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    args.algos = [a for a in args.algos.split(",") if a]
    noise = [float(s) for s in args.expert_noise.split(",") if s.strip()]
    stages = set() if args.summary_only else set(args.stages.split(","))

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.sim.env import RobotEnv
    from robot_rl.teleop.make_dataset import RECIPES, task_config

    work: Path = args.work_dir
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    store_path = dataset(args, work)
    tc = task_config(TASK, RECIPES[RECIPE])
    env = RobotEnv(task_config=tc)
    horizon = int(env.horizon_steps)
    env.close()

    specs: dict[str, dict] = {}
    with EpisodeStore.open(store_path, mode="r") as store:
        n_store_episodes = store.n_episodes
        if "train" in stages:
            t0 = time.perf_counter()
            dirs = artifact_policies(store, args, work)
            timings["train_and_export_s"] = time.perf_counter() - t0
        else:
            steps = range(args.checkpoint_every, args.train_steps + 1, args.checkpoint_every)
            names = [f"{name}_step{step}" for name in args.algos for step in steps]
            dirs = {n: policy_dir(work, n, args) for n in names}
            dirs = {n: d for n, d in dirs.items() if (d / "manifest.json").is_file()}
    for name, pdir in dirs.items():
        manifest = read_json(pdir / "manifest.json") or {}
        specs[name] = {
            "kind": "artifact",
            "group": name.split("_")[0],
            "dir": str(pdir),
            "id": manifest.get("weights_sha256"),
        }
    for s in noise:
        specs[f"expert_sigma={s:g}"] = {
            "kind": "expert",
            "group": "expert",
            "noise_std": s,
            "id": f"scripted-expert:{TASK}:sigma={s:g}",
        }
    specs = {n: specs[n] for n in policy_order(list(specs))}

    true: dict[str, dict] = {}
    t0 = time.perf_counter()
    for name, spec in specs.items():
        if "true" in stages:
            true[name] = true_return(name, spec, tc, args, work)
        else:
            cached = read_json(work / "true_returns" / f"{name}.json")
            if cached is not None:
                true[name] = cached
    timings["true_returns_s"] = time.perf_counter() - t0
    if "true" in stages:
        write_json(work / "true_returns.json", {n: t["discounted_return"] for n, t in true.items()})

    t0 = time.perf_counter()
    if "ope" in stages:
        ope = offline_estimates(store_path, specs, horizon, args, work)
    else:
        ope = {}
        with EpisodeStore.open(store_path, mode="r") as store:
            settings = ope_settings(args, horizon, store.generation)
        for name, spec in specs.items():
            cached = read_json(ope_dir(work, args) / f"{name}.json")
            if cached is not None and cached.get("settings") == settings | {"policy": spec["id"]}:
                ope[name] = cached
    timings["ope_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start

    summary = summarize(specs, true, ope)
    print_table(summary)
    write_result(
        args.out,
        {
            "settings": {
                "task": TASK,
                "recipe": RECIPE,
                "store": str(store_path),
                "store_episodes": n_store_episodes,
                "algos": args.algos,
                "train_steps": args.train_steps,
                "checkpoint_every": args.checkpoint_every,
                "train_seed": args.train_seed,
                "expert_noise": noise,
                "eval_episodes": args.eval_episodes,
                "eval_seed": EVAL_SEED,
                "gamma": args.gamma,
                "horizon_steps": horizon,
                "fqe_steps": args.fqe_steps,
                "fqe_seed": args.fqe_seed,
                "fqe_ci": "start-state bootstrap of one fit (too narrow: no fitting error)",
                "importance_sampling": not args.no_is,
                "threads": args.threads,
            },
            # Work done by whichever invocation computed each cached piece.
            "timings_s": {
                **{
                    f"train_{a}_s": (read_json(run_dir(work, a, args) / "timing.json") or {}).get(
                        "train_s"
                    )
                    for a in args.algos
                },
                "sim_eval_total_s": sum(t["eval_s"] for t in true.values()),
                "fqe_fit_total_s": sum(o["fqe_train_s"] for o in ope.values()),
                "sim_eval_s": {n: t["eval_s"] for n, t in true.items()},
            },
            "timings_this_invocation_s": timings,
            **summary,
        },
    )


if __name__ == "__main__":
    main()
