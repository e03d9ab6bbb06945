"""robot_rl.teleop: input devices and the recording loop.

Devices (:mod:`robot_rl.teleop.devices`) turn raw input events into actions and operator
controls; :class:`~robot_rl.teleop.recorder.Recorder` runs one in an env at the control
rate and streams each episode to an episode store through a writer thread.
"""

from robot_rl.teleop.events import Control, EventLogRecorder, EventLogSource, RawEvent
from robot_rl.teleop.recorder import (
    EpisodeRecord,
    Recorder,
    RecorderError,
    RecordSummary,
    record_episodes,
)

__all__ = [
    "Control",
    "EpisodeRecord",
    "EventLogRecorder",
    "EventLogSource",
    "RawEvent",
    "RecordSummary",
    "Recorder",
    "RecorderError",
    "record_episodes",
]
