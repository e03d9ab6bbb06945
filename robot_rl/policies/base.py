"""The one interface every acting thing implements: scripted experts, learned policies,
teleop devices and replays. The evaluation runner and the recorder only see this."""

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """Maps one observation (a dict of arrays, as the env returns it) to one action."""

    def reset(self) -> None:
        """Called at the start of every episode (clears any internal phase/state)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Returns an action in the env's action space (normalized to [-1, 1])."""
