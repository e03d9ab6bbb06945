"""Keyboard teleoperation: hold keys to move the end effector, press keys for controls.

Raw events are pygame's ``KeyDown`` / ``KeyUp`` (with pygame's key names), ``Quit`` (the
window was closed) and ``WindowFocusLost`` (key-ups would go elsewhere, so every held
key is released: the arm never keeps moving on a key nobody holds).
"""

from __future__ import annotations

from collections.abc import Mapping

from robot_rl.teleop.devices.base import InputDevice
from robot_rl.teleop.events import Control, EventSource, RawEvent

#: pygame key name -> command; directions as seen from behind the robot, looking along +x
#: (w forward, a left, e up).
DEFAULT_KEYBOARD_BINDINGS: dict[str, str] = {
    "w": "x+",
    "s": "x-",
    "a": "y+",
    "d": "y-",
    "e": "z+",
    "q": "z-",
    "space": "gripper_toggle",
    "return": "toggle",
    "backspace": "discard",
    "r": "rerecord",
    "y": "success",
    "n": "failure",
    "escape": "quit",
}


class KeyboardDevice(InputDevice):
    """Keyboard adapter; see :class:`~robot_rl.teleop.devices.base.InputDevice`.

    Args:
        source: key events (a :class:`PygameKeyboardSource` or a recorded log).
        bindings: pygame key name -> command; None for :data:`DEFAULT_KEYBOARD_BINDINGS`.
        speed: fraction of the largest end-effector step while a key is held.
    """

    def __init__(
        self,
        source: EventSource,
        bindings: Mapping[str, str] | None = None,
        speed: float = 0.5,
    ):
        super().__init__(source, DEFAULT_KEYBOARD_BINDINGS if bindings is None else bindings, speed)

    def handle(self, event: RawEvent) -> None:
        if event.type == "KeyDown":
            self.press(str(event.data["key"]))
        elif event.type == "KeyUp":
            self.release(str(event.data["key"]))
        elif event.type == "WindowFocusLost":
            self.release_all()
        elif event.type == "Quit":
            self.release_all()
            self._pending.append(Control.QUIT)
