"""``robot-rl-data info``, ``validate`` and ``stats``: looking into a store."""

from __future__ import annotations

import argparse
import collections

import numpy as np
from rich.table import Table

from robot_rl.cli.common import console
from robot_rl.cli.data_commands.common import add_path, label_word, open_store


def cmd_info(args: argparse.Namespace) -> int:
    with open_store(args.path) as store:
        lengths = np.diff(store.episode_ends, prepend=0) if store.n_episodes else np.array([0])
        prov = [store.provenance(i) for i in range(store.n_episodes)]
        sources = collections.Counter(p.source for p in prov)
        labels = collections.Counter(label_word(p.success) for p in prov)
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
        console.print(f"  reward source: {store.reward_source}")
        console.print(
            f"  human feedback: {len(store.labels())} label entries, "
            f"{len(store.preferences())} preferences"
        )
        table = Table("key", "shape per step", "dtype", "unit")
        units = store.attrs.get("units") or {}
        for key in store.obs_keys:
            shape, dtype = store.obs_spec[key]
            table.add_row(key, str(tuple(shape)), dtype, units.get(key, ""))
        action_unit = units.get("action") or "normalized [-1, 1]"
        table.add_row("action", f"({store.action_dim},)", "float32", action_unit)
        if store.has_timestamps:
            table.add_row("timestamp", "()", "float64", "s")
        console.print(table)
        if store.stream_names:
            streams = Table("stream", "key", "shape per row", "dtype", "rows")
            for s in store.stream_names:
                for n, (key, (shape, dtype)) in enumerate(store.stream_spec[s].items()):
                    streams.add_row(
                        s if n == 0 else "",
                        key,
                        str(tuple(shape)),
                        dtype,
                        str(store.n_stream_rows(s)) if n == 0 else "",
                    )
            console.print(streams)
        from robot_rl.data.episode_store import stale_siblings

        for stale in stale_siblings(store.path):
            console.print(
                f"  [yellow]stale temporary store[/yellow] {stale.name} (an interrupted "
                "rewrite; may hold purged data): opening the store for writing deletes it"
            )
        if args.hash:
            console.print(f"  content hash {store.content_hash()}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    with open_store(args.path) as store:
        report = store.validate()
        if report.ok:
            console.print(f"[green]OK[/green] {store.path}: {store.n_episodes} episodes valid")
            return 0
        console.print(f"[bold red]INVALID[/bold red] {store.path}: {report}")
        return 1


# Keys with more elements per step (images) get one summary row, not one row per element.
_STATS_MAX_ROWS_PER_KEY = 16


def cmd_stats(args: argparse.Namespace) -> int:
    names = ("mean", "std", "min", "max", "q01", "q99")
    with open_store(args.path) as store:
        keys = args.key or [*store.obs_keys, "action", *(["reward"] if store.has_rewards else [])]
        table = Table("key", "dim", "mean", "std", "min", "max", "q01", "q99")
        for key in keys:
            s = store.stats(key)
            flat = {k: np.atleast_1d(np.asarray(s[k])).ravel() for k in s if k != "count"}
            size = flat["mean"].size
            if size > _STATS_MAX_ROWS_PER_KEY:
                # Over all elements: mean of the means and of the stds, the extreme min,
                # max and quantiles.
                summary = {
                    "mean": flat["mean"].mean(),
                    "std": flat["std"].mean(),
                    "min": flat["min"].min(),
                    "max": flat["max"].max(),
                    "q01": flat["q01"].min(),
                    "q99": flat["q99"].max(),
                }
                table.add_row(key, f"all {size}", *(f"{summary[k]:.4g}" for k in names))
                continue
            for d in range(size):
                table.add_row(
                    key if d == 0 else "",
                    str(d),
                    *(f"{flat[k][d]:.4g}" for k in ("mean", "std", "min", "max", "q01", "q99")),
                )
        console.print(table)
    return 0


def add_info_args(p: argparse.ArgumentParser) -> None:
    add_path(p)
    p.add_argument(
        "--hash", action="store_true", help="also compute the content hash (reads every chunk)"
    )


def add_stats_args(p: argparse.ArgumentParser) -> None:
    add_path(p)
    p.add_argument("-k", "--key", action="append", help="key(s) to show (default: all)")
