"""Input devices without the hardware: raw event streams in the vendors' formats (pygame
key and joystick events, pyspacemouse states) through the adapters, and the event log's
record/replay round trip."""

import json
import threading

import numpy as np
import pytest

from robot_rl.teleop.devices import GamepadDevice, KeyboardDevice, SpaceMouseDevice
from robot_rl.teleop.devices.keyboard import DEFAULT_KEYBOARD_BINDINGS
from robot_rl.teleop.events import (
    END_OF_LOG,
    Control,
    EventLogRecorder,
    EventLogSource,
    RawEvent,
    read_event_log,
)

OBS: dict = {}


class LiveLikeSource:
    """Delivers events at their tick, like hardware would; never runs out."""

    def __init__(self, events):
        self.events, self.polls = list(events), 0

    def poll(self):
        out = [e for e in self.events if e.tick == self.polls]
        self.polls += 1
        return [RawEvent(e.type, e.data) for e in out]  # hardware events know no tick

    def close(self):
        pass


def ev(tick, kind, **data):
    return RawEvent(kind, data, t=0.05 * tick, tick=tick)


def drive(device, n_ticks):
    """Runs the loop's protocol: per tick poll_events() then act(); returns both per tick."""
    actions, controls = [], []
    for _ in range(n_ticks):
        controls.append(device.poll_events())
        actions.append(device.act(OBS))
    return np.array(actions), controls


# --- keyboard ---------------------------------------------------------------------------


def test_keyboard_held_keys_move_and_release_stops():
    events = [
        ev(1, "KeyDown", key="w"),
        ev(2, "KeyDown", key="e"),
        ev(4, "KeyUp", key="w"),
        ev(5, "KeyUp", key="e"),
        ev(6, "KeyDown", key="d"),
    ]
    kb = KeyboardDevice(EventLogSource(events), speed=0.5)
    actions, _ = drive(kb, 7)
    assert actions.shape == (7, 4) and actions.dtype == np.float32
    np.testing.assert_allclose(actions[0], [0, 0, 0, 1])  # nothing held, gripper open
    np.testing.assert_allclose(actions[1], [0.5, 0, 0, 1])  # w: +x
    np.testing.assert_allclose(actions[2:4], [[0.5, 0, 0.5, 1]] * 2)  # w + e: +x +z
    np.testing.assert_allclose(actions[4], [0, 0, 0.5, 1])
    np.testing.assert_allclose(actions[5], [0, 0, 0, 1])
    np.testing.assert_allclose(actions[6], [0, -0.5, 0, 1])  # d: -y


def test_keyboard_opposite_keys_cancel_and_gripper_toggles_per_press():
    events = [
        ev(0, "KeyDown", key="a"),
        ev(0, "KeyDown", key="d"),
        ev(1, "KeyDown", key="space"),
        ev(2, "KeyUp", key="space"),  # release does not toggle back
        ev(3, "KeyDown", key="space"),
    ]
    actions, _ = drive(KeyboardDevice(EventLogSource(events)), 4)
    assert np.all(actions[:, 1] == 0)
    assert list(actions[:, 3]) == [1, -1, -1, 1]


def test_keyboard_control_keys_emit_controls_once_per_press():
    keys = ["return", "backspace", "r", "y", "n", "escape"]
    events = [ev(i, "KeyDown", key=k) for i, k in enumerate(keys)]
    events += [ev(i, "KeyUp", key=k) for i, k in enumerate(keys)]
    _, controls = drive(KeyboardDevice(EventLogSource(events)), len(keys))
    assert controls == [
        [Control.TOGGLE],
        [Control.DISCARD],
        [Control.RERECORD],
        [Control.SUCCESS],
        [Control.FAILURE],
        [Control.QUIT],
    ]


def test_keyboard_focus_loss_releases_held_keys_and_window_close_quits():
    events = [
        ev(0, "KeyDown", key="w"),
        ev(2, "WindowFocusLost"),
        ev(3, "Quit"),
    ]
    actions, controls = drive(KeyboardDevice(EventLogSource(events)), 4)
    assert actions[1, 0] > 0 and actions[2, 0] == 0  # no KeyUp ever came
    assert controls[3] == [Control.QUIT]


def test_keyboard_reset_reopens_the_gripper():
    kb = KeyboardDevice(EventLogSource([ev(0, "KeyDown", key="space")]))
    actions, _ = drive(kb, 1)
    assert actions[0, 3] == -1
    kb.reset()
    assert kb.act(OBS)[3] == 1


def test_real_pygame_key_events_convert_to_bound_names():
    pygame = pytest.importorskip("pygame")
    from robot_rl.teleop.devices.pygame_events import pygame_event_to_raw

    down = pygame.event.Event(pygame.KEYDOWN, key=pygame.K_w, mod=0, unicode="w", scancode=26)
    ret = pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RETURN, mod=0, unicode="\r")
    up = pygame.event.Event(pygame.KEYUP, key=pygame.K_w, mod=0, unicode="w", scancode=26)
    raws = [pygame_event_to_raw(e) for e in (down, ret, up)]
    assert [r.type for r in raws] == ["KeyDown", "KeyDown", "KeyUp"]
    assert raws[0].data["key"] == "w" and raws[1].data["key"] == "return"
    # JSON-serializable, so it can be logged.
    json.loads(raws[0].to_json())
    kb = KeyboardDevice(EventLogSource([RawEvent(r.type, r.data, 0.0, 0) for r in raws[:2]]))
    controls = kb.poll_events()
    assert controls == [Control.TOGGLE] and kb.act(OBS)[0] == pytest.approx(0.5)
    assert pygame_event_to_raw(pygame.event.Event(pygame.MOUSEMOTION, pos=(1, 2))) is None


def test_unknown_command_in_bindings_is_named():
    with pytest.raises(ValueError, match="teleport"):
        KeyboardDevice(EventLogSource([]), {"t": "teleport"})
    assert "escape" in DEFAULT_KEYBOARD_BINDINGS


# --- SpaceMouse -------------------------------------------------------------------------


def sm(tick, x=0.0, y=0.0, z=0.0, roll=0.0, pitch=0.0, yaw=0.0, buttons=(0, 0)):
    return ev(tick, "SpaceMouseState", t=0.0, x=x, y=y, z=z, roll=roll, pitch=pitch, yaw=yaw,
              buttons=list(buttons))  # fmt: skip


def test_spacemouse_axes_deadzone_and_mapping():
    events = [
        sm(0, x=0.03, y=-0.04, z=0.02, roll=0.9),  # inside the dead zone; rotation unused
        sm(1, x=1.0, y=-0.525, z=0.2),
        sm(2),
    ]
    dev = SpaceMouseDevice(EventLogSource(events), axes=["x", "-y", ""], deadzone=0.05, speed=0.5)
    actions, _ = drive(dev, 3)
    np.testing.assert_allclose(actions[0], [0, 0, 0, 1])
    # (|v| - dz) / (1 - dz), times speed; y inverted, z unmapped
    np.testing.assert_allclose(actions[1], [0.5, 0.25, 0, 1], atol=1e-6)
    np.testing.assert_allclose(actions[2], [0, 0, 0, 1])


def test_spacemouse_buttons_act_on_press_edges_only():
    events = [
        sm(0, buttons=(1, 0)),  # left press: gripper toggles closed
        sm(1, x=0.5, buttons=(1, 0)),  # still held (axis report): no second toggle
        sm(2, buttons=(0, 0)),
        sm(3, buttons=(0, 1)),  # right: start/stop
        sm(4, buttons=(1, 1)),
    ]
    actions, controls = drive(SpaceMouseDevice(EventLogSource(events)), 5)
    assert list(actions[:, 3]) == [-1, -1, -1, -1, 1]
    assert controls == [[], [], [], [Control.TOGGLE], []]


def test_real_pyspacemouse_state_converts():
    pyspacemouse = pytest.importorskip("pyspacemouse")
    from robot_rl.teleop.devices.spacemouse import spacemouse_state_to_raw

    state = pyspacemouse.SpaceMouseState(
        t=12.5, x=0.8, y=0.0, z=-0.6, roll=0.1, pitch=0.0, yaw=0.0,
        buttons=pyspacemouse.ButtonState([1, 0]),
    )  # fmt: skip
    raw = spacemouse_state_to_raw(state)
    assert raw.type == "SpaceMouseState" and raw.data["buttons"] == [1, 0]
    assert raw.data["t"] == 12.5 and raw.data["roll"] == pytest.approx(0.1)
    back = RawEvent.from_json(RawEvent(raw.type, raw.data, 0.0, 0).to_json())
    dev = SpaceMouseDevice(EventLogSource([back]), deadzone=0.0)
    a = dev.act(OBS)
    np.testing.assert_allclose(a, [0.8, 0.0, -0.6, -1.0], atol=1e-6)


def test_spacemouse_disconnect_stops_motion():
    events = [sm(0, x=1.0), ev(1, "SpaceMouseDisconnected")]
    actions, _ = drive(SpaceMouseDevice(EventLogSource(events)), 2)
    assert actions[0, 0] == 1.0 and actions[1, 0] == 0.0


# --- gamepad ----------------------------------------------------------------------------


def test_gamepad_sticks_buttons_and_hat():
    bindings = {
        "button:0": "gripper_toggle",
        "button:5": "gripper_close",
        "button:7": "toggle",
        "hat:0:up": "z+",
        "hat:0:down": "z-",
    }
    events = [
        ev(0, "JoyAxisMotion", instance_id=0, axis=1, value=-1.0),  # left stick up: +x
        ev(0, "JoyAxisMotion", instance_id=0, axis=0, value=0.05),  # inside the dead zone
        ev(1, "JoyAxisMotion", instance_id=0, axis=1, value=0.0),
        ev(1, "JoyHatMotion", instance_id=0, hat=0, value=[0, 1]),  # d-pad up: +z held
        ev(2, "JoyHatMotion", instance_id=0, hat=0, value=[0, 0]),
        ev(2, "JoyButtonDown", instance_id=0, button=5),  # hold to close
        ev(3, "JoyButtonUp", instance_id=0, button=5),
        ev(4, "JoyButtonDown", instance_id=0, button=7),
        ev(4, "JoyButtonUp", instance_id=0, button=7),
    ]
    dev = GamepadDevice(EventLogSource(events), axes=["-1", "-0", ""], bindings=bindings)
    actions, controls = drive(dev, 5)
    np.testing.assert_allclose(actions[0], [1, 0, 0, 1])
    np.testing.assert_allclose(actions[1], [0, 0, 1, 1])
    np.testing.assert_allclose(actions[2], [0, 0, 0, -1])
    np.testing.assert_allclose(actions[3], [0, 0, 0, 1])
    assert controls[4] == [Control.TOGGLE] and controls[:4] == [[]] * 4


def test_gamepad_unplugged_stops_motion():
    events = [
        ev(0, "JoyAxisMotion", instance_id=0, axis=4, value=-0.8),
        ev(1, "JoyDeviceRemoved", instance_id=0),
    ]
    actions, _ = drive(GamepadDevice(EventLogSource(events), deadzone=0.0), 2)
    assert actions[0, 2] == pytest.approx(0.8) and actions[1, 2] == 0


def test_real_pygame_joystick_events_convert_and_drive_the_adapter():
    pygame = pytest.importorskip("pygame")
    from robot_rl.teleop.devices.pygame_events import pygame_event_to_raw

    vendor = [
        pygame.event.Event(pygame.JOYAXISMOTION, joy=0, instance_id=0, axis=1, value=-0.55),
        pygame.event.Event(pygame.JOYBUTTONDOWN, joy=0, instance_id=0, button=3),
        pygame.event.Event(pygame.JOYHATMOTION, joy=0, instance_id=0, hat=0, value=(1, 0)),
    ]
    raws = [pygame_event_to_raw(e) for e in vendor]
    assert [r.type for r in raws] == ["JoyAxisMotion", "JoyButtonDown", "JoyHatMotion"]
    assert raws[2].data["value"] == [1, 0]
    logged = [RawEvent.from_json(RawEvent(r.type, r.data, 0.0, 0).to_json()) for r in raws]
    dev = GamepadDevice(EventLogSource(logged), deadzone=0.1)
    assert dev.poll_events() == [Control.SUCCESS]  # button 3 (Y) by default
    np.testing.assert_allclose(dev.act(OBS), [0.5, 0, 0, 1], atol=1e-6)


def test_gamepad_axes_must_be_indices():
    with pytest.raises(ValueError, match="axis indices"):
        GamepadDevice(EventLogSource([]), axes=["x", "1", "2"])


# --- ticks, logs, replay ----------------------------------------------------------------


def test_one_source_poll_per_tick_whether_or_not_the_loop_polls_controls():
    events = [ev(2, "KeyDown", key="w")]
    # Loop protocol: poll_events() + act() per tick.
    a, _ = drive(KeyboardDevice(EventLogSource(events)), 3)
    # Plain Policy use: act() only.
    kb = KeyboardDevice(EventLogSource(events))
    b = np.array([kb.act(OBS) for _ in range(3)])
    # Waiting ticks: poll_events() only, then act().
    kb = KeyboardDevice(EventLogSource(events))
    kb.poll_events()
    kb.poll_events()
    c = [kb.poll_events(), kb.act(OBS)]
    assert a[2, 0] > 0 and a[1, 0] == 0
    np.testing.assert_array_equal(a, b)
    assert c[1][0] > 0


def test_event_log_round_trip_reproduces_actions_and_controls(tmp_path):
    live = [
        ev(1, "KeyDown", key="w"),
        ev(3, "KeyDown", key="space"),
        ev(3, "KeyUp", key="space"),
        ev(4, "KeyDown", key="return"),
        ev(6, "KeyUp", key="w"),
        ev(7, "KeyDown", key="a"),
    ]
    log = tmp_path / "events.jsonl"
    kb = KeyboardDevice(EventLogRecorder(LiveLikeSource(live), log))
    first = drive(kb, 9)
    kb.close()
    lines = log.read_text().splitlines()
    assert len(lines) == len(live) + 1 and json.loads(lines[-1])["type"] == END_OF_LOG
    logged = read_event_log(log)
    assert [(e.tick, e.type, e.data.get("key")) for e in logged[:-1]] == [
        (e.tick, e.type, e.data["key"]) for e in live
    ]
    replayed = KeyboardDevice(EventLogSource(log))
    second = drive(replayed, 9)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1] and [Control.TOGGLE] in second[1]
    # The recording ended after tick 8: past it, the replay has nobody left to press keys.
    assert replayed.poll_events() == [Control.QUIT]
    assert replayed.poll_events() == []


def test_event_log_source_exhausts_without_end_marker_and_time_clock():
    src = EventLogSource([ev(0, "KeyDown", key="w")])
    assert len(src.poll()) == 1 and not src.exhausted
    src.poll()
    assert src.exhausted
    timed = EventLogSource(
        [RawEvent("KeyDown", {"key": "w"}, t=0.0), RawEvent("KeyUp", {"key": "w"}, t=60.0)],
        clock="time",
    )
    assert [e.type for e in timed.poll()] == ["KeyDown"] and timed.poll() == []


def test_malformed_log_line_is_named(tmp_path):
    log = tmp_path / "bad.jsonl"
    log.write_text('{"tick": 0, "type": "KeyDown", "key": "w"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2"):
        read_event_log(log)


def test_event_log_is_written_off_the_control_thread(tmp_path):
    # poll() runs on the control loop: it must not write or flush the log itself.
    live = [ev(0, "KeyDown", key="w"), ev(1, "KeyUp", key="w"), ev(2, "KeyDown", key="a")]
    rec = EventLogRecorder(LiveLikeSource(live), tmp_path / "events.jsonl")
    writers = []
    real = rec._file

    class SpyFile:
        def __getattr__(self, name):
            if name in ("write", "flush"):
                writers.append(threading.current_thread().name)
            return getattr(real, name)

    rec._file = SpyFile()
    delivered = [rec.poll() for _ in range(3)]
    rec.close()
    assert [len(d) for d in delivered] == [1, 1, 1]
    assert writers and threading.current_thread().name not in writers
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["type"] == END_OF_LOG
