"""The live sources as far as this machine allows: pygame's keyboard window under SDL's
dummy video driver (events posted to its queue), and clear errors where no gamepad or
SpaceMouse is plugged in."""

import numpy as np
import pytest

from robot_rl.teleop.devices import KeyboardDevice
from robot_rl.teleop.events import Control, EventLogRecorder, read_event_log


@pytest.fixture
def dummy_video(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    return pytest.importorskip("pygame")


def test_keyboard_window_events_reach_the_device_and_the_log(dummy_video, tmp_path):
    pygame = dummy_video
    from robot_rl.teleop.devices.pygame_events import PygameKeyboardSource

    log = tmp_path / "keys.jsonl"
    kb = KeyboardDevice(EventLogRecorder(PygameKeyboardSource(), log), speed=1.0)
    try:

        def key(kind, code):
            pygame.event.post(pygame.event.Event(kind, key=code, mod=0, unicode="", scancode=0))

        key(pygame.KEYDOWN, pygame.K_e)
        key(pygame.KEYDOWN, pygame.K_RETURN)
        pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, pos=(3, 4), rel=(1, 1)))
        controls = kb.poll_events()
        a1 = kb.act({})
        key(pygame.KEYUP, pygame.K_e)
        pygame.event.post(pygame.event.Event(pygame.QUIT))
        controls2 = kb.poll_events()
        a2 = kb.act({})
    finally:
        kb.close()
    assert controls == [Control.TOGGLE] and controls2 == [Control.QUIT]
    np.testing.assert_allclose(a1, [0, 0, 1, 1])
    np.testing.assert_allclose(a2, [0, 0, 0, 1])
    logged = [(e.tick, e.type, e.data.get("key")) for e in read_event_log(log)]
    assert logged == [
        (0, "KeyDown", "e"),
        (0, "KeyDown", "return"),
        (1, "KeyUp", "e"),
        (1, "Quit", None),
        (1, "EndOfLog", None),
    ]


def test_missing_gamepad_is_a_clear_error(dummy_video):
    from robot_rl.teleop.devices.pygame_events import PygameJoystickSource

    if dummy_video.joystick.get_init() and dummy_video.joystick.get_count():
        pytest.skip("a joystick is connected")
    with pytest.raises(RuntimeError, match=r"no joystick #3 \(teleop.joystick_index\)"):
        PygameJoystickSource(3)


def test_missing_spacemouse_is_a_clear_error():
    pyspacemouse = pytest.importorskip("pyspacemouse")
    from robot_rl.teleop.devices.spacemouse import SpaceMouseSource

    try:
        plugged = pyspacemouse.get_connected_devices()
    except Exception:  # no system hidapi: certainly none to open
        plugged = []
    if plugged:
        pytest.skip(f"a SpaceMouse is connected: {plugged}")

    with pytest.raises(RuntimeError, match="could not open a SpaceMouse"):
        SpaceMouseSource()
    with pytest.raises(ValueError, match="axis_convention"):
        SpaceMouseSource(axis_convention="sideways")
