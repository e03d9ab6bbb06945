"""Live keyboard and gamepad input through pygame (SDL2), as :class:`RawEvent`\\ s.

The keyboard needs a focused pygame window (key-up events need one); the gamepad works
without a window (SDL's background joystick events), so it runs on a headless robot PC.
``pygame`` is imported only when a live source is opened: adapters, logs and tests need
only the plain event data.

A source that cannot open raises :class:`~robot_rl.teleop.devices.base.DeviceUnavailableError`.
Without a display SDL does not fail: it falls back to its ``offscreen`` video driver, whose
window never gets the keyboard focus, so a keyboard session would wait forever for keys.
The keyboard therefore refuses a headless video driver that SDL chose by itself (one set
in ``SDL_VIDEODRIVER`` on purpose, as the tests do to post events, is kept).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from robot_rl.teleop.devices.base import DeviceUnavailableError
from robot_rl.teleop.events import RawEvent

# Attributes of pygame's joystick events (pygame 2 docs: "pygame.event"); values are ints,
# floats or tuples (hats), all JSON-serializable once tuples become lists.
_JOY_FIELDS = ("instance_id", "joy", "axis", "value", "button", "hat", "device_index")
JOY_EVENT_TYPES = (
    "JoyAxisMotion",
    "JoyButtonDown",
    "JoyButtonUp",
    "JoyHatMotion",
    "JoyDeviceAdded",
    "JoyDeviceRemoved",
)
KEY_EVENT_TYPES = ("KeyDown", "KeyUp")
WINDOW_EVENT_TYPES = ("Quit", "WindowFocusLost")
# SDL video drivers that open no window a person can type into.
HEADLESS_VIDEO_DRIVERS = ("offscreen", "dummy")
_KEYBOARD_FIX = "Run it in a desktop session, or set DISPLAY to a reachable X display (ssh -X)"


def _import_pygame(device: str = "keyboard") -> Any:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as e:  # pragma: no cover - pygame is a dependency
        raise DeviceUnavailableError(
            device, "pygame is not installed", "Install it (pip install pygame)"
        ) from e
    return pygame


def pygame_event_to_raw(event: Any, t: float = 0.0) -> RawEvent | None:
    """One ``pygame.event.Event`` as a RawEvent, or None for event types no device uses.

    Key events carry pygame's key name (``pygame.key.name``: ``"w"``, ``"return"``,
    ``"space"``) besides the key code, since codes differ between SDL versions and names
    are what bindings use.
    """
    pygame = _import_pygame()
    name = pygame.event.event_name(event.type)
    if name in KEY_EVENT_TYPES:
        data = {
            "key": pygame.key.name(event.key),
            "code": int(event.key),
            "mod": int(getattr(event, "mod", 0)),
        }
    elif name in JOY_EVENT_TYPES:
        data = {}
        for k in _JOY_FIELDS:
            if k in event.dict:
                v = event.dict[k]
                data[k] = list(v) if isinstance(v, tuple) else v
    elif name in WINDOW_EVENT_TYPES:
        data = {}
    else:
        return None
    return RawEvent(name, data, t)


class PygameKeyboardSource:
    """Key presses from a small pygame window (it must have the keyboard focus).

    Args:
        title: window caption, shown to the operator.
        size: window size in pixels.

    Raises:
        DeviceUnavailableError: no display to open the window on (see the module
            docstring), or SDL could not open it.
    """

    def __init__(self, title: str = "robot_rl teleop: keep this window focused", size=(480, 80)):
        chosen_driver = os.environ.get("SDL_VIDEODRIVER", "")
        if (
            not chosen_driver
            and sys.platform.startswith("linux")
            and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")
        ):
            # Checked before SDL starts: it would print its own probing errors, then
            # fall back to a window nobody can see.
            raise DeviceUnavailableError(
                "keyboard",
                "it reads keys from a small window, and there is no display to open it on "
                "(DISPLAY and WAYLAND_DISPLAY are unset)",
                _KEYBOARD_FIX,
            )
        pygame = _import_pygame()
        try:
            pygame.display.init()
            self._screen = pygame.display.set_mode(size)
            pygame.display.set_caption(title)
        except pygame.error as e:
            pygame.display.quit()
            raise DeviceUnavailableError(
                "keyboard", f"SDL could not open its input window ({e})", _KEYBOARD_FIX
            ) from None
        driver = pygame.display.get_driver()
        if not chosen_driver and driver in HEADLESS_VIDEO_DRIVERS:
            pygame.display.quit()
            raise DeviceUnavailableError(
                "keyboard",
                f"no display could be reached (DISPLAY={os.environ.get('DISPLAY', '')!r}), "
                f"so SDL fell back to its {driver!r} video driver, whose window gets no key "
                "presses",
                _KEYBOARD_FIX,
            )
        self._pygame = pygame
        self._t0 = time.monotonic()

    def poll(self) -> list[RawEvent]:
        t = time.monotonic() - self._t0
        out = []
        for event in self._pygame.event.get():
            raw = pygame_event_to_raw(event, t)
            if raw is not None and raw.type in (*KEY_EVENT_TYPES, *WINDOW_EVENT_TYPES):
                out.append(raw)
        return out

    def close(self) -> None:
        self._pygame.display.quit()


class PygameJoystickSource:
    """Axis, button and hat events of one gamepad (SDL joystick API).

    Args:
        index: which connected joystick (0: the first).

    Raises:
        DeviceUnavailableError: no joystick with that index is connected, or SDL could
            not start its joystick subsystem.
    """

    def __init__(self, index: int = 0):
        # Joystick events must reach us without a focused window, and the robot PC may
        # have no display at all.
        os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        pygame = _import_pygame("gamepad")
        fix = (
            "Plug a gamepad in (it appears as /dev/input/js* or /dev/input/event*, which "
            "this user must be allowed to read) or pick a connected one with "
            "teleop.joystick_index"
        )
        try:
            pygame.display.init()
            pygame.joystick.init()
            n = pygame.joystick.get_count()
            if not 0 <= index < n:
                raise DeviceUnavailableError(
                    "gamepad", f"no joystick #{index} (teleop.joystick_index); {n} connected", fix
                )
            self._js = pygame.joystick.Joystick(index)
        except pygame.error as e:
            pygame.joystick.quit()
            pygame.display.quit()
            raise DeviceUnavailableError(
                "gamepad", f"SDL could not open the joystick ({e})", fix
            ) from None
        except DeviceUnavailableError:
            pygame.joystick.quit()
            pygame.display.quit()
            raise
        self._id = self._js.get_instance_id()
        self.name = self._js.get_name()
        self._pygame = pygame
        self._t0 = time.monotonic()

    def poll(self) -> list[RawEvent]:
        t = time.monotonic() - self._t0
        out = []
        for event in self._pygame.event.get():
            raw = pygame_event_to_raw(event, t)
            if raw is None or raw.type not in (*JOY_EVENT_TYPES, "Quit"):
                continue
            if raw.data.get("instance_id", self._id) != self._id:
                continue  # another controller
            out.append(raw)
        return out

    def close(self) -> None:
        self._pygame.joystick.quit()
        self._pygame.display.quit()
