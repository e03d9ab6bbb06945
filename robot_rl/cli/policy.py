"""robot-rl-policy: look into policy artifacts and export them (a plain CLI, no Hydra).

robot-rl-policy info POLICY_DIR [--verify] [--json]
    algorithm, lineage (dataset hash, episode range, parent policy), env, spaces,
    architecture, normalization, metrics and gate verdict from the manifest; --verify
    also loads the weights (sha256, tensor shapes, normalization).
robot-rl-policy export-sb3 POLICY_DIR --algo {td3,sac} --out POLICY.zip [--overwrite]
    a Stable-Baselines3 zip that TD3.load / SAC.load accept, checked against robot_rl's
    actions before it is written. SB3's zip format is unpickled (cloudpickle) on load,
    which can run arbitrary code: load such zips only from sources you trust. robot_rl's
    own loader never unpickles.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.markup import escape

from robot_rl.cli.common import console


def _fmt(value: object) -> str:
    return escape(str(value))


def cmd_info(args: argparse.Namespace) -> int:
    from robot_rl.policies.artifact import load_policy
    from robot_rl.policies.manifest import read_manifest

    manifest = read_manifest(args.policy_dir)
    if args.verify:
        load_policy(args.policy_dir)
    if args.json:
        print(json.dumps(manifest.to_json_dict(), indent=2))
        return 0
    m = manifest
    console.print(f"[bold]{_fmt(m.policy_id)}[/bold]  ({_fmt(args.policy_dir)})")
    console.print(
        f"  algorithm {_fmt(m.algorithm)}, created {_fmt(m.created)}, "
        f"code {_fmt(m.code_version)}, format v{m.format_version}"
    )
    env = ", ".join(f"{k} {v}" for k, v in m.env.items()) or "unknown"
    console.print(f"  env: {_fmt(env)}")
    episodes = (
        f"episodes [{m.episode_range[0]}, {m.episode_range[1]})"
        if m.episode_range is not None
        else "episodes unknown"
    )
    console.print(
        f"  lineage: dataset {_fmt(m.dataset_hash or 'unknown')}, {_fmt(episodes)}, "
        f"parent {_fmt(m.parent_policy_id or 'none')}"
    )
    obs = ", ".join(f"{k} {tuple(m.obs_shapes[k])}" for k in m.obs_keys)
    console.print(f"  observation ({m.obs_dim} dims, flattened in this order): {_fmt(obs)}")
    bounds = f"[{min(m.action_low):g}, {max(m.action_high):g}]"
    console.print(f"  action: {m.action_dim} dims in {_fmt(bounds)}")
    arch = m.architecture
    console.print(
        f"  actor: {_fmt(arch.get('type'))}, hidden {_fmt(arch.get('hidden_sizes'))}, "
        f"{_fmt(arch.get('activation'))}, layer_norm {_fmt(arch.get('layer_norm'))}"
    )
    if m.normalization:
        clip = m.normalization.get("clip")
        clip_text = "no clip" if clip is None else f"clip +-{clip:g} std"
        console.print(
            f"  normalization: mean/std per key, std floor "
            f"{m.normalization.get('std_floor', 0):g}, {clip_text}"
        )
    if m.metrics:
        console.print("  metrics:")
        for name, value in sorted(m.metrics.items()):
            console.print(f"    {_fmt(name)}: {value:.6g}")
    else:
        console.print("  metrics: none")
    gate = "not judged yet" if m.gate is None else json.dumps(m.gate, sort_keys=True)
    console.print(f"  gate: {_fmt(gate)}")
    verified = "verified" if args.verify else "not checked (pass --verify)"
    console.print(f"  weights: sha256 {m.weights_sha256[:16]}..., {verified}")
    return 0


def cmd_export_sb3(args: argparse.Namespace) -> int:
    from robot_rl.policies.sb3_export import PICKLE_WARNING, export_sb3

    result = export_sb3(
        args.policy_dir,
        args.out,
        args.algo,
        sac_log_std=args.sac_log_std,
        atol=args.atol,
        overwrite=args.overwrite,
    )
    console.print(
        f"wrote {_fmt(result.path)}: SB3 {args.algo.upper()} of policy "
        f"{_fmt(result.policy_id)}; actions match robot_rl's within "
        f"{result.max_abs_diff:.2g} on {result.n_checked} observations "
        f"(load with stable_baselines3.{args.algo.upper()}.load)"
    )
    console.print("  the SB3 critics are freshly initialized (the artifact holds the actor only)")
    console.print(f"[yellow]note:[/yellow] {_fmt(PICKLE_WARNING)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl-policy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser(
        "info", help="print a policy artifact's manifest", description="Print the manifest."
    )
    info.add_argument("policy_dir", help="policy artifact directory")
    info.add_argument("--verify", action="store_true", help="also load and check the weights")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(fn=cmd_info)

    export = sub.add_parser(
        "export-sb3",
        help="export to a Stable-Baselines3 TD3/SAC zip (pickle-based: trusted use only)",
        description=(
            "Export a policy artifact to a zip that stable_baselines3's TD3.load / SAC.load "
            "accept (plain SB3 classes; loading needs SB3, not robot_rl). Deterministic "
            "actions are checked against robot_rl's before the zip is written; the SB3 "
            "critics are freshly initialized.\n\n"
            "WARNING: SB3's zip format is unpickled (cloudpickle) on load, which can run "
            "arbitrary code: load such zips only from sources you trust. robot_rl's own "
            "loader never unpickles."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("policy_dir", help="policy artifact directory")
    export.add_argument("--algo", required=True, choices=["td3", "sac"], help="SB3 algorithm")
    export.add_argument("--out", required=True, help="zip to write (must end in .zip)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    export.add_argument(
        "--atol",
        type=float,
        default=1e-5,
        help="largest allowed action difference to robot_rl's (default 1e-5)",
    )
    export.add_argument(
        "--sac-log-std",
        type=float,
        default=-5.0,
        help="SAC only: constant log std of the pre-tanh Gaussian (default -5)",
    )
    export.set_defaults(fn=cmd_export_sb3)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        console.print(f"[bold red]error:[/bold red] {_fmt(e)}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
