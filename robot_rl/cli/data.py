"""robot-rl-data: look into, label and reshape episode stores (a plain CLI, no Hydra).

robot-rl-data info PATH [--hash]  layout, episodes, streams, labels (content hash)
robot-rl-data validate PATH     read every chunk, check checksums and structure
robot-rl-data stats PATH [-k KEY ...]   per-key mean/std/min/max/quantiles (keys of
                                more than 16 elements per step: one summary row)
robot-rl-data label PATH --episode I (--success | --failure | --unknown) [--labeller NAME]
robot-rl-data label PATH --prefer ID_A ID_B [--equal] | --prefer-index I J [--equal]
robot-rl-data filter SRC DST [--source X] [--success | --failure] [--operator P]
                             [--robot-id R] [--episodes A:B]
robot-rl-data purge PATH (--operator P | --operator-name NAME) [--yes] [--allow-none]
robot-rl-data convert SRC DST --zarr-format 2
robot-rl-data merge DST SRC1 SRC2 ...
robot-rl-data split SRC --into train=0.9,val=0.1 [--seed S] --out-dir D
robot-rl-data import {minari,robomimic,gym,zarr} SRC DST [--n-episodes N] [--control-hz HZ]
                             [--robot R] [--task T] [--append] [--seed S]
                             [--max-episode-steps N] (gym) [--obs-keys K ...] (robomimic,
                             zarr) [--action-key K] [--episode-end terminated|truncated] (zarr)
robot-rl-data make-dataset --task T --recipe R --episodes N [--seed S] --out PATH
                             [--overwrite]   benchmark datasets with fixed recipes
robot-rl-data train-reward PATH --kind {preference,success} --out MODEL_DIR [--steps N]
                             [--seed S] [--ensemble E] [--obs-key K ...] [--validation-fraction F]
                             [--overwrite]
                             reward model from the store's preferences or success labels
robot-rl-data relabel PATH --model MODEL_DIR --out NEW_PATH [--replace-rewards]
                             copy of a store (usually one without rewards) with the
                             model's rewards; PATH itself is never changed

Subcommands are entries of ``COMMANDS`` (name, function, help, add_arguments); a module
adds one by appending a :class:`Command` before :func:`build_parser` runs. The commands
live by concern in :mod:`robot_rl.cli.data_commands`; those that bring data in (import,
make-dataset) are here.

Names typed at the prompt (``--labeller``, ``--operator-name``) are turned into
pseudonyms with the salt file (``$ROBOT_RL_PSEUDONYM_SALT_FILE``) before they reach a
store; stores never hold real names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NamedTuple

from rich.table import Table

from robot_rl.cli.common import console
from robot_rl.cli.data_commands.common import add_path, open_store
from robot_rl.cli.data_commands.governance import (
    add_convert_args,
    add_filter_args,
    add_merge_args,
    add_purge_args,
    add_split_args,
    cmd_convert,
    cmd_filter,
    cmd_merge,
    cmd_purge,
    cmd_split,
)
from robot_rl.cli.data_commands.info import (
    add_info_args,
    add_stats_args,
    cmd_info,
    cmd_stats,
    cmd_validate,
)
from robot_rl.cli.data_commands.labels import (
    add_label_args,
    add_relabel_args,
    add_train_reward_args,
    cmd_label,
    cmd_relabel,
    cmd_train_reward,
)


class Command(NamedTuple):
    """One ``robot-rl-data`` subcommand."""

    name: str
    fn: Callable[[argparse.Namespace], int]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


def _literal(text: str) -> str:
    """``text`` as argparse shows it: help strings are %-formatted (``%(default)s``), so
    a plain ``%`` (``30% of the episodes``) must be doubled."""
    return text.replace("%", "%%")


# ---------------------------------------------------------------------------- import


# Options of `import` that only some kinds of source use: option -> those kinds.
_IMPORT_OPTION_KINDS = {
    "seed": ("gym",),
    "max_episode_steps": ("gym",),
    "obs_keys": ("robomimic", "zarr"),
    "action_key": ("zarr",),
    "episode_end": ("zarr",),
}


def cmd_import(args: argparse.Namespace) -> int:
    from robot_rl.data import importers

    for option, kinds in _IMPORT_OPTION_KINDS.items():
        if getattr(args, option) is not None and args.kind not in kinds:
            raise ValueError(
                f"import {args.kind}: --{option.replace('_', '-')} applies to import "
                f"{' and '.join(kinds)} only"
            )
    common = {
        "control_hz": args.control_hz,
        "robot": args.robot,
        "task": args.task,
        "append": args.append,
    }
    if args.kind == "gym":
        result = importers.record_gym_rollouts(
            args.src,
            args.dst,
            n_episodes=args.n_episodes or 10,
            seed=args.seed or 0,
            max_episode_steps=args.max_episode_steps,
            **common,
        )
    elif args.kind == "minari":
        result = importers.import_minari(args.src, args.dst, max_episodes=args.n_episodes, **common)
    elif args.kind == "robomimic":
        result = importers.import_robomimic(
            args.src, args.dst, max_episodes=args.n_episodes, obs_keys=args.obs_keys, **common
        )
    else:
        result = importers.import_zarr(
            args.src,
            args.dst,
            max_episodes=args.n_episodes,
            obs_keys=args.obs_keys,
            action_key=args.action_key or "action",
            episode_end=args.episode_end or "truncated",
            **common,
        )
    console.print(
        f"imported {result.n_episodes} episodes ({result.n_steps} steps) from {args.src} "
        f"into {result.store_path}"
    )
    with open_store(result.store_path) as store:
        console.print(
            f"  robot {store.attrs.get('robot')}, task {store.attrs.get('task')}, "
            f"{store.control_hz:g} Hz; observation keys {store.obs_keys}; "
            f"rewards: {store.reward_source}"
        )
    if result.action_low is not None:
        console.print(
            f"  actions stored raw: bounds low={result.action_low} high={result.action_high}"
        )
    return 0


def _add_import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["minari", "robomimic", "gym", "zarr"], help="kind of source")
    p.add_argument(
        "src",
        help="Minari dataset id or directory, robomimic HDF5 file, Gymnasium env id, or zarr "
        "store in Diffusion Policy's layout (data/<key>, meta/episode_ends; format 2 or 3)",
    )
    p.add_argument("dst", help="episode store to create (or add to, with --append)")
    p.add_argument(
        "--n-episodes",
        type=int,
        metavar="N",
        help="gym: episodes to record (default 10); others: import at most N",
    )
    p.add_argument(
        "--control-hz",
        type=float,
        metavar="HZ",
        help="control rate of the rows, when the source does not say",
    )
    p.add_argument("--robot", help="robot name for a new store (default: from the source)")
    p.add_argument("--task", help="task name for a new store (default: from the source)")
    p.add_argument("--append", action="store_true", help="add to an existing store at DST")
    p.add_argument(
        "--seed", type=int, metavar="S", help="gym: episode i resets with S + i (default 0)"
    )
    p.add_argument(
        "--max-episode-steps",
        type=int,
        metavar="N",
        help="gym: cut episodes after N steps (default: the env's own limit)",
    )
    p.add_argument(
        "--obs-keys",
        nargs="+",
        metavar="K",
        help="robomimic: keys under obs/; zarr: data/ keys that are observations (default: "
        "the obs_keys attribute, else every data key but the action, reward, flags and "
        "timestamp)",
    )
    p.add_argument(
        "--action-key", metavar="K", help="zarr: the data/ key of the actions (default action)"
    )
    p.add_argument(
        "--episode-end",
        choices=["truncated", "terminated"],
        help="zarr: how the last row of an episode ends where the source has no flag there "
        "(default truncated: a time limit, the safe assumption for demonstrations)",
    )


# ---------------------------------------------------------------------------- make-dataset


def cmd_make_dataset(args: argparse.Namespace) -> int:
    from robot_rl.cli.common import show_progress
    from robot_rl.teleop.make_dataset import RECIPES, make_dataset

    recipe = RECIPES[args.recipe]
    console.print(
        f"recording {args.episodes} {args.task} episodes, recipe [bold]{args.recipe}[/bold] "
        f"({recipe.description}), seed {args.seed} -> {args.out}"
    )
    kwargs = {"n_episodes": args.episodes, "seed": args.seed, "overwrite": args.overwrite}
    if show_progress(True):
        from rich.progress import Progress

        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("episodes", total=args.episodes)
            summary = make_dataset(
                args.task,
                args.recipe,
                args.out,
                on_episode=lambda *_: progress.advance(bar),
                **kwargs,
            )
    else:
        summary = make_dataset(args.task, args.recipe, args.out, **kwargs)
    table = Table("behaviour", "episodes", "steps", "success")
    for name, s in summary.by_behaviour.items():
        table.add_row(name, str(s.n_episodes), str(s.n_steps), f"{s.success_rate:.0%}")
    table.add_row(
        "all", str(summary.n_episodes), str(summary.n_steps), f"{summary.success_rate:.0%}"
    )
    console.print(table)
    console.print(
        f"wrote {summary.n_episodes} episodes ({summary.n_steps} steps) to {summary.path} "
        f"in {summary.wall_time_s:.1f} s"
    )
    return 0


def _add_make_dataset_args(p: argparse.ArgumentParser) -> None:
    from robot_rl.config.sim import TASK_NAMES
    from robot_rl.teleop.make_dataset import RECIPES

    p.add_argument("--task", required=True, choices=list(TASK_NAMES))
    p.add_argument(
        "--recipe",
        required=True,
        choices=list(RECIPES),
        help=_literal("; ".join(f"{r.name}: {r.description}" for r in RECIPES.values())),
    )
    p.add_argument("--episodes", type=int, required=True, metavar="N", help="episodes to record")
    p.add_argument(
        "--seed", type=int, default=0, metavar="S", help="episode i resets with S + i (default 0)"
    )
    p.add_argument("--out", required=True, help="episode store to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")


COMMANDS: list[Command] = [
    Command("info", cmd_info, "summary of a store", add_info_args),
    Command("validate", cmd_validate, "check every chunk and the commit record", add_path),
    Command("stats", cmd_stats, "per-key statistics", add_stats_args),
    Command("label", cmd_label, "success labels and pairwise preferences", add_label_args),
    Command("filter", cmd_filter, "write a new store with the matching episodes", add_filter_args),
    Command("purge", cmd_purge, "remove an operator's episodes (atomic rewrite)", add_purge_args),
    Command("convert", cmd_convert, "export to zarr format 2", add_convert_args),
    Command("merge", cmd_merge, "concatenate stores into a new one", add_merge_args),
    Command("split", cmd_split, "split by episode into new stores", add_split_args),
    Command("import", cmd_import, "episodes from Minari, robomimic, gym, zarr", _add_import_args),
    Command(
        "make-dataset",
        cmd_make_dataset,
        "benchmark datasets of the scripted expert, fixed recipes",
        _add_make_dataset_args,
    ),
    Command(
        "train-reward",
        cmd_train_reward,
        "reward model from preferences or success labels",
        add_train_reward_args,
    ),
    Command(
        "relabel",
        cmd_relabel,
        "copy of a store with a reward model's rewards",
        add_relabel_args,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-rl-data",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=_literal(cmd.help), description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(fn=cmd.fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (
        FileNotFoundError,
        FileExistsError,
        ValueError,
        KeyError,
        IndexError,
        RuntimeError,
    ) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        console.print(f"[bold red]error:[/bold red] {msg}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
