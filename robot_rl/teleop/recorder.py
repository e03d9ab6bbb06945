"""The recording loop: a device acts in an env at the control rate, and each episode goes
to an episode store through a writer thread behind a bounded queue.

Row t of an episode holds the observation the actor saw, the action it sent, and the
reward / terminated / truncated that followed. The final observation is not a row (the
store's sampler gives terminal rows next_obs = obs, masked by ``terminated``). The last
row of every stored episode is terminated or truncated (an operator's STOP truncates).

**Never blocking on disk.** The loop hands rows to
:class:`~robot_rl.teleop.writer_thread.EpisodeWriterThread` in
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

**Fates.** The session log (:attr:`Recorder.episodes`,
:class:`~robot_rl.teleop.session.SessionLog`) marks a kept episode ``queued``
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
``intervention`` (bools), passed through to the per-frame flags; ``safety`` (constraint
name -> bool, the safety filter's report), counted per episode into the provenance's
``safety_interventions``. The recorder also sets ``clipped`` when it clips the device's
action to [-1, 1].

:class:`Recorder` is built in parts: ending episodes
(:class:`~robot_rl.teleop.episode_end.EpisodeEnding`), operator controls
(:class:`~robot_rl.teleop.operator_controls.OperatorControls`) and what the session
reports (:class:`~robot_rl.teleop.session_report.SessionReport`); the loop is here.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from robot_rl.data.episode_store import EpisodeProvenance
from robot_rl.policies.base import Policy
from robot_rl.teleop.devices.base import Device
from robot_rl.teleop.devices.scripted import PolicyDevice
from robot_rl.teleop.episode_end import OpenEpisode
from robot_rl.teleop.operator_controls import OperatorControls
from robot_rl.teleop.session import (
    DONE,
    RECORDING,
    REVIEW,
    WAITING,
    EpisodeRecord,
    ProgressDisplay,
    RecorderError,
    RecordSummary,
    SessionLog,
    SessionStats,
)
from robot_rl.teleop.session_report import SessionReport
from robot_rl.teleop.writer_thread import EpisodeWriterThread, RowBlock

__all__ = [
    "DONE",
    "RECORDING",
    "REVIEW",
    "WAITING",
    "EnvLike",
    "EpisodeRecord",
    "EpisodeWriterThread",
    "ProgressDisplay",
    "RecordSummary",
    "Recorder",
    "RecorderError",
    "RowBlock",
    "SessionStats",
    "record_episodes",
]

log = logging.getLogger(__name__)


class EnvLike(Protocol):
    """What the loop needs of an env (the sim now, the hardware bridge later)."""

    def reset(self, *, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict]: ...

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]: ...


# ---------------------------------------------------------------------------- the loop


class Recorder(OperatorControls, SessionReport):
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
        self._log = SessionLog(self.n_episodes, self._say)
        self.writer = EpisodeWriterThread(
            store,
            queue_blocks,
            block_on_full=(not self.realtime) if block_on_full is None else bool(block_on_full),
            on_commit=self._log.on_commit,
            on_label=self._log.on_label,
        )
        # The session clock (see the module docstring): re-anchored when run() starts.
        self._t0_wall = time.time()
        self._t0_mono = time.monotonic()
        self._seed = int(seed)
        self._state = WAITING
        self._ep: OpenEpisode | None = None
        self._obs: dict[str, np.ndarray] = {}
        self._buffer: list[dict[str, Any]] = []
        self._tokens = 0
        self._quit = False
        self._start_pending = False
        self._kept = 0
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
            self._n_lost += self._log.mark_lost()  # never committed: the writer failed
            self._state = DONE
            self._log.announce()
            if self._n_lost:
                self._say(
                    f"{self._n_lost} queued episode(s) never reached the store (the writer "
                    "failed); the session log marks them lost",
                    level="error",
                )
            self._update_display(force=True)
        self._check_writer()
        return self._summary(time.perf_counter() - start)

    def wall_time(self) -> float:
        """Seconds since the epoch on the session clock: anchored to ``time.time()`` once,
        advanced by ``time.monotonic()``, so never decreasing within a session."""
        return self._t0_wall + (time.monotonic() - self._t0_mono)

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
            self._log.announce()
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
        self._ep = OpenEpisode(self._tokens, self._seed, uuid.uuid4().hex, self.wall_time())
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
        for name, acted in (info.get("safety") or {}).items():
            if acted:
                ep.safety_interventions[name] = ep.safety_interventions.get(name, 0) + 1
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

    def _check_writer(self) -> None:
        err = self.writer.error
        if err is not None:
            rec = self._log.get(self.writer.error_token or -1)
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
