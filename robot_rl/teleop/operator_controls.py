"""What an operator's controls do to a recording session (see the recorder's module
docstring, "Controls"): START, STOP, TOGGLE, DISCARD, RERECORD, SUCCESS / FAILURE and
QUIT, in each state of the session (waiting, recording, review).

:class:`OperatorControls` is the part of :class:`~robot_rl.teleop.recorder.Recorder` that
does it; the recorder polls the device for the controls and runs the loop, and
:class:`~robot_rl.teleop.episode_end.EpisodeEnding` ends the episodes.
"""

from __future__ import annotations

from robot_rl.teleop.episode_end import EpisodeEnding
from robot_rl.teleop.events import Control
from robot_rl.teleop.session import RECORDING, REVIEW, WAITING


class OperatorControls(EpisodeEnding):
    """Operator controls (part of :class:`~robot_rl.teleop.recorder.Recorder`, which sets
    this state up, polls the device and runs the loop)."""

    _quit: bool

    def _start(self) -> None:
        raise NotImplementedError

    def _on_control(self, c: Control) -> None:
        state = self._state
        if c is Control.TOGGLE:
            c = Control.STOP if state == RECORDING else Control.START
        if c is Control.START:
            if state == WAITING:
                self._start()
            elif state == REVIEW:
                self._keep()
        elif c is Control.STOP:
            if state == RECORDING:
                self._end(truncate=True)
            elif state == REVIEW:
                self._keep()
        elif c is Control.DISCARD:
            if state in (RECORDING, REVIEW):
                self._drop("discarded", next_seed=True)
            elif state == WAITING:
                self._seed += 1
                self._say(f"skipped seed {self._seed - 1}; new scene, seed {self._seed}")
                self._reset_env()
        elif c is Control.RERECORD:
            if state in (RECORDING, REVIEW):
                self._drop("rerecorded", next_seed=False)
            else:
                self._say("re-record: no episode in progress (committed ones stay)")
        elif c in (Control.SUCCESS, Control.FAILURE):
            if state in (RECORDING, REVIEW) and self._ep is not None:
                self._ep.label = c is Control.SUCCESS
                self._say(f"episode marked {'success' if self._ep.label else 'failure'}")
            else:
                self._say(f"{c.value}: no episode to label")
        elif c is Control.QUIT:
            if state == RECORDING:
                self._drop("quit", next_seed=False, reset=False)
            elif state == REVIEW:
                self._keep(reset=False)
            self._quit = True
