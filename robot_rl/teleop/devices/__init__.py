"""Teleop devices: keyboard, SpaceMouse, gamepad, scripted expert (any policy), replay.

Each is a :class:`~robot_rl.policies.base.Policy` plus ``poll_events()``; the input
devices are thin adapters from raw vendor events (live, or a recorded log) to commands.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from robot_rl.teleop.devices.base import COMMANDS, Device, DeviceUnavailableError, InputDevice
from robot_rl.teleop.devices.gamepad import DEFAULT_GAMEPAD_AXES, GamepadDevice
from robot_rl.teleop.devices.keyboard import KeyboardDevice
from robot_rl.teleop.devices.scripted import PolicyDevice, ReplayDevice, scripted_device
from robot_rl.teleop.devices.spacemouse import DEFAULT_SPACEMOUSE_AXES, SpaceMouseDevice
from robot_rl.teleop.events import EventLogRecorder, EventLogSource, EventSource

if TYPE_CHECKING:
    from robot_rl.config.teleop import TeleopConfig

__all__ = [
    "COMMANDS",
    "Device",
    "DeviceUnavailableError",
    "GamepadDevice",
    "InputDevice",
    "KeyboardDevice",
    "PolicyDevice",
    "ReplayDevice",
    "SpaceMouseDevice",
    "make_device",
    "scripted_device",
]


def make_device(
    cfg: TeleopConfig,
    *,
    task: str,
    max_ee_step_m: float,
    noise_seed: int | None = None,
    events_out: str | os.PathLike[str] | None = None,
) -> Device:
    """The device a :class:`~robot_rl.config.teleop.TeleopConfig` describes.

    Args:
        cfg: the device and its settings.
        task: task name (which scripted expert).
        max_ee_step_m: the env's largest end-effector step (the expert's action scale).
        noise_seed: seed of the scripted expert's action noise.
        events_out: write the input device's raw events to this JSON-lines log.

    Raises:
        DeviceUnavailableError: the input device cannot be opened (no display for the
            keyboard window, no joystick, no SpaceMouse); the message says why and what
            to do.
        RuntimeError: another device could not be made (a replay store that cannot be
            read).
        ValueError: a malformed setting (axes, bindings).
    """
    if cfg.device == "scripted":
        return scripted_device(
            task, max_ee_step_m, action_noise_std=cfg.action_noise_std, seed=noise_seed
        )
    if cfg.device == "replay":
        return ReplayDevice(cfg.replay_store, cfg.replay_episode)

    source: EventSource
    if cfg.events_in:
        source = EventLogSource(cfg.events_in, clock=cfg.events_clock)
    elif cfg.device == "keyboard":
        from robot_rl.teleop.devices.pygame_events import PygameKeyboardSource

        source = PygameKeyboardSource()
    elif cfg.device == "gamepad":
        from robot_rl.teleop.devices.pygame_events import PygameJoystickSource

        source = PygameJoystickSource(cfg.joystick_index)
    elif cfg.device == "spacemouse":
        from robot_rl.teleop.devices.spacemouse import SpaceMouseSource

        source = SpaceMouseSource(cfg.spacemouse_name or None, cfg.axis_convention)
    else:
        raise ValueError(f"teleop.device={cfg.device!r}: unknown device")
    if events_out:
        source = EventLogRecorder(source, events_out)
    bindings = dict(cfg.bindings) or None
    try:
        if cfg.device == "keyboard":
            return KeyboardDevice(source, bindings, speed=cfg.speed)
        axes = list(cfg.axes)
        if cfg.device == "gamepad":
            return GamepadDevice(
                source,
                axes or DEFAULT_GAMEPAD_AXES,
                bindings,
                deadzone=cfg.deadzone,
                speed=cfg.speed,
            )
        return SpaceMouseDevice(
            source,
            axes or DEFAULT_SPACEMOUSE_AXES,
            bindings,
            deadzone=cfg.deadzone,
            speed=cfg.speed,
        )
    except BaseException:
        source.close()
        raise
