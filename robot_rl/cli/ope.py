"""robot-rl-ope: offline policy evaluation of saved policies (and the scripted expert) on
an episode store (a plain CLI, no Hydra).

robot-rl-ope STORE --policy [NAME=]DIR [--policy ...] [--expert-noise 0,0.2,0.5,1.0]
             [--out report.json] [--true-returns returns.json] [--gamma 0.99]
             [--horizon-steps H] [--fqe-steps N] [--bootstrap-refits B] [--no-is] ...

Prints a table of FQE, WIS and per-decision WIS estimates with their confidence intervals
(see :mod:`robot_rl.algos.ope.evaluate` for what each interval covers) and writes them as JSON.
With ``--true-returns`` (a JSON object ``{policy name: sim return}``, returns computed
with the same reward, discount and horizon) it adds the Spearman rank correlation of each
estimator with the true returns. Policy names are ``NAME`` if given, else the directory
as typed; the expert's are ``expert_sigma=<σ>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from robot_rl.cli.common import console, defaults_from_configs, fail_on_user_error, given
from robot_rl.config.sim import TaskConfig


def thin_ess(results: Sequence[Any]) -> list[str]:
    """Names of the policies whose importance-sampling effective sample size (Kish's) is
    under a tenth of the episodes: a few episodes then carry their WIS/PDWIS estimates,
    and the bootstrap intervals say little."""
    return [r.name for r in results if r.ess is not None and r.ess < 0.1 * r.n_episodes]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


#: Options that set a field of OPEConfig, FQEConfig or BehaviourConfig (dest -> field);
#: unset, they keep the dataclass's default.
OPE_OPTIONS = {
    "gamma": "gamma",
    "bootstrap_refits": "bootstrap_refits",
    "bootstrap_resamples": "bootstrap_resamples",
    "confidence": "confidence",
    "is_target_std": "is_target_std",
    "seed": "seed",
}
FQE_OPTIONS = {
    "fqe_steps": "steps",
    "fqe_hidden": "hidden_sizes",
    "fqe_lr": "lr",
    "fqe_batch_size": "batch_size",
    "fqe_tau": "tau",
}
BEHAVIOUR_OPTIONS = {"behaviour_steps": "steps"}


def _config_defaults() -> dict[str, Any]:
    """Each option's default, read from the dataclass it sets (for --help only: this
    imports torch)."""
    from robot_rl.algos.ope import BehaviourConfig, FQEConfig, OPEConfig

    out: dict[str, Any] = {}
    for options, config in (
        (OPE_OPTIONS, OPEConfig()),
        (FQE_OPTIONS, FQEConfig()),
        (BEHAVIOUR_OPTIONS, BehaviourConfig()),
    ):
        out |= {dest: getattr(config, field) for dest, field in options.items()}
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="robot-rl-ope",
        description="Offline policy evaluation (FQE, weighted importance sampling) with "
        "bootstrap confidence intervals.",
        formatter_class=defaults_from_configs(_config_defaults),
    )
    p.add_argument("store", help="episode store with rewards")
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="policy artifact directory (repeat for several)",
    )
    p.add_argument(
        "--expert-noise",
        type=_floats,
        default=[],
        metavar="S1,S2,...",
        help="also evaluate the store task's scripted expert with these action-noise σ",
    )
    p.add_argument(
        "--expert-max-ee-step-m",
        type=float,
        default=TaskConfig.max_ee_step_m,
        help="task.max_ee_step_m (default: %(default)s)",
    )
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    p.add_argument(
        "--true-returns",
        type=Path,
        help="JSON {policy name: true discounted return}: report Spearman rank correlations",
    )
    p.add_argument("--gamma", type=float, help="discount per control step")
    p.add_argument(
        "--horizon-steps",
        type=int,
        default=None,
        help="episode length H of the return (default: the store's longest episode; "
        "0 = infinite horizon)",
    )
    p.add_argument("--fqe-steps", type=int, help="FQE gradient steps per fit")
    p.add_argument("--fqe-hidden", type=_ints, metavar="W1,W2,...", help="Q-network widths")
    p.add_argument("--fqe-lr", type=float, help="FQE learning rate")
    p.add_argument("--fqe-batch-size", type=int, help="FQE batch size")
    p.add_argument("--fqe-tau", type=float, help="FQE target Polyak rate")
    p.add_argument(
        "--bootstrap-refits",
        type=int,
        help="refit FQE on B episode-resampled datasets for its interval (slow; 0: "
        "resample the start states of one fit, which understates the uncertainty)",
    )
    p.add_argument("--bootstrap-resamples", type=int, help="resamples of cheap bootstraps")
    p.add_argument("--confidence", type=float, help="interval level")
    p.add_argument("--no-is", action="store_true", help="skip importance sampling")
    p.add_argument(
        "--is-target-std",
        type=float,
        help="smallest std of the target Gaussian in importance sampling, in the actions' "
        "normalized [-1, 1] units (a raw-unit store's actions are mapped there)",
    )
    p.add_argument("--behaviour-steps", type=int, help="behaviour-fit steps")
    p.add_argument("--seed", type=int, help="seeds networks, batches and bootstraps")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--progress", action="store_true", help="show training progress bars")
    return p


def _policy_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if sep and name and path and not Path(text).exists():
        return name, path
    return text, text


def _config(args: argparse.Namespace) -> Any:
    from robot_rl.algos.ope import BehaviourConfig, FQEConfig, OPEConfig

    return OPEConfig(
        **given(args, OPE_OPTIONS),
        horizon_steps=args.horizon_steps,
        fqe=FQEConfig(**given(args, FQE_OPTIONS)),
        importance_sampling=not args.no_is,
        behaviour=BehaviourConfig(**given(args, BEHAVIOUR_OPTIONS)),
        device=None if args.device == "auto" else args.device,
        progress=args.progress,
    )


def _read_true_returns(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"--true-returns {path}: not valid JSON ({exc})") from exc
    if isinstance(data, dict) and isinstance(data.get("returns"), dict):
        data = data["returns"]
    if not isinstance(data, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()
    ):
        raise ValueError(f"--true-returns {path}: expected a JSON object {{policy name: number}}")
    return {str(k): float(v) for k, v in data.items()}


def _fmt(value: float | None, ci: Any = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    text = f"{value:.3f}"
    if ci is not None and all(c is not None and math.isfinite(c) for c in ci):
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return text


def run(args: argparse.Namespace) -> int:
    from robot_rl.algos.ope import ArtifactTarget, ExpertTarget, evaluate_policies, load_ope_data
    from robot_rl.algos.ope.evaluate import spearman
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.eval.metrics import _json_safe, bootstrap_mean_ci
    from robot_rl.policies.artifact import load_policy

    cfg = _config(args)
    if not args.policy and not args.expert_noise:
        raise ValueError("nothing to evaluate: give --policy DIR and/or --expert-noise S,...")
    true_returns = _read_true_returns(args.true_returns) if args.true_returns else None
    with EpisodeStore.open(args.store, mode="r") as store:
        data = load_ope_data(store, horizon_steps=cfg.horizon_steps)
    device = "cpu" if cfg.device is None else cfg.device
    policies: dict[str, Any] = {}
    for text in args.policy:
        name, path = _policy_arg(text)
        if name in policies:
            raise ValueError(f"--policy: name {name!r} given twice; use NAME=DIR to tell apart")
        policies[name] = ArtifactTarget(load_policy(path, device=device))
    for sigma in args.expert_noise:
        policies[f"expert_sigma={sigma:g}"] = ExpertTarget(
            data.task, sigma, max_ee_step_m=args.expert_max_ee_step_m
        )
    logged = data.discounted_returns(cfg.gamma)
    logged_ci = bootstrap_mean_ci(logged, confidence=cfg.confidence, seed=cfg.seed)
    console.print(
        f"[bold]{data.path}[/bold]: {data.n_episodes} episodes, {data.n_rows} steps, "
        f"horizon {data.horizon_steps or 'infinite'}, gamma {cfg.gamma:g}; logged data's "
        f"discounted return {_fmt(float(logged.mean()), logged_ci)}"
    )

    def progress(result: Any) -> None:
        console.print(
            f"  {result.name}: FQE {_fmt(result.fqe, result.fqe_ci)} ({result.fqe_train_s:.0f} s)"
        )

    results = evaluate_policies(data, policies, cfg, on_result=progress)

    ci_note = "start states" if cfg.bootstrap_refits == 0 else f"{cfg.bootstrap_refits} refits"
    table = Table(
        "policy",
        f"FQE [{cfg.confidence:.0%} CI, {ci_note}]",
        "WIS [CI]",
        "PDWIS [CI]",
        "ESS",
        *(["true return"] if true_returns is not None else []),
        title="offline estimates of the discounted return",
    )
    for r in results:
        row = [
            r.name,
            _fmt(r.fqe, r.fqe_ci),
            _fmt(r.wis, r.wis_ci),
            _fmt(r.pdwis, r.pdwis_ci),
            "-" if r.ess is None else f"{r.ess:.1f}/{r.n_episodes}",
        ]
        if true_returns is not None:
            row.append(_fmt(true_returns.get(r.name)))
        table.add_row(*row)
    console.print(table)
    if results and results[0].behaviour is not None:
        console.print(
            f"[dim]IS: behaviour policy {results[0].behaviour}; targets as clipped "
            f"Gaussians with std max(σ, {cfg.is_target_std:g})[/dim]"
        )
        thin = thin_ess(results)
        if thin:
            console.print(
                f"[yellow]IS effective sample size under 10% of the episodes for {thin}: "
                "their WIS/PDWIS rest on a few episodes, whatever their intervals say; FQE "
                "does not depend on these weights[/yellow]"
            )

    report: dict[str, Any] = {
        "store": data.path,
        "n_episodes": data.n_episodes,
        "n_steps": data.n_rows,
        "horizon_steps": data.horizon_steps,
        "gamma": cfg.gamma,
        "logged_return": {"mean": float(logged.mean()), "ci": list(logged_ci)},
        "config": dataclasses.asdict(cfg),
        "results": [r.to_dict() for r in results],
    }
    if true_returns is not None:
        report["spearman"] = _rank_report(results, true_returns, spearman)
        s = report["spearman"]
        missing = s["missing"]
        if missing:
            console.print(f"[yellow]no true return for {missing}[/yellow]")
        console.print(
            f"Spearman vs true returns over {s['n']} policies: "
            + ", ".join(f"{k} {_fmt(s[k])}" for k in ("fqe", "wis", "pdwis"))
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
        console.print(f"wrote {args.out}")
    return 0


def _rank_report(results: list[Any], true_returns: dict[str, float], spearman: Any) -> dict:
    known = [r for r in results if r.name in true_returns]
    truth = np.array([true_returns[r.name] for r in known])
    out: dict[str, Any] = {
        "n": len(known),
        "missing": [r.name for r in results if r.name not in true_returns],
    }
    for key in ("fqe", "wis", "pdwis"):
        values = [getattr(r, key) for r in known]
        ok = len(known) >= 2 and all(v is not None for v in values)
        out[key] = spearman(np.array(values, float), truth) if ok else None
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with fail_on_user_error():
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
