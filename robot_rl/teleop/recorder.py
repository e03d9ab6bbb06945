"""The recording loop: a device acts in an env at the control rate, and each episode goes
to an episode store through a writer thread behind a bounded queue.

Row t of an episode holds the observation the actor saw, the action it sent, and the
reward / terminated / truncated that followed. The final observation is not a row (the
store's sampler gives terminal rows next_obs = obs, masked by ``terminated``). The last
row of every stored episode is terminated or truncated (an operator's STOP truncates).

**Never blocking on disk.** The loop hands rows to :class:`EpisodeWriterThread` in
blocks of ``block_steps`` rows through a ``queue.Queue(maxsize=queue_blocks)``; the
writer thread owns the store's :class:`~robot_rl.data.episode_writer.EpisodeWriter` and
does all I/O (chunk writes, fsyncs, the commit). The loop keeps an episode's last row
back until it knows whether the episode ends there, so that a STOP can still mark it.

**Overflow.** In real time (a person or a robot at the control rate) a block is put with
``put_nowait``. If the queue is full the block cannot be stored. By default
(``on_overflow="keep"``) the episode is kept and *flagged*, never silently thinned: its
provenance gets ``dropped_rows`` and ``gap_rows`` (the stored rows after which rows are
missing, so that samplers skip the broken transitions), a loud message names it, and
:attr:`RecordSummary.n_overflowed` / ``dropped_rows`` and the session log count it. That
is the only possible choice for robot and bridge episodes, which cannot be recorded
again. ``on_overflow="discard"`` (useful in sim only, where the same seed can be
recorded again) discards such an episode instead, marks it ``overflowed`` in the session
log and records its seed again. After ``max_consecutive_overflows`` overflowed episodes
in a row the session stops with :class:`RecorderError` (the disk cannot keep up).
Episode boundaries (begin, commit, discard) are never dropped: when the queue is full
they wait, in order, in the loop's outbox, and any row block behind them counts as
overflow. An episode's last rows (at most ``block_steps + 1``) travel with its commit,
so every stored episode ends on its terminal row. When not in real time (scripted
experts, replays: as fast as possible) the loop simply waits for room, since nothing
suffers from that wait.

**Fates.** The session log (:attr:`Recorder.episodes`) marks a kept episode ``queued``
when it is handed to the writer and ``committed`` once the store has committed it (the
"kept" message comes then); if the writer fails, the queued ones that never reached the
store become ``lost``.

**Clock.** Control-row timestamps and episode start times are wall-clock seconds from a
clock anchored once per session (``time.time()`` at the start plus ``time.monotonic()``
since), so a wall-clock step (NTP) can neither make timestamps decrease nor end the
session.

**Controls** (:class:`~robot_rl.teleop.events.Control`): START, STOP, TOGGLE, DISCARD,
RERECORD, SUCCESS / FAILURE, QUIT. An operator's SUCCESS / FAILURE is human feedback:
after the commit the writer stores it with the store's label API
(:meth:`~robot_rl.data.episode_store.EpisodeStore.set_success_label`, labeller: the
provenance's operator pseudonym, or ``"operator"`` when there is none), and it overrides
the env's ``is_success``, which stays the provenance's recorded ``success``. Pairwise
preferences have no control here: enter them with ``robot-rl-data label --prefer``.
With ``review`` on (the default for a person) an episode that ends waits for the
operator: label it, discard it, re-record it, or START / STOP / TOGGLE to keep it.

The env is anything with ``reset(seed=...) -> (obs, info)`` and
``step(action) -> (obs, reward, terminated, truncated, info)``: the simulator now, the
hardware bridge later. Optional ``info`` keys: ``is_success``; ``clipped`` and
``intervention`` (bools), passed through to the per-frame flags. The recorder also sets
``clipped`` when it clips the device's action to [-1, 1].
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

import numpy as np

from robot_rl.data.episode_store import EpisodeProvenance
from robot_rl.policies.base import Policy
from robot_rl.teleop.devices.base import Device
from robot_rl.teleop.devices.scripted import PolicyDevice
from robot_rl.teleop.events import Control

log = logging.getLogger(__name__)

WAITING, RECORDING, REVIEW, DONE = "waiting", "recording", "review", "done"


class RecorderError(RuntimeError):
    """The session cannot go on (the writer failed or cannot keep up, a bad action)."""


class EnvLike(Protocol):
    """What the loop needs of an env (the sim now, the hardware bridge later)."""

    def reset(self, *, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict]: ...

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]: ...


# ---------------------------------------------------------------------------- results


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


# ---------------------------------------------------------------------------- writer thread


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


# ---------------------------------------------------------------------------- the loop


@dataclass
class _Episode:
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


class Recorder:
    """Runs a device in an env and records episodes into a store (see the module docstring).

    Args:
        env: reset/step env (:class:`EnvLike`).
        device: the actor and the source of operator controls.
        store: an episode store opened for appending.
        provenance: template for every episode (success label, start time and episode id
            are filled in per episode).
        n_episodes: stop after this many committed episodes (0: until QUIT).
        seed: reset seed of the first episode; each kept or discarded episode moves on
            to the next seed, a re-recorded one keeps its seed.
        control_hz: control rate in Hz (default: the store's ``control_hz``).
        realtime: hold each control tick to the control period (default: True when a
            person drives the device, False for scripted experts and replays).
        review: let the operator label/keep/discard each ended episode (default: True
            when a person drives the device).
        block_on_full: wait for room in a full writer queue instead of treating it as
            overflow (default: ``not realtime``).
        queue_blocks: writer queue capacity, in row blocks.
        block_steps: rows per block handed to the writer.
        max_episode_steps: truncate episodes at this many steps (0: the env decides).
        max_consecutive_overflows: stop the session after this many overflowed
            episodes in a row.
        on_overflow: ``keep`` (default: store the episode flagged with its gaps; the only
            choice for robot and bridge episodes) or ``discard`` (drop it and record its
            seed again; for sim only).
        display: progress display, or None.
        on_episode: called with (episode number, success label) as each kept episode is
            handed to the writer.
    """

    def __init__(
        self,
        env: EnvLike,
        device: Device | Any,
        store: Any,
        *,
        provenance: EpisodeProvenance,
        n_episodes: int = 0,
        seed: int = 0,
        control_hz: float | None = None,
        realtime: bool | None = None,
        review: bool | None = None,
        block_on_full: bool | None = None,
        queue_blocks: int = 64,
        block_steps: int = 10,
        max_episode_steps: int = 0,
        max_consecutive_overflows: int = 3,
        on_overflow: str = "keep",
        display: ProgressDisplay | None = None,
        on_episode: Callable[[int, bool | None], None] | None = None,
    ):
        if n_episodes < 0:
            raise ValueError(f"n_episodes: expected >= 0 (0: until quit), got {n_episodes}")
        if block_steps < 1:
            raise ValueError(f"block_steps: expected >= 1, got {block_steps}")
        if on_overflow not in ("keep", "discard"):
            raise ValueError(f"on_overflow: expected 'keep' or 'discard', got {on_overflow!r}")
        operator = bool(getattr(device, "operator_driven", False))
        if review and not operator:
            raise ValueError(
                f"review=True needs an operator-driven device; {type(device).__name__} has "
                "nobody to keep or discard its episodes"
            )
        self.env = env
        self.device = device
        self.provenance = provenance
        self.n_episodes = int(n_episodes)
        self.control_hz = float(control_hz or getattr(store, "control_hz", 20.0))
        if not self.control_hz > 0:
            raise ValueError(f"control_hz: expected > 0, got {self.control_hz}")
        self.realtime = operator if realtime is None else bool(realtime)
        self.review = operator if review is None else bool(review)
        self.block_steps = int(block_steps)
        self.max_episode_steps = int(max_episode_steps)
        self.max_consecutive_overflows = int(max_consecutive_overflows)
        self.on_overflow = on_overflow
        self.display = display
        self.on_episode = on_episode
        # Control rows carry a wall-clock timestamp (unix s) when the store has them; the
        # bridge's other-rate streams are aligned to the rows by it.
        self._timestamps = bool(getattr(store, "has_timestamps", False))
        self._records: dict[int, EpisodeRecord] = {}
        self._order: list[EpisodeRecord] = []
        self.writer = EpisodeWriterThread(
            store,
            queue_blocks,
            block_on_full=(not self.realtime) if block_on_full is None else bool(block_on_full),
            on_commit=self._on_commit,
            on_label=self._on_label,
        )
        # Commits and label results reported by the writer thread, for the loop to
        # announce (displays are driven from the loop's thread only).
        # ("commit", token, committed count) or ("label", token, error message or None).
        self._notices: deque[tuple[str, int, Any]] = deque()
        # The session clock (see the module docstring): re-anchored when run() starts.
        self._t0_wall = time.time()
        self._t0_mono = time.monotonic()
        self._seed = int(seed)
        self._state = WAITING
        self._ep: _Episode | None = None
        self._obs: dict[str, np.ndarray] = {}
        self._buffer: list[dict[str, Any]] = []
        self._tokens = 0
        self._quit = False
        self._start_pending = False
        self._kept = 0
        self._committed = 0
        self._committed_lock = threading.Lock()
        self._total_steps = 0
        self._n_success = 0
        self._n_discarded = 0
        self._n_overflowed = 0
        self._dropped_rows = 0
        self._consecutive_overflows = 0
        self._n_lost = 0
        self._overruns = 0
        self._tick_hz = 0.0
        self._last_display = 0.0

    # --- public -------------------------------------------------------------------------
    def run(self) -> RecordSummary:
        """Record until ``n_episodes`` are kept or the operator quits.

        Episodes handed to the writer are committed before this returns, also when it
        raises (KeyboardInterrupt included); an episode still being recorded, or one
        awaiting the operator's review, is discarded.

        Raises:
            RecorderError: the writer failed or cannot keep up, or the device produced an
                invalid action.
        """
        start = time.perf_counter()
        self._t0_wall, self._t0_mono = time.time(), time.monotonic()
        self.writer.start()
        try:
            self._loop()
        except BaseException:
            if self._state in (RECORDING, REVIEW) and self._ep is not None:
                # If the writer is gone, the first error is the one to raise.
                with contextlib.suppress(RecorderError):
                    self._drop("quit", next_seed=False, reset=False)
            raise
        finally:
            self.writer.close()
            with self._committed_lock:
                for rec in self._order:
                    if rec.outcome == "queued":  # never committed: the writer failed
                        rec.outcome = "lost"
                        self._n_lost += 1
            self._state = DONE
            self._announce()
            if self._n_lost:
                self._say(
                    f"{self._n_lost} queued episode(s) never reached the store (the writer "
                    "failed); the session log marks them lost",
                    level="error",
                )
            self._update_display(force=True)
        self._check_writer()
        return self._summary(time.perf_counter() - start)

    def _summary(self, wall_time_s: float) -> RecordSummary:
        kept = [r for r in self._order if r.outcome == "committed"]
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
            episodes=list(self._order),
        )

    def wall_time(self) -> float:
        """Seconds since the epoch on the session clock: anchored to ``time.time()`` once,
        advanced by ``time.monotonic()``, so never decreasing within a session."""
        return self._t0_wall + (time.monotonic() - self._t0_mono)

    @property
    def episodes(self) -> list[EpisodeRecord]:
        """Every episode of the session so far, in order, including the dropped ones."""
        return list(self._order)

    def stats(self) -> SessionStats:
        ep = self._ep
        with self._committed_lock:
            committed = self._committed
        return SessionStats(
            state=self._state,
            committed=committed,
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

    # --- loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        period = 1.0 / self.control_hz
        self._reset_env()
        deadline = last_tick = time.monotonic()
        mean_dt = 0.0
        while True:
            now = time.monotonic()
            if now > last_tick:  # the loop rate, from a running mean of tick intervals
                mean_dt = 0.9 * mean_dt + 0.1 * (now - last_tick) if mean_dt else now - last_tick
                self._tick_hz = 1.0 / mean_dt
            last_tick = now
            self._check_writer()
            self.writer.flush()
            self._announce()
            for control in self.device.poll_events():
                self._on_control(control)
            if self._quit or self._state == DONE:
                break
            if self._state == WAITING and (
                self._start_pending or not getattr(self.device, "operator_driven", False)
            ):
                self._start()
            if self._state == RECORDING:
                self._step()
                if self._state == DONE:
                    break
            self._update_display()
            if self.realtime:
                # Absolute deadlines: a slow tick shortens the next sleep instead of
                # shifting every later tick.
                deadline += period
                delay = deadline - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    self._overruns += 1
                    if delay < -period:  # far behind: do not try to catch up in a burst
                        deadline = time.monotonic()

    def _on_control(self, c: Control) -> None:
        state = self._state
        if c is Control.TOGGLE:
            c = Control.STOP if state == RECORDING else Control.START
        if c is Control.START:
            if state == WAITING:
                self._start()
            elif state == REVIEW:
                self._keep()
        elif c is Control.STOP:
            if state == RECORDING:
                self._end(truncate=True)
            elif state == REVIEW:
                self._keep()
        elif c is Control.DISCARD:
            if state in (RECORDING, REVIEW):
                self._drop("discarded", next_seed=True)
            elif state == WAITING:
                self._seed += 1
                self._say(f"skipped seed {self._seed - 1}; new scene, seed {self._seed}")
                self._reset_env()
        elif c is Control.RERECORD:
            if state in (RECORDING, REVIEW):
                self._drop("rerecorded", next_seed=False)
            else:
                self._say("re-record: no episode in progress (committed ones stay)")
        elif c in (Control.SUCCESS, Control.FAILURE):
            if state in (RECORDING, REVIEW) and self._ep is not None:
                self._ep.label = c is Control.SUCCESS
                self._say(f"episode marked {'success' if self._ep.label else 'failure'}")
            else:
                self._say(f"{c.value}: no episode to label")
        elif c is Control.QUIT:
            if state == RECORDING:
                self._drop("quit", next_seed=False, reset=False)
            elif state == REVIEW:
                self._keep(reset=False)
            self._quit = True

    def _reset_env(self) -> None:
        obs, _ = self.env.reset(seed=self._seed)
        self._obs = obs
        self._buffer = []
        self._ep = None
        self._state = WAITING

    def _start(self) -> None:
        if self.writer.backlogged:
            # Still writing an earlier backlog (after an overflow, most likely): starting
            # now would overflow again at once. Start as soon as it has drained.
            if not self._start_pending:
                self._say("writer catching up; the episode starts when it has")
            self._start_pending = True
            if not self.realtime:
                time.sleep(0.001)
            return
        self._start_pending = False
        self._tokens += 1
        self._ep = _Episode(self._tokens, self._seed, uuid.uuid4().hex, self.wall_time())
        self.writer.send("begin", self._ep.token)
        self.device.reset()
        self._state = RECORDING

    def _step(self) -> None:
        ep = self._ep
        assert ep is not None
        obs = self._obs
        action = np.asarray(self.device.act(obs), dtype=np.float32)
        if action.ndim != 1 or not np.all(np.isfinite(action)):
            raise RecorderError(
                f"{type(self.device).__name__} returned the action {action!r} at step "
                f"{ep.steps} of episode seed {ep.seed}; expected a finite 1-D vector"
            )
        clipped = bool(np.any(np.abs(action) > 1.0))
        action = np.clip(action, -1.0, 1.0)
        stamp = self.wall_time()
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        info = info or {}
        ep.steps += 1
        self._total_steps += 1
        if not terminated and self.max_episode_steps and ep.steps >= self.max_episode_steps:
            truncated = True
        ep.env_success = ep.env_success or bool(info.get("is_success", False))
        row = {k: np.array(v, copy=True) for k, v in obs.items()}
        row.update(
            action=action,
            reward=np.float32(reward),
            terminated=bool(terminated),
            truncated=bool(truncated),
            clipped=clipped or bool(info.get("clipped", False)),
            intervention=bool(info.get("intervention", False)),
        )
        if self._timestamps:
            row["timestamp"] = stamp
        self._buffer.append(row)
        self._obs = next_obs
        if len(self._buffer) > self.block_steps and not self._flush_rows():
            return  # overflowed and discarded (on_overflow="discard"): the env was reset
        if terminated or truncated:
            self._end(truncate=False)

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

    def _record(self, ep: _Episode, outcome: str, success: bool | None, source: str) -> None:
        rec = EpisodeRecord(
            episode_id=ep.episode_id,
            seed=ep.seed,
            steps=ep.steps,
            outcome=outcome,
            success=success,
            label_source=source,
            dropped_rows=ep.dropped_rows,
            gap_rows=list(ep.gap_rows),
            start_time_unix_s=ep.start_time_unix_s,
        )
        with self._committed_lock:
            self._records[ep.token] = rec
            self._order.append(rec)

    def _on_commit(self, token: int, index: int) -> None:  # writer thread
        with self._committed_lock:
            rec = self._records.get(token)
            if rec is not None:
                rec.store_index = index
                rec.outcome = "committed"
            self._committed += 1
            self._notices.append(("commit", token, self._committed))

    def _on_label(self, token: int, error: str | None) -> None:  # writer thread
        with self._committed_lock:
            rec = self._records.get(token)
            if rec is not None:
                rec.label_stored = error is None
            self._notices.append(("label", token, error))

    def _announce(self) -> None:
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
                        level="error",
                    )
                continue
            target = f"/{self.n_episodes}" if self.n_episodes else ""
            flagged = (
                f"; FLAGGED: {rec.dropped_rows} rows dropped, gaps after rows {rec.gap_rows}"
                if rec.dropped_rows
                else ""
            )
            self._say(
                f"episode {info}{target} kept: {rec.steps} steps, "
                f"{'success' if rec.success else 'failure'} ({rec.label_source} label), "
                f"seed {rec.seed}{flagged}",
                level="error" if rec.dropped_rows else "info",
            )

    def _check_writer(self) -> None:
        err = self.writer.error
        if err is not None:
            rec = self._records.get(self.writer.error_token or -1)
            which = f" (episode seed {rec.seed})" if rec else ""
            raise RecorderError(
                f"episode writer failed{which}: {type(err).__name__}: {err}; committed "
                "episodes are intact"
            ) from err
        if self._state != DONE and not self.writer.alive:
            raise RecorderError("the episode writer thread is gone; committed episodes are intact")

    # --- display ------------------------------------------------------------------------
    def _say(self, text: str, level: str = "info") -> None:
        if self.display is not None:
            self.display.message(text, level)
        elif level != "info":
            log.warning(text)

    def _update_display(self, force: bool = False) -> None:
        if self.display is None:
            return
        now = time.monotonic()
        if force or now - self._last_display >= 0.1:
            self._last_display = now
            self.display.update(self.stats())


# ---------------------------------------------------------------------------- shorthand


def record_episodes(
    env: EnvLike,
    policy: Policy,
    store: Any,
    *,
    n_episodes: int,
    seed: int,
    provenance: EpisodeProvenance,
    action_noise_std: float = 0.0,
    on_episode: Callable[[int, bool | None], None] | None = None,
) -> RecordSummary:
    """Records ``n_episodes`` episodes of ``policy`` into ``store`` as fast as possible;
    episode i resets with ``seed + i``.

    Each episode is committed as soon as it ends, so an interrupted session keeps every
    finished episode. ``provenance`` is the template for every episode (its success label,
    start time and id are filled in per episode).

    Args:
        action_noise_std: std of Gaussian noise added to the policy's normalized actions
            (then clipped to [-1, 1]); the noisy action is what is recorded. The noise
            generator is seeded with ``seed``.
    """
    device = PolicyDevice(
        policy,
        source=provenance.source,
        policy_id=provenance.policy_id,
        action_noise_std=action_noise_std,
        rng=np.random.default_rng(seed),
    )
    return Recorder(
        env,
        device,
        store,
        provenance=provenance,
        n_episodes=n_episodes,
        seed=seed,
        realtime=False,
        review=False,
        on_episode=on_episode,
    ).run()
