"""``robot-rl-data filter``, ``purge``, ``convert``, ``merge`` and ``split``: new stores
made from existing ones (:mod:`robot_rl.data.governance`, :mod:`robot_rl.data.export`)."""

from __future__ import annotations

import argparse
import sys

from rich.table import Table

from robot_rl.cli.common import console
from robot_rl.cli.data_commands.common import add_path, open_store


def _parse_range(text: str) -> tuple[int | None, int | None]:
    try:
        a, b = text.split(":")
        return (int(a) if a else None), (int(b) if b else None)
    except ValueError:
        raise ValueError(f"--episodes: expected A:B (e.g. 0:100, :50, 10:), got {text!r}") from None


def cmd_filter(args: argparse.Namespace) -> int:
    from robot_rl.data.governance import EpisodeFilter, filter_episodes

    predicate = EpisodeFilter(
        source=args.source,
        success=args.success,
        operator=args.operator,
        robot_id=args.robot_id,
        episodes=_parse_range(args.episodes) if args.episodes else None,
    )
    n = filter_episodes(args.src, args.dst, predicate)
    console.print(f"wrote {n} episode(s) to {args.dst}")
    return 0


def add_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="source store")
    p.add_argument("dst", help="new store to write (must not exist)")
    p.add_argument("--source", help="provenance source (teleop, policy, scripted, import)")
    label = p.add_mutually_exclusive_group()
    label.add_argument("--success", dest="success", action="store_const", const=True)
    label.add_argument("--failure", dest="success", action="store_const", const=False)
    p.add_argument("--operator", metavar="P", help="operator pseudonym")
    p.add_argument("--robot-id", help="robot unit id")
    p.add_argument("--episodes", metavar="A:B", help="episode index range, as a slice")


def cmd_purge(args: argparse.Namespace) -> int:
    from robot_rl.data.governance import looks_like_pseudonym, operator_pseudonym, purge

    if (args.operator is None) == (args.operator_name is None):
        raise ValueError("purge: give exactly one of --operator P or --operator-name NAME")
    # Never creates a salt: a new one would match no recorded pseudonym.
    operator = args.operator or operator_pseudonym(args.operator_name, create_salt=False)
    with open_store(args.path) as store:
        n = sum(store.recorded_provenance(i).operator == operator for i in range(store.n_episodes))
        total = store.n_episodes
        n_labels = sum(e.labeller == operator for e in store.labels())
        n_labels += sum(p.labeller == operator for p in store.preferences())
    if args.operator is not None and not looks_like_pseudonym(args.operator):
        console.print(
            f"[yellow]warning:[/yellow] --operator {args.operator!r} does not look like a "
            "pseudonym (16 hex digits); to purge by name use --operator-name"
        )
    if n == 0 and n_labels == 0:
        msg = f"no episode, label or preference of operator {operator} in {args.path}"
        if args.allow_none:
            console.print(f"nothing to purge: {msg}")
            return 0
        console.print(
            f"[bold red]error:[/bold red] {msg}; nothing removed (check the name or "
            "pseudonym and the salt file; --allow-none makes this exit 0)"
        )
        return 1
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValueError("purge: not a terminal; pass --yes to confirm")
        answer = input(
            f"remove {n} of {total} episode(s) of operator {operator} (and their labels) "
            f"from {args.path}? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            console.print("nothing removed")
            return 1
    result = purge(args.path, operator)
    console.print(
        f"purged operator {operator}: removed {result.episodes_removed} episode(s), "
        f"{result.labels_removed} label(s), {result.preferences_removed} preference(s); "
        f"{result.episodes_kept} episode(s) kept"
    )
    return 0


def add_purge_args(p: argparse.ArgumentParser) -> None:
    add_path(p)
    p.add_argument("--operator", metavar="P", help="operator pseudonym to remove")
    p.add_argument(
        "--operator-name", metavar="NAME", help="operator name (turned into its pseudonym)"
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--allow-none",
        action="store_true",
        help="exit 0 when nothing matches (default: exit 1, so a typo is noticed)",
    )


# ---------------------------------------------------------------- convert / merge / split


def cmd_convert(args: argparse.Namespace) -> int:
    from robot_rl.data.export import export_zarr2

    out = export_zarr2(args.src, args.dst)
    console.print(f"wrote zarr format {args.zarr_format} export to {out}")
    return 0


def add_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="episode store")
    p.add_argument("dst", help="output directory (must not exist)")
    p.add_argument(
        "--zarr-format",
        type=int,
        choices=[2],
        required=True,
        help="2: Diffusion Policy's replay-buffer layout, readable by zarr-python 2.x",
    )


def cmd_merge(args: argparse.Namespace) -> int:
    from robot_rl.data.governance import merge

    n = merge(args.srcs, args.dst)
    console.print(f"merged {len(args.srcs)} store(s), {n} episode(s), into {args.dst}")
    return 0


def add_merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dst", help="new store to write (must not exist)")
    p.add_argument("srcs", nargs="+", metavar="SRC", help="stores to concatenate, in order")


def _parse_into(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(
                f"--into: expected name=fraction pairs like train=0.9,val=0.1, got {text!r}"
            ) from None
    return out


def cmd_split(args: argparse.Namespace) -> int:
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.governance import split

    paths = split(args.src, _parse_into(args.into), args.seed, args.out_dir)
    table = Table("split", "episodes", "path")
    for name, path in paths.items():
        with EpisodeStore.open(path) as s:
            table.add_row(name, str(s.n_episodes), str(path))
    console.print(table)
    return 0


def add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="episode store")
    p.add_argument("--into", required=True, metavar="NAME=F,...", help="e.g. train=0.9,val=0.1")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--out-dir", required=True, help="directory for <name>.zarr outputs")
