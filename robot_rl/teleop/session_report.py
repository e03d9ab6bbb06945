"""What a recording session reports: live :class:`~robot_rl.teleop.session.SessionStats`
for the progress display, the session log's episodes, and the
:class:`~robot_rl.teleop.session.RecordSummary` at the end.

:class:`SessionReport` is the part of :class:`~robot_rl.teleop.recorder.Recorder` that
does it; the recorder keeps the counters it reads.
"""

from __future__ import annotations

import time

from robot_rl.teleop.episode_end import OpenEpisode
from robot_rl.teleop.session import (
    EpisodeRecord,
    ProgressDisplay,
    RecordSummary,
    SessionLog,
    SessionStats,
)
from robot_rl.teleop.writer_thread import EpisodeWriterThread


class SessionReport:
    """Reporting on the session (part of :class:`~robot_rl.teleop.recorder.Recorder`,
    which keeps the counters)."""

    n_episodes: int
    display: ProgressDisplay | None
    writer: EpisodeWriterThread
    _log: SessionLog
    _ep: OpenEpisode | None
    _state: str
    _seed: int
    _total_steps: int
    _n_success: int
    _n_discarded: int
    _n_overflowed: int
    _dropped_rows: int
    _n_lost: int
    _overruns: int
    _tick_hz: float
    _last_display: float

    def _summary(self, wall_time_s: float) -> RecordSummary:
        episodes = self._log.episodes
        kept = [r for r in episodes if r.outcome == "committed"]
        return RecordSummary(
            n_episodes=len(kept),
            n_steps=sum(r.steps for r in kept),
            n_success=sum(bool(r.success) for r in kept),
            wall_time_s=wall_time_s,
            n_discarded=self._n_discarded,
            n_overflowed=self._n_overflowed,
            dropped_rows=self._dropped_rows,
            n_lost=self._n_lost,
            overruns=self._overruns,
            episodes=episodes,
        )

    @property
    def episodes(self) -> list[EpisodeRecord]:
        """Every episode of the session so far, in order, including the dropped ones."""
        return self._log.episodes

    def stats(self) -> SessionStats:
        ep = self._ep
        return SessionStats(
            state=self._state,
            committed=self._log.committed,
            target=self.n_episodes,
            episode_steps=ep.steps if ep else 0,
            total_steps=self._total_steps,
            n_success=self._n_success,
            n_discarded=self._n_discarded,
            n_overflowed=self._n_overflowed,
            dropped_rows=self._dropped_rows,
            queue_fill=self.writer.fill,
            writer_lag_s=self.writer.lag_s if self.writer.queue.qsize() else 0.0,
            overruns=self._overruns,
            seed=self._seed,
            label=ep.label if ep else None,
            env_success=ep.env_success if ep else False,
            tick_hz=self._tick_hz,
        )

    def _update_display(self, force: bool = False) -> None:
        if self.display is None:
            return
        now = time.monotonic()
        if force or now - self._last_display >= 0.1:
            self._last_display = now
            self.display.update(self.stats())
