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
adds one by appending a :class:`Command` before :func:`build_parser` runs.

Names typed at the prompt (``--labeller``, ``--operator-name``) are turned into
pseudonyms with the salt file (``$ROBOT_RL_PSEUDONYM_SALT_FILE``) before they reach a
store; stores never hold real names.
"""

from __future__ import annotations

import argparse
import collections
import getpass
import sys
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from rich.table import Table

from robot_rl.cli.common import console


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


def _open(path: str, mode: str = "r"):
    from robot_rl.data.episode_store import EpisodeStore

    return EpisodeStore.open(path, mode=mode)


def _label_word(success: bool | None) -> str:
    return "unknown" if success is None else ("success" if success else "failure")


# ---------------------------------------------------------------------------- info / validate


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args.path) as store:
        lengths = np.diff(store.episode_ends, prepend=0) if store.n_episodes else np.array([0])
        prov = [store.provenance(i) for i in range(store.n_episodes)]
        sources = collections.Counter(p.source for p in prov)
        labels = collections.Counter(_label_word(p.success) for p in prov)
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
    with _open(args.path) as store:
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
    with _open(args.path) as store:
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


def _add_path(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="episode store directory")


def _add_info_args(p: argparse.ArgumentParser) -> None:
    _add_path(p)
    p.add_argument(
        "--hash", action="store_true", help="also compute the content hash (reads every chunk)"
    )


def _add_stats_args(p: argparse.ArgumentParser) -> None:
    _add_path(p)
    p.add_argument("-k", "--key", action="append", help="key(s) to show (default: all)")


# ---------------------------------------------------------------------------- label


def _labeller(name: str | None) -> str:
    from robot_rl.data.governance import operator_pseudonym

    return operator_pseudonym(name or getpass.getuser(), create_salt=False)


def cmd_label(args: argparse.Namespace) -> int:
    modes = [args.episode is not None, args.prefer is not None, args.prefer_index is not None]
    if sum(modes) != 1:
        raise ValueError("label: give exactly one of --episode, --prefer, --prefer-index")
    labeller = _labeller(args.labeller)
    with _open(args.path, "a") as store:
        if args.episode is not None:
            if args.value is _UNSET:
                raise ValueError("label --episode: give --success, --failure or --unknown")
            store.set_success_label(args.episode, args.value, labeller)
            prov = store.provenance(args.episode)
            console.print(
                f"episode {args.episode} ({prov.episode_id}) labelled "
                f"[bold]{_label_word(prov.success)}[/bold] by {labeller}"
            )
            return 0
        if args.value is not _UNSET:
            raise ValueError("label --prefer: --success/--failure/--unknown apply to --episode")
        if args.prefer is not None:
            id_a, id_b = args.prefer
        else:
            i, j = args.prefer_index
            id_a = store.provenance(i).episode_id
            id_b = store.provenance(j).episode_id
        preferred = "equal" if args.equal else "a"
        store.add_preference(id_a, id_b, preferred, labeller)
        verdict = f"{id_a} and {id_b} equal" if args.equal else f"{id_a} preferred to {id_b}"
        console.print(f"preference recorded: {verdict} (by {labeller})")
    return 0


_UNSET = object()


def _add_label_args(p: argparse.ArgumentParser) -> None:
    _add_path(p)
    p.add_argument("--episode", type=int, metavar="I", help="episode index to label")
    value = p.add_mutually_exclusive_group()
    value.add_argument("--success", dest="value", action="store_const", const=True)
    value.add_argument("--failure", dest="value", action="store_const", const=False)
    value.add_argument(
        "--unknown", dest="value", action="store_const", const=None, help="withdraw the label"
    )
    p.set_defaults(value=_UNSET)
    p.add_argument(
        "--prefer", nargs=2, metavar=("ID_A", "ID_B"), help="episode ID_A is better than ID_B"
    )
    p.add_argument(
        "--prefer-index", nargs=2, type=int, metavar=("I", "J"), help="as --prefer, by index"
    )
    p.add_argument("--equal", action="store_true", help="with --prefer: neither is better")
    p.add_argument(
        "--labeller",
        metavar="NAME",
        help="who labels (default: the login name); stored as a salted pseudonym",
    )


# ---------------------------------------------------------------------------- filter / purge


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


def _add_filter_args(p: argparse.ArgumentParser) -> None:
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
    with _open(args.path) as store:
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


def _add_purge_args(p: argparse.ArgumentParser) -> None:
    _add_path(p)
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


def _add_convert_args(p: argparse.ArgumentParser) -> None:
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


def _add_merge_args(p: argparse.ArgumentParser) -> None:
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


def _add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="episode store")
    p.add_argument("--into", required=True, metavar="NAME=F,...", help="e.g. train=0.9,val=0.1")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--out-dir", required=True, help="directory for <name>.zarr outputs")


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
    with _open(result.store_path) as store:
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
    from robot_rl.data.make_dataset import RECIPES, make_dataset

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
    from robot_rl.config.schema import TASK_NAMES
    from robot_rl.data.make_dataset import RECIPES

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


# ---------------------------------------------------------------------------- rewards


def cmd_train_reward(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robot_rl.algos.rewards import (
        PreferenceConfig,
        SuccessConfig,
        train_preference_model,
        train_success_classifier,
    )
    from robot_rl.algos.rewards.model import MANIFEST_FILE

    out = Path(args.out)
    if (out / MANIFEST_FILE).exists() and not args.overwrite:
        raise FileExistsError(f"{out} already holds a reward model; pass --overwrite")
    kw = {"seed": args.seed, "obs_keys": args.obs_key}
    if args.steps is not None:
        kw["steps"] = args.steps
    if args.ensemble is not None:
        kw["ensemble_size"] = args.ensemble
    if args.validation_fraction is not None:
        kw["validation_fraction"] = args.validation_fraction
    with _open(args.path) as store:
        if args.kind == "preference":
            model = train_preference_model(store, PreferenceConfig(**kw))
        else:
            model = train_success_classifier(store, SuccessConfig(**kw))
    model.save(out, overwrite=args.overwrite)
    metrics = ", ".join(
        f"{k} {v:.3g}" for k, v in model.spec.training["metrics"].items() if v is not None
    )
    console.print(
        f"trained {args.kind} reward model [bold]{model.model_id[:16]}[/bold] ({metrics}) -> {out}"
    )
    return 0


def _add_train_reward_args(p: argparse.ArgumentParser) -> None:
    _add_path(p)
    p.add_argument(
        "--kind",
        required=True,
        choices=["preference", "success"],
        help="preference: Bradley-Terry on pairwise preferences; success: classifier on "
        "episodes labelled success/failure",
    )
    p.add_argument("--out", required=True, help="directory to save the model in")
    p.add_argument("--steps", type=int, metavar="N", help="gradient steps (default per kind)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default 0)")
    p.add_argument("--ensemble", type=int, metavar="E", help="ensemble members")
    p.add_argument(
        "--validation-fraction",
        type=float,
        metavar="F",
        help="share of the labels held out to stop training early (default 0.1; 0: none)",
    )
    p.add_argument(
        "--obs-key",
        action="append",
        metavar="K",
        help="observation key(s) (default: every key of at most one dimension)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a model at --out")


def cmd_relabel(args: argparse.Namespace) -> int:
    from robot_rl.data.relabel import relabel

    result = relabel(args.path, args.out, args.model, replace_rewards=args.replace_rewards)
    console.print(
        f"wrote {result.n_episodes} episode(s) ({result.n_steps} steps) with rewards "
        f"{result.reward_source} to {result.path}"
    )
    return 0


def _add_relabel_args(p: argparse.ArgumentParser) -> None:
    _add_path(p)
    p.add_argument("--model", required=True, help="reward model directory (train-reward)")
    p.add_argument("--out", required=True, help="new store to write (must not exist)")
    p.add_argument(
        "--replace-rewards",
        action="store_true",
        help="relabel a store that has rewards (default: only stores without)",
    )


COMMANDS: list[Command] = [
    Command("info", cmd_info, "summary of a store", _add_info_args),
    Command("validate", cmd_validate, "check every chunk and the commit record", _add_path),
    Command("stats", cmd_stats, "per-key statistics", _add_stats_args),
    Command("label", cmd_label, "success labels and pairwise preferences", _add_label_args),
    Command("filter", cmd_filter, "write a new store with the matching episodes", _add_filter_args),
    Command("purge", cmd_purge, "remove an operator's episodes (atomic rewrite)", _add_purge_args),
    Command("convert", cmd_convert, "export to zarr format 2", _add_convert_args),
    Command("merge", cmd_merge, "concatenate stores into a new one", _add_merge_args),
    Command("split", cmd_split, "split by episode into new stores", _add_split_args),
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
        _add_train_reward_args,
    ),
    Command(
        "relabel",
        cmd_relabel,
        "copy of a store with a reward model's rewards",
        _add_relabel_args,
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
