"""A toy Gymnasium env and scripted policies for the evaluation tests (no MuJoCo needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

GOAL = 7
N_CELLS = 11
CELL_PX = 4
FRAME_HW = (8, N_CELLS * CELL_PX)


class PointReach1D(gym.Env):
    """A point on cells 0..10 must reach cell 7.

    reset(seed) puts it on a cell in 0..4 drawn from the env's seeded generator. An action
    > 0 moves one cell right, < 0 one cell left. Reward: +1 on the goal, else -0.1.
    info["is_success"] is true on the goal. The episode terminates on the goal when
    ``terminate_on_success`` and is truncated after ``max_steps`` steps.
    render() draws the goal cell green and the point white on a black strip.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        terminate_on_success: bool = True,
        max_steps: int = 12,
        report_success: bool = True,
    ) -> None:
        self.render_mode = render_mode
        self.terminate_on_success = terminate_on_success
        self.max_steps = max_steps
        self.report_success = report_success
        self.observation_space = gym.spaces.Dict(
            {
                "position": gym.spaces.Box(0, N_CELLS - 1, (1,), np.float32),
                "goal": gym.spaces.Box(0, N_CELLS - 1, (1,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.position = 0
        self.t = 0
        self.render_calls = 0
        self.closed = False

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "position": np.array([self.position], np.float32),
            "goal": np.array([GOAL], np.float32),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = int(self.np_random.integers(0, 5))
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray):
        self.position = int(np.clip(self.position + np.sign(float(action[0])), 0, N_CELLS - 1))
        self.t += 1
        at_goal = self.position == GOAL
        terminated = at_goal and self.terminate_on_success
        truncated = self.t >= self.max_steps and not terminated
        info: dict[str, Any] = {"is_success": at_goal} if self.report_success else {}
        return self._obs(), (1.0 if at_goal else -0.1), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        self.render_calls += 1
        frame = np.zeros((*FRAME_HW, 3), np.uint8)
        frame[:, GOAL * CELL_PX : (GOAL + 1) * CELL_PX, 1] = 200
        frame[2:6, self.position * CELL_PX : (self.position + 1) * CELL_PX] = 255
        return frame

    def close(self) -> None:
        self.closed = True


class ConstantPolicy:
    """Always pushes in one direction; remembers the first observation of each episode."""

    def __init__(self, direction: float) -> None:
        self.direction = direction
        self.n_resets = 0
        self.first_obs: list[dict[str, np.ndarray]] = []
        self._fresh = False

    def reset(self) -> None:
        self.n_resets += 1
        self._fresh = True

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self._fresh:
            self.first_obs.append({k: v.copy() for k, v in obs.items()})
            self._fresh = False
        return np.array([self.direction], np.float32)


class EnvFactory:
    """env_fn for evaluate(); keeps every env it built so tests can inspect them."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.built: list[PointReach1D] = []

    def __call__(self) -> PointReach1D:
        env = PointReach1D(**self.kwargs)
        self.built.append(env)
        return env


@pytest.fixture
def env_factory() -> Callable[..., EnvFactory]:
    return EnvFactory


@pytest.fixture
def constant_policy() -> Callable[[float], ConstantPolicy]:
    return ConstantPolicy
