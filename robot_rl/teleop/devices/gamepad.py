"""Gamepad teleoperation: sticks move the end effector, buttons are commands.

Raw events are pygame's joystick events (``JoyAxisMotion`` with ``axis`` and ``value`` in
[-1, 1], ``JoyButtonDown`` / ``JoyButtonUp`` with ``button``, ``JoyHatMotion`` with
``hat`` and ``value`` = [x, y] in {-1, 0, 1}, ``JoyDeviceRemoved``). Input names for the
bindings are ``button:<i>`` and ``hat:<i>:up|down|left|right``.

The defaults suit an Xbox-layout pad under SDL2 on Linux (axes 0/1 left stick x/y, 3/4
right stick x/y, stick y positive when pulled down; buttons A 0, B 1, X 2, Y 3, LB 4,
RB 5, Back 6, Start 7); other pads need their own ``axes`` and ``bindings``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from robot_rl.teleop.devices.base import InputDevice, apply_deadzone, parse_axis_map
from robot_rl.teleop.events import EventSource, RawEvent

#: Source axis (index, leading "-" inverts) for dx, dy, dz: left stick pushed up moves
#: +x (away from the operator), left stick left moves +y, right stick up moves +z.
DEFAULT_GAMEPAD_AXES = ("-1", "-0", "-4")
DEFAULT_GAMEPAD_BINDINGS: dict[str, str] = {
    "button:0": "gripper_toggle",
    "button:1": "discard",
    "button:2": "rerecord",
    "button:3": "success",
    "button:4": "failure",
    "button:5": "gripper_close",
    "button:6": "quit",
    "button:7": "toggle",
}
_HAT_DIRECTIONS = {"left": (0, -1), "right": (0, 1), "down": (1, -1), "up": (1, 1)}


class GamepadDevice(InputDevice):
    """Gamepad adapter; see :class:`~robot_rl.teleop.devices.base.InputDevice`.

    Args:
        source: joystick events (a :class:`PygameJoystickSource` or a recorded log).
        axes: source axis index for dx, dy, dz (``"-1"`` inverts axis 1, ``""`` unmapped).
        bindings: ``button:<i>`` / ``hat:<i>:<dir>`` -> command; None for the defaults.
        deadzone: stick deflection (fraction of full) read as zero; sticks rarely rest
            at exactly 0.
        speed: fraction of the largest end-effector step at full deflection.
    """

    def __init__(
        self,
        source: EventSource,
        axes: Sequence[str] = DEFAULT_GAMEPAD_AXES,
        bindings: Mapping[str, str] | None = None,
        deadzone: float = 0.1,
        speed: float = 1.0,
    ):
        super().__init__(source, DEFAULT_GAMEPAD_BINDINGS if bindings is None else bindings, speed)
        if not 0 <= deadzone < 1:
            raise ValueError(f"gamepad deadzone: expected a fraction in [0, 1), got {deadzone}")
        self.deadzone = float(deadzone)
        self.axis_map: list[tuple[int, float] | None] = []
        for entry in parse_axis_map(axes, "gamepad axes"):
            if entry is None:
                self.axis_map.append(None)
                continue
            name, sign = entry
            if not name.isdigit():
                raise ValueError(
                    f"gamepad axes: expected axis indices like '1' or '-4', got {name!r}"
                )
            self.axis_map.append((int(name), sign))
        self._axis_values: dict[int, float] = {}
        self._hats: dict[int, set[str]] = {}

    def _update_motion(self) -> None:
        m = [0.0, 0.0, 0.0]
        for i, entry in enumerate(self.axis_map):
            if entry is not None:
                axis, sign = entry
                m[i] = sign * apply_deadzone(self._axis_values.get(axis, 0.0), self.deadzone)
        self.set_analog(m)

    def handle(self, event: RawEvent) -> None:
        d = event.data
        if event.type == "JoyAxisMotion":
            self._axis_values[int(d["axis"])] = float(d["value"])
            self._update_motion()
        elif event.type == "JoyButtonDown":
            self.press(f"button:{int(d['button'])}")
        elif event.type == "JoyButtonUp":
            self.release(f"button:{int(d['button'])}")
        elif event.type == "JoyHatMotion":
            hat = int(d["hat"])
            x, y = (int(v) for v in d["value"])
            now = {name for name, (i, s) in _HAT_DIRECTIONS.items() if (x, y)[i] == s}
            before = self._hats.get(hat, set())
            for name in sorted(before - now):
                self.release(f"hat:{hat}:{name}")
            for name in sorted(now - before):
                self.press(f"hat:{hat}:{name}")
            self._hats[hat] = now
        elif event.type == "JoyDeviceRemoved":
            # Unplugged or out of range: stop moving rather than keep the last deflection.
            self._axis_values.clear()
            self._hats.clear()
            self.release_all()
