"""Raw input events, operator controls, and the event log that records and replays them.

Device readers are split in two: a *source* that reads the hardware (pygame, pyspacemouse)
and turns each vendor event into a :class:`RawEvent` that keeps the vendor's own field
names, and a device adapter that turns raw events into commands. Everything between the
two is plain data, so a session's raw events can be written to a JSON-lines log
(:class:`EventLogRecorder`) and fed back later (:class:`EventLogSource`) in place of the
hardware: that is how the keyboard, SpaceMouse and gamepad paths are tested without them.

Log format, one JSON object per line::

    {"tick": 12, "t": 0.613, "type": "KeyDown", "key": "w", "code": 119, "mod": 0}
    {"tick": 40, "t": 2.011, "type": "SpaceMouseState", "x": 0.4, ..., "buttons": [0, 1]}
    {"tick": 57, "t": 2.853, "type": "EndOfLog"}

``tick`` counts the device's polls (one per control tick of the recording loop, also
while it waits for the operator), ``t`` is seconds since the source was first polled.
``type`` is the vendor's event name (``pygame.event.event_name``; ``SpaceMouseState`` for
pyspacemouse's state) and the other fields are the vendor event's attributes.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

#: Type of the last line of a recorded log: the tick at which recording stopped.
END_OF_LOG = "EndOfLog"


class Control(enum.Enum):
    """Operator controls of the recording loop (what a device's control bindings name)."""

    #: Begin recording an episode (the env is reset and waiting).
    START = "start"
    #: End the episode now; it is kept, its last row marked truncated.
    STOP = "stop"
    #: START when waiting, STOP when recording (for devices with few buttons).
    TOGGLE = "toggle"
    #: Drop the current episode; the next one starts from a new seed.
    DISCARD = "discard"
    #: Drop the current episode and record it again from the same seed.
    RERECORD = "rerecord"
    #: Label the current episode a success (overrides the env's ``is_success``).
    SUCCESS = "success"
    #: Label the current episode a failure (overrides the env's ``is_success``).
    FAILURE = "failure"
    #: End the session; an episode still being recorded is discarded.
    QUIT = "quit"


@dataclass(frozen=True)
class RawEvent:
    """One vendor input event.

    Attributes:
        type: vendor event name, e.g. ``KeyDown``, ``JoyAxisMotion``, ``SpaceMouseState``.
        data: the event's attributes (JSON-serializable), e.g. ``{"axis": 1, "value": -0.5}``.
        t: seconds since the source started (0 for synthetic events).
        tick: poll index at which the event was delivered (-1 if not yet known).
    """

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    t: float = 0.0
    tick: int = -1

    def to_json(self) -> str:
        """One log line (without the newline)."""
        doc = {"tick": self.tick, "t": round(self.t, 6), "type": self.type, **self.data}
        return json.dumps(doc)

    @classmethod
    def from_json(cls, line: str) -> RawEvent:
        doc = json.loads(line)
        if not isinstance(doc, dict) or "type" not in doc:
            raise ValueError(f"expected a JSON object with a 'type', got {line.strip()[:80]!r}")
        tick = int(doc.pop("tick", -1))
        t = float(doc.pop("t", 0.0))
        kind = str(doc.pop("type"))
        return cls(kind, doc, t, tick)


@runtime_checkable
class EventSource(Protocol):
    """Where a device's raw events come from: live hardware or a recorded log."""

    def poll(self) -> list[RawEvent]:
        """Events since the last poll (never blocks). Called once per control tick."""

    def close(self) -> None:
        """Release the hardware."""


class EventLogSource:
    """Replays recorded raw events in place of the hardware.

    Args:
        events: a JSON-lines log path, or the events themselves (e.g. synthetic ones).
        clock: ``tick``: poll n delivers the events recorded at tick <= n, so a replay is
            identical to the recording whatever the timing; ``time``: deliver events once
            the wall time since the first poll reaches their ``t``.

    When the log is exhausted (every event delivered and, if the log ends with an
    ``EndOfLog`` line, its tick passed), :attr:`exhausted` becomes True; devices then
    end the session.
    """

    def __init__(self, events: str | os.PathLike[str] | Iterable[RawEvent], clock: str = "tick"):
        if clock not in ("tick", "time"):
            raise ValueError(f"clock: expected 'tick' or 'time', got {clock!r}")
        if isinstance(events, str | os.PathLike):
            events = read_event_log(events)
        evs = list(events)
        self._end_tick: int | None = None
        self._end_t: float | None = None
        if evs and evs[-1].type == END_OF_LOG:
            self._end_tick, self._end_t = evs[-1].tick, evs[-1].t
            evs = evs[:-1]
        if clock == "tick" and any(e.tick < 0 for e in evs):
            raise ValueError("clock='tick' needs every event's tick (got tick -1)")
        key = (lambda e: e.tick) if clock == "tick" else (lambda e: e.t)
        self._events = sorted(evs, key=key)  # stable: same-tick events keep their order
        self._clock = clock
        self._next = 0
        self._polls = 0
        self._t0: float | None = None
        self.exhausted = False

    def poll(self) -> list[RawEvent]:
        now_tick = self._polls
        self._polls += 1
        if self._t0 is None:
            self._t0 = time.monotonic()
        now_t = time.monotonic() - self._t0
        out: list[RawEvent] = []
        while self._next < len(self._events):
            e = self._events[self._next]
            if (e.tick if self._clock == "tick" else e.t) > (
                now_tick if self._clock == "tick" else now_t
            ):
                break
            out.append(e)
            self._next += 1
        if self._next == len(self._events):
            # The recording polled up to and including its end tick: replay through it.
            if self._clock == "tick":
                done = self._end_tick is None or now_tick > self._end_tick
            else:
                done = self._end_t is None or now_t > self._end_t
            self.exhausted = self.exhausted or (done and not out)
        return out

    def close(self) -> None:
        pass


class EventLogRecorder:
    """Wraps a source and appends every event it delivers to a JSON-lines log.

    :meth:`poll` runs on the control loop's thread, so it only stamps the events and hands
    them to a background logger thread through a queue; that thread writes and flushes
    each batch, so a crashed session leaves its events up to (nearly) the crash.
    :meth:`close` drains the queue, writes the ``EndOfLog`` line and closes the wrapped
    source.
    """

    def __init__(self, source: EventSource, path: str | os.PathLike[str]):
        self.source = source
        self.path = Path(path)
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._polls = 0
        self._t0: float | None = None
        # Batches of events; a batch ending with EndOfLog is the last.
        self._queue: queue.SimpleQueue[list[RawEvent] | None] = queue.SimpleQueue()
        self._closed = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="event-log", daemon=True)
        self._thread.start()

    @property
    def exhausted(self) -> bool:
        return bool(getattr(self.source, "exhausted", False))

    def poll(self) -> list[RawEvent]:
        if self._t0 is None:
            self._t0 = time.monotonic()
        tick = self._polls
        self._polls += 1
        out = []
        for e in self.source.poll():
            t = e.t if e.t else time.monotonic() - self._t0
            out.append(RawEvent(e.type, dict(e.data), t, tick))
        if out:
            self._queue.put(out)
        return out

    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            last = batch[-1].type == END_OF_LOG
            if self.error is not None:
                continue  # keep draining: poll() must never back up behind a dead log
            try:
                self._file.write("".join(e.to_json() + "\n" for e in batch))
                self._file.flush()
            except Exception as e:
                self.error = e
                log.exception("writing the raw-event log %s failed", self.path)
            if last:
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        t = time.monotonic() - self._t0 if self._t0 is not None else 0.0
        self._queue.put([RawEvent(END_OF_LOG, {}, t, max(self._polls - 1, 0))])
        self._thread.join()
        try:
            self._file.close()
        finally:
            self.source.close()


def read_event_log(path: str | os.PathLike[str]) -> list[RawEvent]:
    """All events of a JSON-lines log; a malformed line raises ValueError naming it."""
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                events.append(RawEvent.from_json(line))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}, line {n}: not a raw event: {e}") from None
    return events
