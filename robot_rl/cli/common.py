"""Console output and error handling shared by the console scripts."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from rich.console import Console

from robot_rl.config.schema import ConfigError

console = Console(highlight=False, soft_wrap=True)


def quiet_library_loggers() -> None:
    """Hydra sets the root logger to INFO; these libraries then chatter about internals."""
    for name in ("OpenGL", "matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)


def show_progress(requested: bool) -> bool:
    """Progress bars only on a terminal: in logs and CI they are noise."""
    return requested and sys.stderr.isatty()


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
