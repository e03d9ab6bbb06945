"""SpaceMouse teleoperation through pyspacemouse: the cap's translation moves the end
effector, its buttons are commands.

Raw events are pyspacemouse's state (``SpaceMouseState``: ``t``, ``x``, ``y``, ``z``,
``roll``, ``pitch``, ``yaw`` in [-1, 1], ``buttons`` a list of 0/1), one per change.
Input names for the bindings are ``button:<i>``. The env's ``ee_delta`` action has no
rotation, so ``roll``, ``pitch`` and ``yaw`` are recorded in the event log but unused.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from robot_rl.teleop.devices.base import (
    DeviceUnavailableError,
    InputDevice,
    apply_deadzone,
    parse_axis_map,
)
from robot_rl.teleop.events import EventSource, RawEvent

STATE_FIELDS = ("t", "x", "y", "z", "roll", "pitch", "yaw")
AXIS_NAMES = ("x", "y", "z", "roll", "pitch", "yaw")
#: With pyspacemouse's ``ros`` axis convention (x forward, y left, z up) the cap's axes
#: are the robot base frame's when the operator stands behind the robot.
DEFAULT_SPACEMOUSE_AXES = ("x", "y", "z")
DEFAULT_SPACEMOUSE_BINDINGS: dict[str, str] = {"button:0": "gripper_toggle", "button:1": "toggle"}


def spacemouse_state_to_raw(state: Any, t: float = 0.0) -> RawEvent:
    """A ``pyspacemouse`` state (or anything with its fields) as a RawEvent."""
    data: dict[str, Any] = {k: float(getattr(state, k)) for k in STATE_FIELDS}
    data["buttons"] = [int(b) for b in getattr(state, "buttons", [])]
    return RawEvent("SpaceMouseState", data, t)


class SpaceMouseDevice(InputDevice):
    """SpaceMouse adapter; see :class:`~robot_rl.teleop.devices.base.InputDevice`.

    Args:
        source: state events (a :class:`SpaceMouseSource` or a recorded log).
        axes: state field for dx, dy, dz (``"-y"`` inverts, ``""`` unmapped).
        bindings: ``button:<i>`` -> command; None for the defaults (left button toggles
            the gripper, right button starts/stops).
        deadzone: cap deflection (fraction of full) read as zero.
        speed: fraction of the largest end-effector step at full deflection.
    """

    def __init__(
        self,
        source: EventSource,
        axes: Sequence[str] = DEFAULT_SPACEMOUSE_AXES,
        bindings: Mapping[str, str] | None = None,
        deadzone: float = 0.05,
        speed: float = 1.0,
    ):
        super().__init__(
            source, DEFAULT_SPACEMOUSE_BINDINGS if bindings is None else bindings, speed
        )
        if not 0 <= deadzone < 1:
            raise ValueError(f"spacemouse deadzone: expected a fraction in [0, 1), got {deadzone}")
        self.deadzone = float(deadzone)
        self.axis_map = parse_axis_map(axes, "spacemouse axes")
        for entry in self.axis_map:
            if entry is not None and entry[0] not in AXIS_NAMES:
                raise ValueError(
                    f"spacemouse axes: unknown axis {entry[0]!r}; expected one of {AXIS_NAMES}"
                )
        self._buttons: list[int] = []

    def handle(self, event: RawEvent) -> None:
        d = event.data
        if event.type == "SpaceMouseDisconnected":
            self.release_all()
            self._buttons = []
            return
        if event.type != "SpaceMouseState":
            return
        m = [0.0, 0.0, 0.0]
        for i, entry in enumerate(self.axis_map):
            if entry is not None:
                name, sign = entry
                m[i] = sign * apply_deadzone(float(d.get(name, 0.0)), self.deadzone)
        self.set_analog(m)
        buttons = [int(b) for b in d.get("buttons", [])]
        for i, b in enumerate(buttons):
            was = self._buttons[i] if i < len(self._buttons) else 0
            if b and not was:
                self.press(f"button:{i}")
            elif was and not b:
                self.release(f"button:{i}")
        self._buttons = buttons


class SpaceMouseSource:
    """Reads a SpaceMouse on a background thread and delivers every state change.

    pyspacemouse's ``read()`` consumes one HID report per call, and the device sends them
    far faster than the control rate (translation and rotation in separate reports), so
    reading once per control tick would lag; the thread reads continuously and keeps
    every change, so no button press between two ticks is lost.

    Args:
        device: pyspacemouse device name (None: the first one found).
        axis_convention: pyspacemouse ``AxisConvention`` value (``ros``, ``hid_z_up`` ...).
        read_period_s: pause between reads on the thread.

    Raises:
        DeviceUnavailableError: pyspacemouse is missing or no SpaceMouse could be opened.
        ValueError: an unknown ``axis_convention``.
    """

    def __init__(
        self,
        device: str | None = None,
        axis_convention: str = "ros",
        read_period_s: float = 0.001,
    ):
        try:
            import pyspacemouse
        except ImportError as e:  # pragma: no cover - pyspacemouse is a dependency
            raise DeviceUnavailableError(
                "spacemouse",
                "pyspacemouse is not installed",
                "Install it (pip install pyspacemouse)",
            ) from e
        try:
            convention = pyspacemouse.AxisConvention(axis_convention)
        except ValueError:
            raise ValueError(
                f"teleop.axis_convention={axis_convention!r}: expected one of "
                f"{[c.value for c in pyspacemouse.AxisConvention]}"
            ) from None
        try:
            self._dev = pyspacemouse.open(device=device, axis_convention=convention)
        except Exception as e:
            raise DeviceUnavailableError(
                "spacemouse",
                f"could not open a SpaceMouse ({type(e).__name__}: {str(e).rstrip('.')})",
                "Plug it in, install the system hidapi library (libhidapi-hidraw0) and let "
                "this user read /dev/hidraw* (a udev rule), or name it with "
                "teleop.spacemouse_name",
            ) from None
        self._period = read_period_s
        self._events: deque[RawEvent] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="spacemouse-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                state = self._dev.read()
            except Exception:
                with self._lock:
                    self._events.append(
                        RawEvent("SpaceMouseDisconnected", {}, time.monotonic() - self._t0)
                    )
                return
            raw = spacemouse_state_to_raw(state, time.monotonic() - self._t0)
            key = tuple(v for k, v in raw.data.items() if k != "t")
            if key != last:
                last = key
                with self._lock:
                    self._events.append(raw)
            time.sleep(self._period)

    def poll(self) -> list[RawEvent]:
        with self._lock:
            out = list(self._events)
            self._events.clear()
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self._dev.close()
