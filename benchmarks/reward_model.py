"""Offline RL on learned rewards: IQL on a preference-trained reward against IQL on the
true rewards, on the mixed push dataset.

The issue's recipe: a synthetic teacher (:func:`robot_rl.algos.rewards.add_synthetic_preferences`)
labels 500 random episode pairs of the 1000-episode mixed push store, preferring the
higher true return, with 10% of its verdicts flipped. A Bradley-Terry reward
(:func:`robot_rl.algos.rewards.train_preference_model`) on the end-effector, object and
goal positions (``ee_pos, object_pos, goal``: what a person judging a push looks at) is
fitted to those preferences on a copy of the store with its rewards removed, and
relabels that copy
(:func:`robot_rl.algos.rewards.relabel.relabel`). IQL (10k gradient steps, batch 256, 2x256
networks) is trained on (a) the true rewards and (b) the learned ones with the same
seeds, and each policy is evaluated on 100 held-out episodes (seeds 10_000 + i). The bar:
success of (b) >= 90% of success of (a).

Stages, each cached under ``benchmarks/results/reward_model/`` (a rerun continues):

1. ``push_mixed_1000_true.zarr``: a copy of the benchmark store (true rewards) with the
   teacher's preferences added (the teacher reads the true returns, so it must label a
   store that still has rewards; the preferences name episodes by ``episode_id``);
2. ``push_mixed_1000_stripped.zarr``: that copy without rewards (labels kept);
3. ``model_learned_keys-ee_pos-object_pos-goal/``: the Bradley-Terry reward model,
   trained on the stripped store;
4. ``push_mixed_1000_learned_keys-ee_pos-object_pos-goal.zarr``: the stripped store
   relabelled by the model;
5. ``runs/{true,learned_keys-...}_s{seed}.json``: one IQL run each, trained and evaluated.

The summary (``benchmarks/results/reward_model.json``) also reports how well the learned
reward ranks episodes: the Spearman correlation of learned against true episode returns
over all 1000 episodes, and the agreement with the true order on random pairs the teacher
never labelled.

Other inputs are variants (``--reward-obs-keys``), cached apart and reported next to the
recipe's, which alone decides the bar. ``--reward-obs-keys all`` gives the reward every
observation key (the library's default; cached as ``model/``, ``*_learned.zarr``,
``runs/learned_*``): with 500 labels it also keys on joint positions and velocities,
which track how noisy an episode was rather than its progress, and its per-step rewards
correlate far less with the true ones.

    python benchmarks/reward_model.py                   # seeds 0, 1, 2
    python benchmarks/reward_model.py --seeds 0
    python benchmarks/reward_model.py --seeds 0 --reward-obs-keys all
    python benchmarks/reward_model.py --summary-only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    EVAL_SEED,
    RESULTS_DIR,
    benchmark_train_config,
    train_and_evaluate,
    write_result,
    write_run,
)

SRC_STORE = RESULTS_DIR / "offline_data" / "push_mixed_1000.zarr"
WORK_DIR = RESULTS_DIR / "reward_model"
TRUE_STORE = WORK_DIR / "push_mixed_1000_true.zarr"
STRIPPED_STORE = WORK_DIR / "push_mixed_1000_stripped.zarr"
RUNS_DIR = WORK_DIR / "runs"
STAGES_FILE = WORK_DIR / "stages.json"
N_PAIRS = 500
FLIP_PROB = 0.1
TEACHER_SEED = 0
REWARD_SEED = 0
TARGET_RATIO = 0.9
#: What the recipe's reward model sees.
RECIPE_OBS_KEYS = ("ee_pos", "object_pos", "goal")


@dataclass(frozen=True)
class Variant:
    """One preference-trained reward and where its stages are cached.

    ``obs_keys`` None is every observation key (the library's default); the recipe is
    :data:`RECIPE_OBS_KEYS`.
    """

    obs_keys: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return "learned" if self.obs_keys is None else "learned_keys-" + "-".join(self.obs_keys)

    @property
    def model_dir(self) -> Path:
        return WORK_DIR / ("model" if self.obs_keys is None else f"model_{self.name}")

    @property
    def store(self) -> Path:
        return WORK_DIR / f"push_mixed_1000_{self.name}.zarr"

    @property
    def quality_file(self) -> Path:
        suffix = "" if self.obs_keys is None else f"_{self.name}"
        return WORK_DIR / f"reward_quality{suffix}.json"

    @property
    def stage_suffix(self) -> str:
        return "" if self.obs_keys is None else f"/{self.name}"


def _log(msg: str) -> None:
    print(msg, flush=True)


def _stages() -> dict:
    return json.loads(STAGES_FILE.read_text()) if STAGES_FILE.exists() else {}


def _record_stage(name: str, info: dict) -> None:
    doc = _stages()
    doc[name] = info
    tmp = STAGES_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(STAGES_FILE)


def _clear(path: Path) -> None:
    """Remove ``path`` and any temporary siblings a killed run left (``.*<name>*``)."""
    for stale in (path, *path.parent.glob(f".*{path.name}*")):
        shutil.rmtree(stale, ignore_errors=True)


def _source_store() -> Path:
    """The shared benchmark store (read-only here); recorded if it does not exist yet."""
    if not (SRC_STORE / "commit.json").exists():
        from robot_rl.teleop.make_dataset import make_dataset

        # Another benchmark may be recording the shared store: record a private one.
        path = WORK_DIR / "push_mixed_1000_source.zarr"
        if not (path / "commit.json").exists():
            _log(f"recording {path.name} ...")
            make_dataset("push", "mixed", path, n_episodes=1000, seed=0, overwrite=True)
        return path
    return SRC_STORE


def stage_true_store() -> None:
    """Copy the benchmark store and add the teacher's preferences, built aside and then
    renamed into place, so an interrupted run never leaves a half-labelled store."""
    if (TRUE_STORE / "commit.json").exists() and "true_store" in _stages():
        return
    from robot_rl.algos.rewards import add_synthetic_preferences
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.governance import filter_episodes

    building = WORK_DIR / f".{TRUE_STORE.name}.building"
    _clear(TRUE_STORE)  # also clears ``building`` and the copy's own temporaries
    t0 = time.perf_counter()
    src = _source_store()
    n = filter_episodes(src, building, lambda _i, _prov: True)
    copy_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with EpisodeStore.open(building, "a") as store:
        if store.preferences():
            raise RuntimeError(f"{src} already holds preferences; expected an unlabelled store")
        teacher = add_synthetic_preferences(store, N_PAIRS, flip_prob=FLIP_PROB, seed=TEACHER_SEED)
    teacher_s = time.perf_counter() - t0
    os.rename(building, TRUE_STORE)
    verdicts = [p for _, _, p in teacher.pairs]
    _record_stage(
        "true_store",
        {
            "source": str(src.relative_to(RESULTS_DIR.parent.parent)),
            "n_episodes": n,
            "copy_s": copy_s,
            "n_pairs": len(teacher.pairs),
            "n_flipped": teacher.n_flipped,
            "n_equal": verdicts.count("equal"),
            "distinct_episodes_labelled": len({i for a, b, _ in teacher.pairs for i in (a, b)}),
            "teacher_s": teacher_s,
        },
    )
    _log(f"copied {n} episodes, {len(teacher.pairs)} preferences ({teacher.n_flipped} flipped)")


def stage_stripped_store() -> None:
    if (STRIPPED_STORE / "commit.json").exists():
        return
    from robot_rl.algos.rewards.relabel import strip_rewards
    from robot_rl.data.episode_store import EpisodeStore

    _clear(STRIPPED_STORE)
    t0 = time.perf_counter()
    strip_rewards(TRUE_STORE, STRIPPED_STORE)
    strip_s = time.perf_counter() - t0
    with EpisodeStore.open(STRIPPED_STORE) as store:
        if store.has_rewards or len(store.preferences()) != N_PAIRS:
            raise RuntimeError(
                f"{STRIPPED_STORE}: expected no rewards and {N_PAIRS} preferences, got "
                f"has_rewards={store.has_rewards}, {len(store.preferences())} preferences"
            )
        source = store.reward_source
    _record_stage("stripped_store", {"strip_s": strip_s, "reward_source": source})
    _log(f"stripped rewards in {strip_s:.1f} s")


def stage_model(args: argparse.Namespace, v: Variant) -> None:
    if (v.model_dir / "reward_model.json").exists():
        return
    import dataclasses

    from robot_rl.algos.rewards import PreferenceConfig, train_preference_model
    from robot_rl.data.episode_store import EpisodeStore

    cfg = PreferenceConfig(
        seed=REWARD_SEED, obs_keys=None if v.obs_keys is None else list(v.obs_keys)
    )
    if args.reward_steps is not None:
        cfg.steps = args.reward_steps
    t0 = time.perf_counter()
    with EpisodeStore.open(STRIPPED_STORE) as store:
        model = train_preference_model(store, cfg)
    train_s = time.perf_counter() - t0
    shutil.rmtree(v.model_dir, ignore_errors=True)
    model.save(v.model_dir)
    _record_stage(
        "model" + v.stage_suffix,
        {
            "train_s": train_s,
            "model_id": model.model_id,
            "config": dataclasses.asdict(cfg),
            "metrics": model.spec.training.get("metrics"),
            "reward_scale": model.spec.reward_scale,
        },
    )
    _log(f"reward model trained in {train_s:.1f} s: {model.spec.training.get('metrics')}")


def stage_learned_store(v: Variant) -> None:
    if (v.store / "commit.json").exists():
        return
    from robot_rl.algos.rewards.relabel import relabel

    _clear(v.store)
    t0 = time.perf_counter()
    result = relabel(STRIPPED_STORE, v.store, v.model_dir)
    relabel_s = time.perf_counter() - t0
    _record_stage(
        "learned_store" + v.stage_suffix,
        {"relabel_s": relabel_s, "reward_source": result.reward_source},
    )
    _log(f"relabelled {result.n_steps} rows in {relabel_s:.1f} s")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks, 0-based, ties averaged (as Spearman's rho wants)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


def reward_quality(learned_store: Path) -> dict:
    """How the learned returns rank the episodes against the true returns."""
    from robot_rl.algos.rewards import episode_returns
    from robot_rl.data.episode_store import EpisodeStore

    with EpisodeStore.open(TRUE_STORE) as t, EpisodeStore.open(learned_store) as lrn:
        if t.episode_ids() != lrn.episode_ids():
            raise RuntimeError("the true and learned stores hold different episodes or orders")
        true_ret, learned_ret = episode_returns(t), episode_returns(lrn)
        ids = {eid: i for i, eid in enumerate(t.episode_ids())}
        labelled = {frozenset((ids[p.episode_a], ids[p.episode_b])) for p in t.preferences()}
        lengths = np.diff(np.r_[0, t.episode_ends])
        true_step = t.array("reward").astype(np.float64)
        learned_step = lrn.array("reward").astype(np.float64)
        success = np.array([bool(t.provenance(i).success) for i in range(t.n_episodes)])
    rng = np.random.default_rng(12345)
    n = len(true_ret)
    agree, total = 0, 0
    while total < 5000:
        a, b = rng.choice(n, size=2, replace=False)
        if frozenset((int(a), int(b))) in labelled or true_ret[a] == true_ret[b]:
            continue
        agree += bool((learned_ret[a] > learned_ret[b]) == (true_ret[a] > true_ret[b]))
        total += 1
    return {
        "spearman_episode_returns": spearman(learned_ret, true_ret),
        "spearman_episode_returns_successful": spearman(learned_ret[success], true_ret[success]),
        "spearman_episode_returns_failed": spearman(learned_ret[~success], true_ret[~success]),
        "pearson_step_rewards": float(np.corrcoef(learned_step, true_step)[0, 1]),
        "spearman_learned_return_vs_length": spearman(learned_ret, lengths),
        "spearman_true_return_vs_length": spearman(true_ret, lengths),
        "heldout_pair_agreement": agree / total,
        "heldout_pairs": total,
        "true_step_reward_mean_std": [float(true_step.mean()), float(true_step.std())],
        "learned_step_reward_mean_std": [float(learned_step.mean()), float(learned_step.std())],
        "n_successful_episodes": int(success.sum()),
    }


def run_one(kind: str, store_path: Path, seed: int, args: argparse.Namespace) -> dict:
    from robot_rl.config.algos import IQLConfig

    out_dir = WORK_DIR / "runs_scratch" / f"iql_{kind}_s{seed}_k{args.steps}"
    train = benchmark_train_config(args.steps, seed)
    result = train_and_evaluate(
        store_path, "push", IQLConfig(), train, out_dir, args.eval_episodes, args.threads
    )
    return {"rewards": kind, **result}


def summarize(runs: list[dict], qualities: dict[str, dict]) -> dict:
    """Per learned-reward variant: success against the true rewards on the seeds both
    have, and the ratio; the issue's bar is the default variant's (``learned``)."""
    by: dict[str, dict[int, float]] = {}
    for r in runs:
        by.setdefault(r["rewards"], {})[r["seed"]] = r["success_rate"]
    true = by.get("true", {})
    out: dict = {"success_true_per_seed": {str(k): v for k, v in sorted(true.items())}}
    for name in sorted(k for k in by if k != "true"):
        learned = by[name]
        paired = sorted(set(true) & set(learned))
        row: dict = {
            "per_seed": {str(s): {"true": true[s], "learned": learned[s]} for s in paired},
            "unpaired_seeds": sorted(set(learned) - set(true)),
        }
        if paired:
            t = float(np.mean([true[s] for s in paired]))
            lrn = float(np.mean([learned[s] for s in paired]))
            ratio = lrn / t if t > 0 else None
            row.update(
                {
                    "seeds": paired,
                    "success_true_mean": t,
                    "success_learned_mean": lrn,
                    "ratio": ratio,
                    "met": ratio is not None and ratio >= TARGET_RATIO,
                }
            )
        if name in qualities:
            row["reward_quality"] = qualities[name]
        out[name] = row
    default = out.get(Variant(RECIPE_OBS_KEYS).name, {})
    if "ratio" in default:
        out["bar"] = {
            "bar": f"IQL on learned rewards >= {TARGET_RATIO:.0%} of IQL on true rewards",
            "value": default["ratio"],
            "seeds": default["seeds"],
            "met": default["met"],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="IQL seeds (both reward kinds each)")
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--eval-episodes", type=int, default=100)
    ap.add_argument("--reward-steps", type=int, default=None, help="BT steps (default: library's)")
    ap.add_argument(
        "--reward-obs-keys",
        default=",".join(RECIPE_OBS_KEYS),
        help="comma list of the keys the reward sees, or 'all' (default: the recipe's "
        f"{','.join(RECIPE_OBS_KEYS)}); each choice is cached apart",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    keys = args.reward_obs_keys
    v = Variant(None if keys == "all" else tuple(keys.split(",")))
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        stage_true_store()
        stage_stripped_store()
        stage_model(args, v)
        stage_learned_store(v)
    if (v.store / "commit.json").exists() and not v.quality_file.exists():
        v.quality_file.write_text(json.dumps(reward_quality(v.store), indent=2) + "\n")
    if v.quality_file.exists():
        q = json.loads(v.quality_file.read_text())
        _log(
            f"{v.name} vs true episode returns: Spearman {q['spearman_episode_returns']:.3f}, "
            f"held-out pair agreement {q['heldout_pair_agreement']:.1%}"
        )
    if not args.summary_only:
        for seed in (int(s) for s in args.seeds.split(",")):
            for kind, store_path in (("true", TRUE_STORE), (v.name, v.store)):
                tag = f"{kind}_s{seed}_k{args.steps}_e{args.eval_episodes}"
                path = RUNS_DIR / f"{tag}.json"
                if path.exists():
                    continue
                _log(f"iql {tag} ...")
                write_run(path, run_one(kind, store_path, seed, args))
    runs = [
        json.loads(p.read_text())
        for p in sorted(RUNS_DIR.glob(f"*_k{args.steps}_e{args.eval_episodes}.json"))
    ]
    qualities = {}
    for path in sorted(WORK_DIR.glob("reward_quality*.json")):
        suffix = path.stem.removeprefix("reward_quality").removeprefix("_")
        qualities[suffix or "learned"] = json.loads(path.read_text())
    summary = summarize(runs, qualities)
    for name in qualities.keys() | {r["rewards"] for r in runs} - {"true"}:
        for s, r in summary.get(name, {}).get("per_seed", {}).items():
            _log(f"{name} seed {s}: true {r['true']:.0%}, learned {r['learned']:.0%}")
    if "bar" in summary:
        bar = summary["bar"]
        _log(f"{'MET ' if bar['met'] else 'MISS'} {bar['bar']}: {bar['value']}")
    # Seed-0 diagnostics (scratch scripts kept in the same folder), reported, never scored.
    diagnostics = [json.loads(p.read_text()) for p in sorted((WORK_DIR / "diag").glob("*.json"))]
    write_result(
        "reward_model",
        {
            "recipe": {
                "store": "push mixed, 1000 episodes (make_dataset seed 0)",
                "n_pairs": N_PAIRS,
                "flip_prob": FLIP_PROB,
                "teacher_seed": TEACHER_SEED,
                "reward_seed": REWARD_SEED,
                "algo": "iql",
                "steps": args.steps,
                "batch_size": 256,
                "hidden_sizes": [256, 256],
                "eval_episodes": args.eval_episodes,
                "eval_seed": EVAL_SEED,
            },
            "stages": _stages(),
            "runs": len(runs),
            **summary,
            "diagnostics": diagnostics,
        },
    )


if __name__ == "__main__":
    main()
