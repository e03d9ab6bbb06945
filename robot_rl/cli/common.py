"""Console output and error handling shared by the console scripts."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console

from robot_rl.config.validation import ConfigError

console = Console(highlight=False, soft_wrap=True)


def quiet_library_loggers() -> None:
    """Hydra sets the root logger to INFO; these libraries then chatter about internals."""
    for name in ("OpenGL", "matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)


def show_progress(requested: bool) -> bool:
    """Progress bars only on a terminal: in logs and CI they are noise."""
    return requested and sys.stderr.isatty()


def defaults_from_configs(
    defaults: Callable[[], dict[str, Any]],
) -> Callable[..., argparse.HelpFormatter]:
    """A help formatter that appends each option's default, as ``defaults()`` reads it
    from the config dataclass that owns it (``{dest: value}``).

    Such options default to ``None`` in the parser, and the command passes on only the
    options given, so the dataclass's default applies: the number lives in one place.
    ``defaults`` runs only when help is shown, so a torch-heavy config module loads for
    ``--help`` and not for every parse.
    """

    class _Formatter(argparse.HelpFormatter):
        _values: dict[str, Any] | None = None

        def _get_help_string(self, action: argparse.Action) -> str | None:
            text = action.help or ""
            if _Formatter._values is None:
                _Formatter._values = defaults()
            if action.dest in _Formatter._values:
                value = _Formatter._values[action.dest]
                if isinstance(value, list | tuple):
                    value = ",".join(str(v) for v in value)
                text += f" (default: {value})".replace("%", "%%")
            return text

    return _Formatter


def given(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """``{config field: value}`` of the options given on the command line (not ``None``);
    ``names`` maps each option's dest to the config field it sets."""
    return {
        field: getattr(args, dest)
        for dest, field in names.items()
        if getattr(args, dest) is not None
    }


@contextlib.contextmanager
def fail_on_config_error() -> Iterator[None]:
    """Turns a :class:`ConfigError` into a one-line message and exit status 2."""
    try:
        yield
    except ConfigError as e:
        console.print(f"[bold red]config error:[/bold red] {e}")
        sys.exit(2)


@contextlib.contextmanager
def fail_on_user_error() -> Iterator[None]:
    """Bad input found while running (a store that does not fit, a missing file) ends the
    command with its message and exit status 1, not a traceback; ROBOT_RL_DEBUG=1 shows
    the traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        if os.environ.get("ROBOT_RL_DEBUG") == "1":
            raise
        console.print(f"[bold red]error:[/bold red] {e}")
        console.print("[dim](set ROBOT_RL_DEBUG=1 for the traceback)[/dim]")
        sys.exit(1)
