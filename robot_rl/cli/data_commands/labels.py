"""``robot-rl-data label``, ``train-reward`` and ``relabel``: human feedback on episodes
and rewards learned from it."""

from __future__ import annotations

import argparse

from robot_rl.cli.common import console, defaults_from_configs, given
from robot_rl.cli.data_commands.common import (
    add_path,
    label_word,
    labeller_pseudonym,
    open_store,
)


def cmd_label(args: argparse.Namespace) -> int:
    modes = [args.episode is not None, args.prefer is not None, args.prefer_index is not None]
    if sum(modes) != 1:
        raise ValueError("label: give exactly one of --episode, --prefer, --prefer-index")
    labeller = labeller_pseudonym(args.labeller)
    with open_store(args.path, "a") as store:
        if args.episode is not None:
            if args.value is _UNSET:
                raise ValueError("label --episode: give --success, --failure or --unknown")
            store.set_success_label(args.episode, args.value, labeller)
            prov = store.provenance(args.episode)
            console.print(
                f"episode {args.episode} ({prov.episode_id}) labelled "
                f"[bold]{label_word(prov.success)}[/bold] by {labeller}"
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


def add_label_args(p: argparse.ArgumentParser) -> None:
    add_path(p)
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
    kw = given(args, REWARD_OPTIONS)
    with open_store(args.path) as store:
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


#: train-reward options that set a field of PreferenceConfig / SuccessConfig (dest ->
#: field); unset, they keep the config's own default.
REWARD_OPTIONS = {
    "steps": "steps",
    "seed": "seed",
    "ensemble": "ensemble_size",
    "validation_fraction": "validation_fraction",
    "obs_key": "obs_keys",
}


def _reward_defaults() -> dict[str, str]:
    """Each option's default per kind, read from the configs (for --help only)."""
    from robot_rl.algos.rewards import PreferenceConfig, SuccessConfig

    kinds = {"preference": PreferenceConfig(), "success": SuccessConfig()}
    out = {}
    for dest, field in REWARD_OPTIONS.items():
        values = {kind: getattr(cfg, field) for kind, cfg in kinds.items()}
        if dest == "obs_key":
            continue  # the help says what None means
        if len(set(map(str, values.values()))) == 1:
            out[dest] = str(next(iter(values.values())))
        else:
            out[dest] = ", ".join(f"{kind} {v}" for kind, v in values.items())
    return out


def add_train_reward_args(p: argparse.ArgumentParser) -> None:
    p.formatter_class = defaults_from_configs(_reward_defaults)
    add_path(p)
    p.add_argument(
        "--kind",
        required=True,
        choices=["preference", "success"],
        help="preference: Bradley-Terry on pairwise preferences; success: classifier on "
        "episodes labelled success/failure",
    )
    p.add_argument("--out", required=True, help="directory to save the model in")
    p.add_argument("--steps", type=int, metavar="N", help="gradient steps")
    p.add_argument("--seed", type=int, metavar="S", help="seed")
    p.add_argument("--ensemble", type=int, metavar="E", help="ensemble members")
    p.add_argument(
        "--validation-fraction",
        type=float,
        metavar="F",
        help="share of the labels held out to stop training early (0: none)",
    )
    p.add_argument(
        "--obs-key",
        action="append",
        metavar="K",
        help="observation key(s) (default: every key of at most one dimension)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a model at --out")


def cmd_relabel(args: argparse.Namespace) -> int:
    from robot_rl.algos.rewards.relabel import relabel

    result = relabel(args.path, args.out, args.model, replace_rewards=args.replace_rewards)
    console.print(
        f"wrote {result.n_episodes} episode(s) ({result.n_steps} steps) with rewards "
        f"{result.reward_source} to {result.path}"
    )
    return 0


def add_relabel_args(p: argparse.ArgumentParser) -> None:
    add_path(p)
    p.add_argument("--model", required=True, help="reward model directory (train-reward)")
    p.add_argument("--out", required=True, help="new store to write (must not exist)")
    p.add_argument(
        "--replace-rewards",
        action="store_true",
        help="relabel a store that has rewards (default: only stores without)",
    )
