"""The device that drives robot-rl-record (the ``teleop`` group, one YAML per device in
``conf/teleop/``), and which of its settings each device reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from robot_rl.config.validation import ConfigError, _check, _default

TELEOP_DEVICES = ("scripted", "keyboard", "spacemouse", "gamepad", "replay")


@dataclass
class TeleopConfig:
    """The device that drives robot-rl-record; one YAML per device in ``conf/teleop/``."""

    #: scripted (the task's expert), keyboard, spacemouse, gamepad, or replay (of a
    #: stored episode's actions).
    device: str = "scripted"
    #: Hold each control tick to the control period (a person drives); false runs as fast
    #: as possible and waits for the disk when its queue is full (scripted, replay).
    realtime: bool = False
    #: After an episode ends, wait for the operator to keep, discard, re-record or label
    #: it (only for a person's devices).
    review: bool = False
    #: Fraction of the largest end-effector step (task.max_ee_step_m) commanded at full
    #: deflection or while a key is held, in (0, 1].
    speed: float = 1.0
    #: Stick or cap deflection read as zero, as a fraction of full deflection.
    deadzone: float = 0.05
    #: Source axis for dx, dy, dz (base frame): a SpaceMouse state field (x, y, z, roll,
    #: pitch, yaw) or a gamepad axis index; a leading "-" inverts, "" leaves it unmapped.
    #: Empty: the device's default.
    axes: list[str] = field(default_factory=list)
    #: Raw input -> command: pygame key names ("w", "return"), "button:<i>",
    #: "hat:<i>:up|down|left|right". Commands: x+ x- y+ y- z+ z- gripper_toggle
    #: gripper_close start stop toggle discard rerecord success failure quit.
    #: Empty: the device's default.
    bindings: dict[str, str] = field(default_factory=dict)
    #: SpaceMouse: pyspacemouse axis convention (ros, hid_z_up, hid, unity, legacy).
    axis_convention: str = "ros"
    #: SpaceMouse: device name as pyspacemouse lists it ("" = the first one found).
    spacemouse_name: str = ""
    #: Gamepad: index of the joystick among those connected.
    joystick_index: int = 0
    #: Scripted: std of Gaussian noise on the expert's normalized actions.
    action_noise_std: float = 0.0
    #: Replay: the episode store to replay from.
    replay_store: str = ""
    #: Replay: episode index in replay_store (negative counts from the end).
    replay_episode: int = 0
    #: Drive the device from a recorded raw-event log (JSON lines) instead of the
    #: hardware (keyboard, spacemouse, gamepad).
    events_in: str = ""
    #: Clock of the events_in replay: tick (exact, timing-independent) or time.
    events_clock: str = "tick"
    #: Write the device's raw events to this JSON-lines log ("" = no log); a relative
    #: path is inside the run directory.
    events_out: str = ""

    def __post_init__(self) -> None:
        _check(
            self.device in TELEOP_DEVICES,
            "teleop.device",
            self.device,
            f"one of {TELEOP_DEVICES}",
        )
        _check(0 < self.speed <= 1, "teleop.speed", self.speed, "in (0, 1]")
        _check(0 <= self.deadzone < 1, "teleop.deadzone", self.deadzone, "in [0, 1)")
        _check(len(self.axes) in (0, 3), "teleop.axes", self.axes, "[] or 3 entries (dx, dy, dz)")
        _check(
            0 <= self.action_noise_std <= 2,
            "teleop.action_noise_std",
            self.action_noise_std,
            "in [0, 2]",
        )
        _check(
            self.events_clock in ("tick", "time"),
            "teleop.events_clock",
            self.events_clock,
            "'tick' or 'time'",
        )
        _check(
            self.device != "replay" or bool(self.replay_store),
            "teleop.replay_store",
            self.replay_store,
            "the path of a store to replay (device=replay)",
        )
        _check(
            not self.review or self.device in ("keyboard", "spacemouse", "gamepad"),
            "teleop.review",
            self.review,
            "false for a device without an operator (scripted, replay)",
        )
        for f in dataclasses.fields(self):
            readers = [d for d, keys in _TELEOP_FIELDS.items() if f.name in keys]
            if not readers or self.device in readers:
                continue
            value = getattr(self, f.name)
            if value != _default(f):
                raise ConfigError(
                    f"teleop.{f.name}={value!r} is not read by teleop={self.device}: only "
                    f"by teleop={'|'.join(readers)}; leave it out"
                )
        _check(
            self.events_clock == "tick" or bool(self.events_in),
            "teleop.events_clock",
            self.events_clock,
            "'tick' unless teleop.events_in replays an event log",
        )


_EVENT_LOG_FIELDS = ("events_in", "events_clock", "events_out")
#: TeleopConfig fields that only some devices read (the others -- device, realtime,
#: review -- every device reads): a value set for another device would be ignored.
_TELEOP_FIELDS = {
    "scripted": ("action_noise_std",),
    "replay": ("replay_store", "replay_episode"),
    "keyboard": ("speed", "bindings", *_EVENT_LOG_FIELDS),
    "gamepad": ("speed", "deadzone", "axes", "bindings", "joystick_index", *_EVENT_LOG_FIELDS),
    "spacemouse": (
        "speed",
        "deadzone",
        "axes",
        "bindings",
        "axis_convention",
        "spacemouse_name",
        *_EVENT_LOG_FIELDS,
    ),
}
