"""A recording session's results and log: every episode with its fate, the summary, and
the snapshot a progress display shows.

:class:`SessionLog` is shared by the recording loop and the writer thread: the writer
reports commits and stored labels from its thread, the loop announces them from its own
(displays are driven from the loop's thread only).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The recorder's states: waiting for a start, recording an episode, an ended episode
#: awaiting the operator's review, the session over.
WAITING, RECORDING, REVIEW, DONE = "waiting", "recording", "review", "done"


class RecorderError(RuntimeError):
    """The session cannot go on (the writer failed or cannot keep up, a bad action)."""


@dataclass
class EpisodeRecord:
    """What became of one recorded episode (the session log).

    Attributes:
        episode_id: the provenance ``episode_id`` it has (or would have had) in the store.
        seed: env reset seed (replaying it with the same actions reproduces the episode).
        steps: rows recorded.
        outcome: ``queued`` (handed to the writer, not yet committed), ``committed``,
            ``lost`` (queued, but the writer failed before committing it),
            ``discarded``, ``rerecorded``, ``overflowed`` (dropped rows with
            ``on_overflow="discard"``: discarded and recorded again), ``quit`` (session
            ended mid-episode).
        success: its success label: the operator's where marked, else the env's.
        label_source: ``operator`` (marked) or ``env`` (``info["is_success"]``).
        store_index: its index in the store once committed (filled by the writer).
        dropped_rows: rows that could not be queued (the writer queue was full).
        gap_rows: stored rows after which rows are missing (see
            :class:`~robot_rl.data.provenance.EpisodeProvenance`).
        start_time_unix_s: wall-clock time of its first step.
        label_stored: the operator's label was written to the store's label log.
    """

    episode_id: str
    seed: int
    steps: int
    outcome: str
    success: bool | None
    label_source: str
    store_index: int | None = None
    dropped_rows: int = 0
    gap_rows: list[int] = field(default_factory=list)
    start_time_unix_s: float = 0.0
    label_stored: bool = False


@dataclass
class RecordSummary:
    """What a recording session produced."""

    n_episodes: int
    n_steps: int
    n_success: int
    wall_time_s: float
    #: Episodes dropped by DISCARD or RERECORD.
    n_discarded: int = 0
    #: Episodes that lost rows because a row block did not fit in the writer queue (kept
    #: and flagged with ``on_overflow="keep"``, discarded with ``"discard"``).
    n_overflowed: int = 0
    #: Rows those episodes lost.
    dropped_rows: int = 0
    #: Episodes handed to the writer that never reached the store (the writer failed).
    n_lost: int = 0
    #: Control ticks that ended after their deadline (real time only).
    overruns: int = 0
    #: Every episode of the session, in order, including the dropped ones.
    episodes: list[EpisodeRecord] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.n_success / max(self.n_episodes, 1)


@dataclass
class SessionStats:
    """A snapshot for the progress display."""

    state: str
    committed: int
    target: int
    episode_steps: int
    total_steps: int
    n_success: int
    n_discarded: int
    n_overflowed: int
    dropped_rows: int
    queue_fill: float
    writer_lag_s: float
    overruns: int
    seed: int
    label: bool | None
    env_success: bool
    tick_hz: float

    @property
    def success_rate(self) -> float:
        return self.n_success / max(self.committed, 1)


class ProgressDisplay(Protocol):
    """Where the loop reports progress (see :mod:`robot_rl.teleop.display`)."""

    def update(self, stats: SessionStats) -> None: ...

    def message(self, text: str, level: str = "info") -> None: ...


class SessionLog:
    """Every episode of a session, in order, with its fate (see the recorder's module
    docstring: ``queued``, ``committed``, ``lost``, or dropped).

    Args:
        n_target: episodes the session aims at (0: until quit), for the "kept" messages.
        say: ``say(text, level)`` shows a message (on the loop's thread).
    """

    def __init__(self, n_target: int, say: Callable[[str, str], None]):
        self.n_target = n_target
        self._say = say
        self._records: dict[int, EpisodeRecord] = {}
        self._order: list[EpisodeRecord] = []
        self._committed = 0
        self._lock = threading.Lock()
        # Commits and label results reported by the writer thread, for the loop to
        # announce: ("commit", token, committed count) or ("label", token, error or None).
        self._notices: deque[tuple[str, int, Any]] = deque()

    @property
    def episodes(self) -> list[EpisodeRecord]:
        """Every episode so far, in order, including the dropped ones."""
        with self._lock:
            return list(self._order)

    @property
    def committed(self) -> int:
        """Episodes the store has committed so far."""
        with self._lock:
            return self._committed

    def get(self, token: int) -> EpisodeRecord | None:
        """The record of the episode handed to the writer with ``token``, if any."""
        return self._records.get(token)

    def add(self, token: int, record: EpisodeRecord) -> None:
        """Log an episode that ended (kept and queued, or dropped)."""
        with self._lock:
            self._records[token] = record
            self._order.append(record)

    def on_commit(self, token: int, index: int) -> None:  # writer thread
        with self._lock:
            rec = self._records.get(token)
            if rec is not None:
                rec.store_index = index
                rec.outcome = "committed"
            self._committed += 1
            self._notices.append(("commit", token, self._committed))

    def on_label(self, token: int, error: str | None) -> None:  # writer thread
        with self._lock:
            rec = self._records.get(token)
            if rec is not None:
                rec.label_stored = error is None
            self._notices.append(("label", token, error))

    def mark_lost(self) -> int:
        """Mark the queued episodes that never reached the store (the writer failed)
        ``lost``; return how many."""
        n = 0
        with self._lock:
            for rec in self._order:
                if rec.outcome == "queued":
                    rec.outcome = "lost"
                    n += 1
        return n

    def announce(self) -> None:
        """Say what the writer has done since the last call (on the loop's thread)."""
        while self._notices:
            kind, token, info = self._notices.popleft()
            rec = self._records.get(token)
            if rec is None:
                continue
            if kind == "label":
                if info is not None:
                    self._say(
                        f"the operator's label of episode {rec.store_index} "
                        f"({rec.episode_id[:8]}) was not stored: {info}; set it with "
                        "robot-rl-data label",
                        "error",
                    )
                continue
            target = f"/{self.n_target}" if self.n_target else ""
            flagged = (
                f"; FLAGGED: {rec.dropped_rows} rows dropped, gaps after rows {rec.gap_rows}"
                if rec.dropped_rows
                else ""
            )
            self._say(
                f"episode {info}{target} kept: {rec.steps} steps, "
                f"{'success' if rec.success else 'failure'} ({rec.label_source} label), "
                f"seed {rec.seed}{flagged}",
                "error" if rec.dropped_rows else "info",
            )
