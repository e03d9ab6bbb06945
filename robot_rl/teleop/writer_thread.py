"""The recorder's writer thread: all of a session's store I/O, behind a bounded queue.

The recording loop hands it episode boundaries (begin, commit, discard) and blocks of rows;
it owns the store's :class:`~robot_rl.data.episode_writer.EpisodeWriter`, writes, fsyncs
and commits, and reports commits and stored labels back through callbacks. See
:mod:`robot_rl.teleop.recorder` for how the loop uses it (overflow, fates).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from robot_rl.data.episode_store import EpisodeProvenance
from robot_rl.teleop.session import RecorderError

log = logging.getLogger(__name__)


class _Msg(NamedTuple):
    kind: str  # begin | rows | commit | discard | stop
    token: int
    payload: Any
    n_rows: int
    enqueued: float


class RowBlock(NamedTuple):
    """A block of one episode's rows: control-rate frames and, optionally, the rows of
    other-rate streams (1 kHz robot state, 30 Hz cameras) that fall in the same span."""

    frames: dict[str, np.ndarray]
    streams: dict[str, dict[str, np.ndarray]] | None = None


class _Commit(NamedTuple):
    """A commit's payload: the episode's last rows travel with it (never dropped)."""

    provenance: EpisodeProvenance
    rows: dict[str, np.ndarray] | None
    #: The operator's success label to store after the commit (None: not marked).
    label: bool | None
    labeller: str


#: How long a blocked put waits between checks that the writer thread is still alive.
_PUT_POLL_S = 0.1


class EpisodeWriterThread:
    """Owns the store's episode writers; the loop talks to it only through a bounded queue.

    A failure on the writer thread is kept in :attr:`error` (and logged); the thread then
    keeps draining the queue without writing, so the loop never blocks on a dead writer.

    Args:
        store: an episode store opened for appending (``begin_episode()``).
        queue_blocks: capacity of the queue, in messages (row blocks, mostly).
        block_on_full: wait for room instead of reporting overflow (not in real time).
        on_commit: called on the writer thread with (token, store index) per commit.
        on_label: called on the writer thread with (token, error message or None) after
            it tried to store an operator's label.
    """

    def __init__(
        self,
        store: Any,
        queue_blocks: int = 64,
        *,
        block_on_full: bool = False,
        on_commit: Callable[[int, int], None] | None = None,
        on_label: Callable[[int, str | None], None] | None = None,
    ):
        if queue_blocks < 2:
            raise ValueError(f"queue_blocks: expected >= 2, got {queue_blocks}")
        self.store = store
        self.queue: queue.Queue[_Msg] = queue.Queue(maxsize=queue_blocks)
        self.block_on_full = block_on_full
        self.on_commit = on_commit
        self.on_label = on_label
        self.error: BaseException | None = None
        self.error_token: int | None = None
        #: Seconds the last message processed had waited in the queue.
        self.lag_s = 0.0
        self.rows_written = 0
        self.rows_queued = 0
        self._outbox: deque[_Msg] = deque()
        self._writer: Any = None
        self._token: int | None = None
        self._thread = threading.Thread(target=self._run, name="episode-writer", daemon=True)

    # --- loop side ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def fill(self) -> float:
        """Queue fill, 0..1."""
        return self.queue.qsize() / self.queue.maxsize

    @property
    def backlogged(self) -> bool:
        """Boundaries wait in the outbox, or the queue is over half full."""
        return bool(self._outbox) or self.queue.qsize() * 2 > self.queue.maxsize

    def _put(self, msg: _Msg) -> None:
        """Put, waiting for room, but never on a writer thread that has died."""
        while True:
            try:
                self.queue.put(msg, timeout=_PUT_POLL_S)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    raise RecorderError(
                        f"the episode writer thread died{self._error_text()}; committed "
                        "episodes are intact"
                    ) from self.error

    def _error_text(self) -> str:
        err = self.error
        return f" ({type(err).__name__}: {err})" if err is not None else ""

    def flush(self) -> None:
        """Move waiting boundary messages into the queue, as far as it has room."""
        while self._outbox:
            try:
                self.queue.put_nowait(self._outbox[0])
            except queue.Full:
                return
            self._outbox.popleft()

    def send(self, kind: str, token: int, payload: Any = None, n_rows: int = 0) -> None:
        """Queue an episode boundary (begin, commit, discard); never dropped, never blocks
        in real time (it waits in the outbox, in order, when the queue is full)."""
        msg = _Msg(kind, token, payload, n_rows, time.monotonic())
        self.rows_queued += n_rows
        if self.block_on_full:
            self._put(msg)
            return
        self.flush()
        if not self._outbox:
            try:
                self.queue.put_nowait(msg)
                return
            except queue.Full:
                pass
        self._outbox.append(msg)

    def send_rows(
        self,
        token: int,
        block: dict[str, np.ndarray],
        n_rows: int,
        streams: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> bool:
        """Queue a block of control rows (and the stream rows of the same span); False when
        it did not fit (overflow: nothing queued)."""
        msg = _Msg("rows", token, RowBlock(block, streams), n_rows, time.monotonic())
        if self.block_on_full:
            self._put(msg)
        else:
            self.flush()
            if self._outbox:
                return False  # boundaries still waiting: the queue is full
            try:
                self.queue.put_nowait(msg)
            except queue.Full:
                return False
        self.rows_queued += n_rows
        return True

    def send_commit(
        self,
        token: int,
        provenance: EpisodeProvenance,
        *,
        rows: dict[str, np.ndarray] | None = None,
        label: bool | None = None,
        labeller: str = "",
    ) -> None:
        """Queue an episode's commit (with its last rows, if any, and an operator label)."""
        n_rows = 0 if rows is None else len(next(iter(rows.values())))
        self.send("commit", token, _Commit(provenance, rows, label, labeller), n_rows=n_rows)

    def close(self) -> None:
        """Wait until everything queued is written (commits included), then stop.

        Returns at once if the writer thread has died; :attr:`error` says why.
        """
        try:
            while self._outbox:
                self._put(self._outbox.popleft())
            self._put(_Msg("stop", -1, None, 0, time.monotonic()))
        except RecorderError:
            return  # the thread is gone: nothing more will be written
        self._thread.join()

    # --- writer side ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                msg = self.queue.get()
                self.lag_s = time.monotonic() - msg.enqueued
                if msg.kind == "stop":
                    self._abandon_quietly()
                    return
                if self.error is not None:
                    continue  # failed: drain without writing, the loop is stopping
                try:
                    self._handle(msg)
                except BaseException as e:
                    self.error, self.error_token = e, msg.token
                    log.exception("episode writer failed on a %s message", msg.kind)
                    self._abandon_quietly()
        except BaseException as e:  # not expected: still say why the thread is gone
            if self.error is None:
                self.error = e
            log.exception("episode writer thread died")

    def _handle(self, msg: _Msg) -> None:
        if msg.kind == "begin":
            self._abandon()
            self._writer = self.store.begin_episode()
            self._token = msg.token
            return
        if msg.token != self._token or self._writer is None:
            return  # belongs to an episode already abandoned
        if msg.kind == "rows":
            block: RowBlock = msg.payload
            self._writer.append(block.frames)
            for name, rows in (block.streams or {}).items():
                self._writer.append_stream(name, rows)
            self.rows_written += msg.n_rows
        elif msg.kind == "commit":
            commit: _Commit = msg.payload
            if commit.rows is not None:
                self._writer.append(commit.rows)
                self.rows_written += msg.n_rows
            index = self._writer.commit(commit.provenance)
            self._writer, self._token = None, None
            if self.on_commit is not None:
                self.on_commit(msg.token, index)
            if commit.label is not None:
                self._store_label(msg.token, index, commit.label, commit.labeller)
        elif msg.kind == "discard":
            self._abandon()

    def _store_label(self, token: int, index: int, label: bool, labeller: str) -> None:
        # The episode is committed whatever happens here: a failed label write is
        # reported, not a reason to stop recording.
        error = None
        try:
            self.store.set_success_label(index, label, labeller=labeller)
        except Exception as e:
            log.exception("storing the operator's label of episode %d failed", index)
            error = f"{type(e).__name__}: {e}"
        if self.on_label is not None:
            self.on_label(token, error)

    def _abandon(self) -> None:
        if self._writer is not None:
            try:
                self._writer.discard()
            finally:
                self._writer, self._token = None, None

    def _abandon_quietly(self) -> None:
        """:meth:`_abandon` on the way out: a failing discard is logged, never raised (an
        uncommitted tail is deleted by the next ``begin_episode`` anyway)."""
        try:
            self._abandon()
        except BaseException:
            log.exception("discarding an uncommitted episode failed")
