"""Progress displays for the recording loop: a live panel on a terminal, plain lines in
logs and CI."""

from __future__ import annotations

import collections
from collections.abc import Mapping

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from robot_rl.teleop.recorder import SessionStats

_STYLE = {"info": "", "warning": "yellow", "error": "bold red"}
_STATE_STYLE = {"waiting": "cyan", "recording": "bold green", "review": "bold yellow"}


def _label(stats: SessionStats) -> str:
    if stats.state not in ("recording", "review"):
        return "-"
    if stats.label is not None:
        return f"{'success' if stats.label else 'failure'} (marked)"
    if stats.env_success:
        return "success (env)"
    return "not yet (env)" if stats.state == "recording" else "failure (env)"


def render_stats(stats: SessionStats) -> Table:
    """The progress panel: session counts, the current episode, and the writer's health."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim")
    t.add_column()
    t.add_column(style="dim")
    t.add_column()
    target = f"/{stats.target}" if stats.target else ""
    state = Text(stats.state.upper(), style=_STATE_STYLE.get(stats.state, ""))
    t.add_row("state", state, "seed", str(stats.seed))
    t.add_row(
        "episodes",
        f"{stats.committed}{target} committed",
        "success",
        f"{stats.success_rate:.0%} ({stats.n_success})",
    )
    t.add_row("steps", f"{stats.episode_steps} (total {stats.total_steps})", "label", _label(stats))
    queue_style = "red" if stats.queue_fill > 0.75 else "yellow" if stats.queue_fill > 0.25 else ""
    t.add_row(
        "writer queue",
        Text(f"{stats.queue_fill:.0%}", style=queue_style),
        "writer lag",
        f"{stats.writer_lag_s * 1e3:.0f} ms",
    )
    dropped = Text(
        f"{stats.n_overflowed} episodes / {stats.dropped_rows} rows",
        style="bold red" if stats.n_overflowed else "",
    )
    t.add_row("discarded", str(stats.n_discarded), "overflowed", dropped)
    t.add_row("loop", f"{stats.tick_hz:.1f} Hz", "overruns", str(stats.overruns))
    return t


class RichLiveDisplay:
    """A live panel (rich ``Live``) with the last few messages under it.

    Args:
        bindings: input name -> command, shown once as a help line (None: no help).
        console: where to draw (default: stderr's console).
    """

    def __init__(self, bindings: Mapping[str, str] | None = None, console: Console | None = None):
        self.console = console or Console(stderr=True, highlight=False)
        self._messages: collections.deque[Text] = collections.deque(maxlen=4)
        self._help = None
        if bindings:
            by_command: dict[str, list[str]] = {}
            for name, command in bindings.items():
                by_command.setdefault(command, []).append(name)
            self._help = Text(
                "  ".join(f"[{'/'.join(v)}] {k}" for k, v in by_command.items()), style="dim"
            )
        self._stats: SessionStats | None = None
        self._live = Live(console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self) -> RichLiveDisplay:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(*exc)

    def _render(self) -> Group:
        parts: list = []
        if self._stats is not None:
            parts.append(render_stats(self._stats))
        parts.extend(self._messages)
        if self._help is not None:
            parts.append(self._help)
        return Group(*parts)

    def update(self, stats: SessionStats) -> None:
        self._stats = stats
        self._live.update(self._render())

    def message(self, text: str, level: str = "info") -> None:
        self._messages.append(Text(text, style=_STYLE.get(level, "")))
        self._live.update(self._render())


class LineDisplay:
    """One printed line per message; no live updates (for logs, CI and pipes)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False, soft_wrap=True)

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, stats: SessionStats) -> None:
        pass

    def message(self, text: str, level: str = "info") -> None:
        self.console.print(Text(text, style=_STYLE.get(level, "")))
