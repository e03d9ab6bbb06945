"""Why a CQL run did what it did: its critic and actor at the final checkpoint of
``offline_quality.py`` runs, measured on a fixed sample of the run's dataset.

For each run (default: every CQL run on mixed push, the reported ones and every variant):

- ``q_data``: mean Q of the data's actions (both critics), next to ``mc_return``, the
  data's discounted return-to-go from the same rows (same reward scale and discount);
- ``td_residual_mean`` / ``td_residual_sd``: ``Q(s, a) - (r + gamma (1 - d) min Q'(s', a'))``
  with ``a' ~ pi(.|s')``, per critic, averaged;
- ``q_pi_minus_q_data``: ``min Q(s, tanh(mean))`` minus ``min Q(s, a_data)``, the
  deployed action against the data's; ``q_sample_minus_q_data`` the same for actions
  sampled from the policy (10 per state); ``q_uniform_minus_q_data`` for uniform ones;
- ``abs_mean_action``: per action dim, ``|tanh(mean)|`` of the policy against
  ``abs_data_action``, the data's ``|a|``; ``policy_std``: the pre-tanh std per dim.

Differences are in units of the run's rewards; ``reward_mean`` is the data's mean
per-step reward on that scale, the yardstick for them.

For reference the same measures are taken of the reported IQL and TD3+BC runs, each
against the TD target its critic trains toward: ``V(s')`` for IQL, ``min Q'(s',
pi'(s'))`` for TD3+BC (without its target noise).

    python benchmarks/cql_diagnostics.py                        # every CQL push run
    python benchmarks/cql_diagnostics.py --runs default,bf16,bf16_nois
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, write_result

WORK_DIR = RESULTS_DIR / "offline_quality" / "runs_scratch"
DATA = RESULTS_DIR / "offline_data" / "push_mixed_1000.zarr"


def run_dirs(names: list[str] | None) -> dict[str, tuple[str, Path]]:
    """``{label: (algorithm, work dir)}``: the CQL push/mixed runs (label ``default`` =
    reported), then the reported IQL and TD3+BC runs (labels ``iql``, ``td3bc``)."""
    found = {}
    for d in sorted(WORK_DIR.glob("push_mixed_cql_s*")):
        seed, _, variant = d.name[len("push_mixed_cql_") :].partition("_")
        if names is None or (variant or "default") in names:
            found[f"{variant or 'default'}/{seed}"] = ("cql", d)
    for algo in ("iql", "td3bc"):
        for d in sorted(WORK_DIR.glob(f"push_mixed_{algo}_s?")):
            if names is None or algo in names:
                found[f"{algo}/{d.name.rsplit('_', 1)[1]}"] = (algo, d)
    return found


def load_run(algo_name: str, run: Path, store):
    """The run's algorithm at its last checkpoint (config fields added since take their
    defaults)."""
    from safetensors.torch import load_file

    from robot_rl.algos import ALGORITHMS
    from robot_rl.algos.algorithm import AlgorithmState
    from robot_rl.algos.checkpoint import iter_checkpoints
    from robot_rl.policies import Normalizer

    algo_cls, config_cls = ALGORITHMS[algo_name]
    ckpt = iter_checkpoints(run / "train")[-1]
    meta = json.loads((ckpt / "trainer.json").read_text())
    known = config_cls.__dataclass_fields__
    cfg = config_cls(**{k: v for k, v in meta["algo_config"].items() if k in known})
    keys = store.obs_keys
    shapes = {k: tuple(store.obs_spec[k][0]) for k in keys}
    norm = Normalizer.from_stats({k: store.stats(k) for k in keys}, keys, shapes)
    obs_dim = int(sum(np.prod(s) for s in shapes.values()))
    algo = algo_cls(obs_dim, store.action_dim, cfg, norm)
    tensors = load_file(str(ckpt / "state.safetensors"))
    algo.load_state_dict(
        AlgorithmState(
            {k[5:]: v for k, v in tensors.items() if k.startswith("algo.")}, meta["algo_state"]
        )
    )
    return algo, cfg, int(meta["step"])


def data_rows(store, cfg, n: int, seed: int, cache: dict):
    """The ``n`` fixed transitions (with Monte-Carlo returns) a run is measured on, on
    the run's reward scale and discount; built once per scale and discount."""
    from robot_rl.data.returns import return_range_scale
    from robot_rl.data.sampler import TransitionSampler

    normalization = getattr(cfg, "reward_normalization", "none")
    key = (normalization, cfg.discount)
    if key not in cache:
        scale = return_range_scale(store) if normalization == "return_range" else 1.0
        sampler = TransitionSampler(
            store, batch_size=n, seed=seed, reward_scale=scale, mc_return_discount=cfg.discount
        )
        cache[key] = sampler.sample()
    return cache[key]


@torch.no_grad()
def diagnose(algo_name: str, algo, cfg, b, seed: int) -> dict:
    """The measures of the module docstring for one run on the transitions ``b``."""
    torch.manual_seed(seed)
    norm = algo.actor().normalizer
    obs, next_obs = norm(b.obs), norm(b.next_obs)
    q = algo.critic(obs, b.action)  # (2, n)
    if algo_name == "iql":
        next_value = algo.value(next_obs).float().reshape(-1)
    elif algo_name == "td3bc":
        next_value = algo.critic_target(next_obs, algo.policy_target(b.next_obs)).amin(0)
    else:
        next_value = algo.critic_target(next_obs, algo.policy.sample(next_obs)[0]).amin(0)
    residual = q - (b.reward + cfg.discount * (1 - b.terminated) * next_value)
    q_min = q.amin(0)
    deployed = algo.actor()(b.obs)
    uniform = algo.critic(obs, torch.rand_like(b.action) * 2 - 1).amin(0)
    row = {
        "reward_mean": float(b.reward.mean()),
        "q_data": float(q.mean()),
        "mc_return": float(b.mc_return.mean()),
        "td_residual_mean": float(residual.mean()),
        "td_residual_sd": float(residual.std(dim=1).mean()),
        "q_pi_minus_q_data": float((algo.critic(obs, deployed).amin(0) - q_min).mean()),
        "q_sample_minus_q_data": None,
        "q_uniform_minus_q_data": float((uniform - q_min).mean()),
        "abs_mean_action": [round(v, 3) for v in deployed.abs().mean(0).tolist()],
        "abs_data_action": [round(v, 3) for v in b.action.abs().mean(0).tolist()],
        "policy_std": None,
    }
    if algo_name == "cql":
        sampled = torch.stack(
            [algo.critic(obs, algo.policy.sample(obs)[0]).amin(0) for _ in range(10)]
        ).mean(0)
        row["q_sample_minus_q_data"] = float((sampled - q_min).mean())
        row["policy_std"] = [
            round(v, 3) for v in algo.policy.mean_log_std(obs)[1].exp().mean(0).tolist()
        ]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--runs", default=None, help="CQL variant names, 'default', 'iql', 'td3bc' (default: all)"
    )
    ap.add_argument("--rows", type=int, default=20_000, help="transitions sampled")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from robot_rl.algos.checkpoint import iter_checkpoints
    from robot_rl.data.episode_store import EpisodeStore

    names = args.runs.split(",") if args.runs else None
    results, batches = {}, {}
    with EpisodeStore.open(DATA) as store:
        for label, (algo_name, run) in run_dirs(names).items():
            if not iter_checkpoints(run / "train"):
                print(f"{label:22s} no checkpoint (the run did not finish)")
                continue
            algo, cfg, step = load_run(algo_name, run, store)
            row = {"algo": algo_name, "step": step}
            b = data_rows(store, cfg, args.rows, args.seed, batches)
            row |= diagnose(algo_name, algo, cfg, b, args.seed)
            variant, seed = label.split("/")
            runs = RESULTS_DIR / "offline_quality" / "runs"
            if variant not in ("default", "iql", "td3bc"):
                runs = runs / "variants" / variant
            result = runs / f"push_mixed_{algo_name}_{seed}_n1000_k{step}.json"
            if result.exists():  # the run's success, from offline_quality's JSON
                row["success_rate"] = json.loads(result.read_text())["success_rate"]
            results[label] = row
            sample = row["q_sample_minus_q_data"]
            print(
                f"{label:22s} success {row.get('success_rate', float('nan')):.2f}  "
                f"q_data {row['q_data']:8.2f} (mc {row['mc_return']:7.2f})  "
                f"Q(pi)-Q(data) {row['q_pi_minus_q_data']:+6.2f}  "
                + (f"Q(sample)-Q(data) {sample:+6.2f}  " if sample is not None else "")
                + f"TD residual {row['td_residual_mean']:+.2f} sd {row['td_residual_sd']:.2f}  "
                f"|a| pi {row['abs_mean_action']}",
                flush=True,
            )
    write_result("cql_diagnostics", {"rows": args.rows, "seed": args.seed, "runs": results})


if __name__ == "__main__":
    main()
