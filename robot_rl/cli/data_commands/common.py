"""What several ``robot-rl-data`` subcommands share: opening a store, the path argument,
label words, the labeller's pseudonym."""

from __future__ import annotations

import argparse
import getpass


def open_store(path: str, mode: str = "r"):
    """The episode store at ``path``."""
    from robot_rl.data.episode_store import EpisodeStore

    return EpisodeStore.open(path, mode=mode)


def label_word(success: bool | None) -> str:
    """``success``, ``failure`` or ``unknown``."""
    return "unknown" if success is None else ("success" if success else "failure")


def add_path(p: argparse.ArgumentParser) -> None:
    """The positional store path."""
    p.add_argument("path", help="episode store directory")


def labeller_pseudonym(name: str | None) -> str:
    """The pseudonym of who labels (``name``, or the login name); never creates a salt."""
    from robot_rl.data.governance import operator_pseudonym

    return operator_pseudonym(name or getpass.getuser(), create_salt=False)
