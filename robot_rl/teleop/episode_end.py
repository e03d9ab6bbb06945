"""How the recorder ends an episode: kept (queued for the writer with its provenance),
dropped (discarded, re-recorded, quit), or hit by a writer-queue overflow.

:class:`EpisodeEnding` is the part of :class:`~robot_rl.teleop.recorder.Recorder` that does
it (see the recorder's module docstring, "Overflow" and "Fates"); the control loop that
decides when lives in the recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from robot_rl.data.episode_store import EpisodeProvenance
from robot_rl.teleop.session import DONE, REVIEW, EpisodeRecord, RecorderError, SessionLog
from robot_rl.teleop.writer_thread import EpisodeWriterThread


@dataclass
class OpenEpisode:
    """The episode being recorded (or awaiting review): its writer token, seed, id and
    what happened in it so far."""

    token: int
    seed: int
    episode_id: str
    start_time_unix_s: float
    steps: int = 0
    label: bool | None = None
    env_success: bool = False
    dropped_rows: int = 0
    #: Rows handed to the writer so far (the stored row index of the next one).
    queued_rows: int = 0
    gap_rows: list[int] = field(default_factory=list)
    #: Steps on which each safety-filter constraint acted (the env's ``info["safety"]``).
    safety_interventions: dict[str, int] = field(default_factory=dict)


class EpisodeEnding:
    """Ending episodes (part of :class:`~robot_rl.teleop.recorder.Recorder`, which sets
    this state up and runs the loop)."""

    provenance: EpisodeProvenance
    n_episodes: int
    review: bool
    block_steps: int
    max_consecutive_overflows: int
    on_overflow: str
    on_episode: Callable[[int, bool | None], None] | None
    writer: EpisodeWriterThread
    _log: SessionLog
    _ep: OpenEpisode | None
    _buffer: list[dict[str, Any]]
    _state: str
    _seed: int
    _kept: int
    _n_success: int
    _n_discarded: int
    _n_overflowed: int
    _dropped_rows: int
    _consecutive_overflows: int

    def _say(self, text: str, level: str = "info") -> None:
        raise NotImplementedError

    def _reset_env(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _block(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    def _flush_rows(self) -> bool:
        """Hand all buffered rows but the last to the writer (the last may still be
        marked by a STOP). False: they overflowed and the episode was discarded."""
        rows = self._buffer[:-1]
        if not rows:
            return True
        ep = self._ep
        assert ep is not None
        self._buffer = self._buffer[-1:]
        if self.writer.send_rows(ep.token, self._block(rows), len(rows)):
            ep.queued_rows += len(rows)
            return True
        return self._overflow(len(rows))

    def _overflow(self, n_rows: int) -> bool:
        """``n_rows`` rows did not fit in the writer queue; True if the episode goes on."""
        ep = self._ep
        assert ep is not None
        if not ep.dropped_rows:
            self._n_overflowed += 1
            self._consecutive_overflows += 1
        ep.dropped_rows += n_rows
        self._dropped_rows += n_rows
        after = ep.steps - len(self._buffer) - n_rows
        if self.on_overflow == "keep":
            # Rows are lost between the last stored row and the next one.
            new_gap = ep.queued_rows > 0 and (
                not ep.gap_rows or ep.gap_rows[-1] != ep.queued_rows - 1
            )
            if new_gap:
                ep.gap_rows.append(ep.queued_rows - 1)
            if new_gap or ep.dropped_rows == n_rows:  # once per gap, not per lost block
                self._say(
                    f"WRITER QUEUE FULL: episode seed {ep.seed} ({ep.episode_id[:8]}) is "
                    f"losing rows after step {after}; it is KEPT and FLAGGED (provenance "
                    "dropped_rows, gap_rows: samplers skip the broken transitions)",
                    level="error",
                )
            return True
        self._say(
            f"WRITER QUEUE FULL: episode seed {ep.seed} ({ep.episode_id[:8]}) lost {n_rows} "
            f"rows after step {after}; it is DISCARDED (on_overflow=discard) and will be "
            "recorded again",
            level="error",
        )
        self._drop("overflowed", next_seed=False, reset=False)
        self._check_overflows()
        self._reset_env()
        return False

    def _check_overflows(self) -> None:
        if self._consecutive_overflows >= self.max_consecutive_overflows:
            raise RecorderError(
                f"the episode writer cannot keep up: {self._consecutive_overflows} episodes "
                f"in a row overflowed its queue ({self.writer.queue.maxsize} blocks of "
                f"{self.block_steps} rows); use a faster disk, a larger queue_blocks, or a "
                "lower control rate"
            )

    def _end(self, truncate: bool) -> None:
        ep = self._ep
        assert ep is not None
        if ep.steps == 0:
            self._drop("discarded", next_seed=False)
            return
        if truncate and not (self._buffer[-1]["terminated"] or self._buffer[-1]["truncated"]):
            self._buffer[-1]["truncated"] = True
        # The rows still buffered (at most block_steps + 1) go with the commit.
        if self.review:
            self._state = REVIEW
            label = ep.env_success if ep.label is None else ep.label
            self._say(
                f"episode ended after {ep.steps} steps ({'success' if label else 'failure'}): "
                "keep (start/stop), discard, re-record, or mark success/failure"
            )
        else:
            self._keep()

    def _keep(self, reset: bool = True) -> None:
        ep = self._ep
        assert ep is not None
        success = ep.env_success if ep.label is None else ep.label
        # The recorded success is the env's; an operator's mark is human feedback, stored
        # in the label log after the commit (and shown by store.provenance()).
        prov = replace(
            self.provenance,
            success=ep.env_success,
            start_time_unix_s=ep.start_time_unix_s,
            episode_id=ep.episode_id,
            dropped_rows=ep.dropped_rows,
            gap_rows=list(ep.gap_rows),
            reset_seed=ep.seed,
            safety_interventions=dict(ep.safety_interventions),
        )
        rows = self._buffer
        self._buffer = []
        labeller = self.provenance.operator or "operator"
        self.writer.send_commit(
            ep.token,
            prov,
            rows=self._block(rows) if rows else None,
            label=ep.label,
            labeller=labeller,
        )
        self._record(ep, "queued", success, "env" if ep.label is None else "operator")
        self._kept += 1
        self._n_success += bool(success)
        if self.on_episode is not None:
            self.on_episode(self._kept - 1, success)
        self._seed += 1
        self._ep = None
        if ep.dropped_rows:
            self._check_overflows()
        else:
            self._consecutive_overflows = 0
        if self.n_episodes and self._kept >= self.n_episodes:
            self._state = DONE
        elif reset:
            self._reset_env()

    def _drop(self, outcome: str, *, next_seed: bool, reset: bool = True) -> None:
        ep = self._ep
        assert ep is not None
        self._ep = None
        self._buffer = []
        success = ep.env_success if ep.label is None else ep.label
        self._record(ep, outcome, success, "env" if ep.label is None else "operator")
        if outcome in ("discarded", "rerecorded"):
            self._n_discarded += 1
            self._say(f"episode seed {ep.seed} {outcome} ({ep.steps} steps)", level="warning")
        if next_seed:
            self._seed += 1
        self.writer.send("discard", ep.token)
        if reset:
            self._reset_env()

    def _record(self, ep: OpenEpisode, outcome: str, success: bool | None, source: str) -> None:
        self._log.add(
            ep.token,
            EpisodeRecord(
                episode_id=ep.episode_id,
                seed=ep.seed,
                steps=ep.steps,
                outcome=outcome,
                success=success,
                label_source=source,
                dropped_rows=ep.dropped_rows,
                gap_rows=list(ep.gap_rows),
                start_time_unix_s=ep.start_time_unix_s,
            ),
        )
