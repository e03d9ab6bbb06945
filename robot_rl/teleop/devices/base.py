"""What every teleop device is to the recording loop, and the shared input-device logic.

A device is a :class:`~robot_rl.policies.base.Policy` (``reset``, ``act``) plus
``poll_events()``, which returns the operator's :class:`~robot_rl.teleop.events.Control`\\ s
since the last call. The loop calls ``poll_events()`` once per control tick (also while it
waits for the operator to start) and ``act(obs)`` once per recorded step.

Input devices (keyboard, SpaceMouse, gamepad) are thin adapters: an
:class:`~robot_rl.teleop.events.EventSource` delivers raw vendor events, and
:meth:`InputDevice.handle` maps each to a *command* through the device's bindings:

========================  ===========================================================
command                   effect
========================  ===========================================================
``x+ x- y+ y- z+ z-``     move the end effector along a base-frame axis while held
``gripper_toggle``        open <-> close the gripper on each press
``gripper_close``         keep the gripper closed while held
``start stop toggle``     :class:`Control` of the same name
``discard rerecord``
``success failure quit``
========================  ===========================================================

Analog axes (SpaceMouse, sticks) add a continuous motion on top. The action is
``[speed * motion, gripper]`` in the env's ``ee_delta`` layout, ``gripper`` +1 open and -1
closed, every entry in [-1, 1].
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np

from robot_rl.teleop.events import Control, EventSource, RawEvent

MOTION_COMMANDS = {
    "x+": (0, 1.0),
    "x-": (0, -1.0),
    "y+": (1, 1.0),
    "y-": (1, -1.0),
    "z+": (2, 1.0),
    "z-": (2, -1.0),
}
GRIPPER_COMMANDS = ("gripper_toggle", "gripper_close")
CONTROL_COMMANDS = {c.value: c for c in Control}
COMMANDS = (*MOTION_COMMANDS, *GRIPPER_COMMANDS, *CONTROL_COMMANDS)

GRIPPER_OPEN, GRIPPER_CLOSED = 1.0, -1.0


class Device(abc.ABC):
    """Base of every device the recording loop drives.

    Attributes:
        source: provenance source of what it records (``teleop``, ``scripted``, ``policy``).
        operator_driven: True when a person starts each episode (the loop then waits for
            START, and by default runs in real time and lets the operator review each
            episode); False for scripted experts and replays, which start at once.
        policy_id: what acted, for provenance (empty for a person).
    """

    source: str = "teleop"
    operator_driven: bool = True
    policy_id: str = ""

    @abc.abstractmethod
    def reset(self) -> None:
        """Called when an episode starts."""

    @abc.abstractmethod
    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The action for this control step, in [-1, 1]."""

    def poll_events(self) -> list[Control]:
        """Operator controls since the last call (none for devices without an operator)."""
        return []

    def close(self) -> None:  # noqa: B027 (most devices hold nothing to release)
        """Release the hardware."""

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Devices a person drives live; an unavailable one suggests the others.
LIVE_DEVICES = ("keyboard", "gamepad", "spacemouse")


class DeviceUnavailableError(RuntimeError):
    """A teleop device cannot be opened: no display for the keyboard window, no
    joystick, no SpaceMouse, or the driver library refused.

    The message is one paragraph: ``teleop=<device> cannot open: <why>. <fix>, use
    another device (...), or replay recorded input with teleop.events_in=<event log>.``

    Args:
        device: the ``teleop`` device name.
        why: what failed, as the system reported it.
        fix: what makes this device open (starts with a capital, no final period).
    """

    def __init__(self, device: str, why: str, fix: str):
        others = "|".join([d for d in LIVE_DEVICES if d != device] + ["scripted"])
        super().__init__(
            f"teleop={device} cannot open: {why}. {fix}; or use another device "
            f"(teleop={others}), or replay recorded input with teleop.events_in=<event log>."
        )
        self.device = device


def parse_axis_map(spec: Sequence[str], where: str) -> list[tuple[str, float] | None]:
    """Parse three source-axis names (``"x"``, ``"-y"``, ``"1"``, ``""``) for dx, dy, dz.

    A leading ``-`` inverts the axis; an empty string leaves that direction unmapped.
    """
    if len(spec) != 3:
        raise ValueError(f"{where}: expected 3 entries (for dx, dy, dz), got {list(spec)}")
    out: list[tuple[str, float] | None] = []
    for s in spec:
        s = str(s).strip()
        if not s:
            out.append(None)
        elif s.startswith("-"):
            out.append((s[1:], -1.0))
        else:
            out.append((s.lstrip("+"), 1.0))
    return out


def apply_deadzone(v: float, deadzone: float) -> float:
    """0 inside the dead zone, then rescaled so that full deflection is still 1."""
    a = abs(v)
    if a <= deadzone:
        return 0.0
    return float(np.sign(v) * min(1.0, (a - deadzone) / (1.0 - deadzone)))


class InputDevice(Device):
    """A person's input device: raw events from ``source`` mapped through ``bindings``.

    Args:
        source: where raw events come from (hardware, or a recorded log).
        bindings: raw input name -> command (see the module docstring); the input names
            are the subclass's (key names, ``button:<i>``, ...).
        speed: fraction of the largest end-effector step at full deflection, in (0, 1].
    """

    def __init__(self, source: EventSource, bindings: Mapping[str, str], speed: float = 1.0):
        if not 0 < speed <= 1:
            raise ValueError(f"speed: expected a fraction in (0, 1], got {speed!r}")
        bad = {k: v for k, v in bindings.items() if v not in COMMANDS}
        if bad:
            raise ValueError(
                f"{type(self).__name__} bindings: unknown command(s) {bad}; "
                f"expected one of {list(COMMANDS)}"
            )
        self.events = source
        self.bindings = dict(bindings)
        self.speed = float(speed)
        self._held: set[str] = set()
        self._analog = np.zeros(3)
        self._toggled_closed = False
        self._pending: list[Control] = []
        self._pumped = False
        self._quit_sent = False

    # --- what subclasses implement -----------------------------------------------------
    @abc.abstractmethod
    def handle(self, event: RawEvent) -> None:
        """Update the device state from one raw event (via :meth:`press`/:meth:`release`)."""

    # --- helpers for subclasses --------------------------------------------------------
    def press(self, name: str) -> None:
        """The input ``name`` went down: start its command."""
        command = self.bindings.get(name)
        if command is None:
            return
        if command in MOTION_COMMANDS or command == "gripper_close":
            self._held.add(command)
        elif command == "gripper_toggle":
            self._toggled_closed = not self._toggled_closed
        else:
            self._pending.append(CONTROL_COMMANDS[command])

    def release(self, name: str) -> None:
        """The input ``name`` went up: end its held command."""
        command = self.bindings.get(name)
        if command is not None:
            self._held.discard(command)

    def release_all(self) -> None:
        """Forget every held input and zero the analog axes (focus lost, device gone)."""
        self._held.clear()
        self._analog[:] = 0.0

    def set_analog(self, motion: Sequence[float]) -> None:
        """The analog motion in [-1, 1]^3 (SpaceMouse, sticks)."""
        self._analog[:] = np.clip(np.asarray(motion, dtype=np.float64), -1.0, 1.0)

    # --- Policy + controls -------------------------------------------------------------
    def _pump(self) -> None:
        for event in self.events.poll():
            self.handle(event)
        if getattr(self.events, "exhausted", False) and not self._quit_sent:
            # A replayed log has run out: nobody is left to press anything.
            self._quit_sent = True
            self._pending.append(Control.QUIT)

    def poll_events(self) -> list[Control]:
        self._pump()
        self._pumped = True
        out, self._pending = self._pending, []
        return out

    def reset(self) -> None:
        # The gripper starts open in every episode (the env resets it open); held inputs
        # stay held, since the physical key or stick still is.
        self._toggled_closed = False

    @property
    def gripper_closed(self) -> bool:
        return self._toggled_closed or "gripper_close" in self._held

    def motion(self) -> np.ndarray:
        """The commanded end-effector direction in [-1, 1]^3 (before ``speed``)."""
        m = self._analog.copy()
        for command in self._held:
            if command in MOTION_COMMANDS:
                axis, sign = MOTION_COMMANDS[command]
                m[axis] += sign
        return np.clip(m, -1.0, 1.0)

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        # Exactly one poll of the source per control tick: the loop's poll_events() has
        # pumped already; a plain Policy user (no poll_events) gets it pumped here.
        if not self._pumped:
            self._pump()
        self._pumped = False
        gripper = GRIPPER_CLOSED if self.gripper_closed else GRIPPER_OPEN
        return np.append(self.speed * self.motion(), gripper).astype(np.float32)

    def close(self) -> None:
        self.events.close()
