"""robot-rl-data: look into episode stores (a plain CLI, no Hydra).

robot-rl-data info PATH         layout, episodes, provenance summary, content hash
robot-rl-data validate PATH     read every chunk, check checksums and structure
robot-rl-data stats PATH [-k KEY ...]   per-key mean/std/min/max/quantiles
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np
from rich.table import Table

from robot_rl.cli.common import console


def _open(path: str):
    from robot_rl.data.episode_store import EpisodeStore

    return EpisodeStore.open(path, mode="r")


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args.path) as store:
        lengths = np.diff(store.episode_ends, prepend=0) if store.n_episodes else np.array([0])
        prov = [store.provenance(i) for i in range(store.n_episodes)]
        sources = collections.Counter(p.source for p in prov)
        labels = collections.Counter(
            "unknown" if p.success is None else ("success" if p.success else "failure")
            for p in prov
        )
        console.print(f"[bold]{store.path}[/bold]")
        console.print(
            f"  robot {store.attrs.get('robot')}, task {store.attrs.get('task')}, "
            f"{store.control_hz:g} Hz, format v{store.attrs.get('format_version')}"
        )
        console.print(
            f"  {store.n_episodes} episodes, {store.n_steps} steps; episode length "
            f"min {lengths.min()}, mean {lengths.mean():.1f}, max {lengths.max()}"
        )
        console.print(f"  sources: {dict(sources)}; labels: {dict(labels)}")
        table = Table("key", "shape per step", "dtype", "unit")
        units = store.attrs.get("units") or {}
        for key in store.obs_keys:
            shape, dtype = store.obs_spec[key]
            table.add_row(key, str(tuple(shape)), dtype, units.get(key, ""))
        table.add_row("action", f"({store.action_dim},)", "float32", "normalized [-1, 1]")
        console.print(table)
        console.print(f"  content hash {store.content_hash()}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    with _open(args.path) as store:
        report = store.validate()
        if report.ok:
            console.print(f"[green]OK[/green] {store.path}: {store.n_episodes} episodes valid")
            return 0
        console.print(f"[bold red]INVALID[/bold red] {store.path}: {report}")
        return 1


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args.path) as store:
        keys = args.key or [*store.obs_keys, "action", "reward"]
        table = Table("key", "dim", "mean", "std", "min", "max", "q01", "q99")
        for key in keys:
            s = store.stats(key)
            flat = {k: np.atleast_1d(np.asarray(s[k])).ravel() for k in s if k != "count"}
            for d in range(flat["mean"].size):
                table.add_row(
                    key if d == 0 else "",
                    str(d),
                    *(f"{flat[k][d]:.4g}" for k in ("mean", "std", "min", "max", "q01", "q99")),
                )
        console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-rl-data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (
        ("info", cmd_info, "summary of a store"),
        ("validate", cmd_validate, "check every chunk and the commit record"),
        ("stats", cmd_stats, "per-key statistics"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("path", help="episode store directory")
        p.set_defaults(fn=fn)
        if name == "stats":
            p.add_argument("-k", "--key", action="append", help="key(s) to show (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        console.print(f"[bold red]error:[/bold red] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
