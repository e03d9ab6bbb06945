"""Sim evaluation runs: roll a policy out for a fixed set of seeded episodes in a Gymnasium
env, and collect per-episode records, a summary with confidence intervals and, for the first
few episodes, rendered frames.

Seeding: episode ``i`` (0-based) is reset with ``seed + i``. A run is therefore reproducible
from ``(env, policy, seed, n_episodes)``, and held-out seed ranges are easy to choose: an
evaluation with ``seed=10_000, n_episodes=50`` uses seeds 10000..10049, disjoint from any
training or data-collection range below 10000.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from rich.progress import Progress

from robot_rl.eval.metrics import EpisodeStats, summarize_episodes
from robot_rl.policies.base import Policy


@dataclass(frozen=True)
class EpisodeRecord:
    """What one evaluation episode produced.

    Attributes:
        index: 0-based episode index within the run.
        seed: Seed passed to ``env.reset`` (``run seed + index``).
        episode_return: Undiscounted sum of rewards.
        length: Number of env steps taken.
        success: True if ``info["is_success"]`` was true at any step of the episode.
        final_success: ``info["is_success"]`` at the episode's last step.
        terminated: True if the episode ended by termination rather than truncation.
        discounted_return: ``sum_t gamma^t r_t`` when the run was given a discount
            (``evaluate_batched(discount=...)``), else None.
        safety_interventions: steps on which each safety-filter constraint acted (the
            env's ``info["safety"]``; empty when none acted or no filter ran).
    """

    index: int
    seed: int
    episode_return: float
    length: int
    success: bool
    final_success: bool
    terminated: bool
    discounted_return: float | None = None
    safety_interventions: dict[str, int] = field(default_factory=dict)


def safety_summary(episodes: list[EpisodeRecord]) -> dict[str, dict[str, int]]:
    """Per constraint: steps it acted on over the run, and episodes it acted in."""
    steps: dict[str, int] = {}
    touched: dict[str, int] = {}
    for e in episodes:
        for name, count in e.safety_interventions.items():
            if count:
                steps[name] = steps.get(name, 0) + int(count)
                touched[name] = touched.get(name, 0) + 1
    return {"steps": dict(sorted(steps.items())), "episodes": dict(sorted(touched.items()))}


@dataclass
class EvalResult:
    """Everything one evaluation run produced.

    Attributes:
        episodes: One record per episode, in episode order.
        stats: Summary over ``episodes`` with confidence intervals (success counts
            :attr:`EpisodeRecord.success`, i.e. success at any step).
        seed: Seed of episode 0.
        frames: One ``(T + 1, H, W, 3)`` uint8 array per recorded episode (the frame after
            reset, then one per step), for episodes ``0 .. len(frames) - 1``.
        wall_time_s: Wall-clock duration of the run in seconds.
    """

    episodes: list[EpisodeRecord]
    stats: EpisodeStats
    seed: int
    frames: list[np.ndarray] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def n_episodes(self) -> int:
        """Number of episodes in the run."""
        return len(self.episodes)

    @property
    def returns(self) -> np.ndarray:
        """Per-episode returns, float64, in episode order."""
        return np.array([e.episode_return for e in self.episodes], dtype=np.float64)

    @property
    def successes(self) -> np.ndarray:
        """Per-episode success flags (success at any step), in episode order."""
        return np.array([e.success for e in self.episodes], dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-friendly dict of the run; frames are left out (see ``frames``)."""
        return {
            "n_episodes": self.n_episodes,
            "seed": self.seed,
            "seeds": [self.seed, self.seed + self.n_episodes - 1] if self.episodes else [],
            "wall_time_s": self.wall_time_s,
            "recorded_episodes": list(range(len(self.frames))),
            "stats": self.stats.to_dict(),
            "safety_interventions": safety_summary(self.episodes),
            "episodes": [asdict(e) for e in self.episodes],
        }


def evaluate(
    env_fn: Callable[[], gym.Env],
    policy: Policy,
    *,
    n_episodes: int,
    seed: int,
    record_video_episodes: int = 0,
    progress: bool = True,
    confidence: float = 0.95,
) -> EvalResult:
    """Evaluates ``policy`` on ``n_episodes`` seeded episodes of the env ``env_fn`` builds.

    Episode ``i`` is reset with ``seed=seed + i``; ``policy.reset()`` is called before each
    episode. The env must end every episode by ``terminated`` or ``truncated`` (e.g. through
    a time limit) and report ``info["is_success"]`` on every step. Randomness inside the
    policy is the policy's own: seed it for a fully reproducible run.

    Args:
        env_fn: Builds the env; called once, and the env is closed at the end. When
            ``record_video_episodes > 0`` it must build the env with
            ``render_mode="rgb_array"`` so that ``env.render()`` returns an HxWx3 uint8 frame.
        policy: The policy under evaluation.
        n_episodes: Number of episodes (>= 0).
        seed: Seed of episode 0.
        record_video_episodes: Render the first this-many episodes (capped at
            ``n_episodes``); other episodes are not rendered, so they cost no render time.
        progress: Show a progress bar on the terminal.
        confidence: Confidence level of the summary's intervals.

    Returns:
        The per-episode records, their summary and the recorded frames.

    Raises:
        ValueError: If ``n_episodes`` or ``record_video_episodes`` is negative, if frames are
            requested from an env without ``render_mode="rgb_array"``, or if the env breaks
            its contract (no ``is_success`` in ``info``, a frame that is not HxWx3 uint8).
    """
    if n_episodes < 0:
        raise ValueError(f"evaluate: n_episodes must be >= 0, got {n_episodes}")
    if record_video_episodes < 0:
        raise ValueError(
            f"evaluate: record_video_episodes must be >= 0, got {record_video_episodes}"
        )
    n_record = min(record_video_episodes, n_episodes)

    start_time = time.perf_counter()
    env = env_fn()
    try:
        if n_record > 0 and env.render_mode != "rgb_array":
            raise ValueError(
                f"evaluate: record_video_episodes={record_video_episodes} needs an env built "
                f'with render_mode="rgb_array", but env_fn built {_env_name(env)} with '
                f"render_mode={env.render_mode!r}"
            )
        records: list[EpisodeRecord] = []
        frames: list[np.ndarray] = []
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"evaluating {_env_name(env)}", total=n_episodes)
            for i in range(n_episodes):
                record, episode_frames = _run_episode(
                    env, policy, index=i, seed=seed + i, render=i < n_record
                )
                records.append(record)
                if episode_frames is not None:
                    frames.append(episode_frames)
                bar.advance(task)
    finally:
        env.close()

    stats = summarize_episodes(
        [r.success for r in records],
        [r.episode_return for r in records],
        [r.length for r in records],
        confidence=confidence,
        seed=seed,
    )
    return EvalResult(
        episodes=records,
        stats=stats,
        seed=seed,
        frames=frames,
        wall_time_s=time.perf_counter() - start_time,
    )


def _run_episode(
    env: gym.Env, policy: Policy, *, index: int, seed: int, render: bool
) -> tuple[EpisodeRecord, np.ndarray | None]:
    """Runs one episode to termination or truncation; returns its record and its frames."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    frames = [_render(env, index, step=0)] if render else []
    episode_return = 0.0
    length = 0
    success = False
    is_success = False
    terminated = truncated = False
    interventions: dict[str, int] = {}
    while not (terminated or truncated):
        action = policy.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        length += 1
        episode_return += float(reward)
        if "is_success" not in info:
            raise ValueError(
                f'evaluate: {_env_name(env)} returned no info["is_success"] at step {length} '
                f"of episode {index} (seed {seed}); envs must report it on every step"
            )
        is_success = bool(info["is_success"])
        success = success or is_success
        for name, acted in (info.get("safety") or {}).items():
            if acted:
                interventions[name] = interventions.get(name, 0) + 1
        if render:
            frames.append(_render(env, index, step=length))
    record = EpisodeRecord(
        index=index,
        seed=seed,
        episode_return=episode_return,
        length=length,
        success=success,
        final_success=is_success,
        terminated=bool(terminated),
        safety_interventions=interventions,
    )
    return record, (np.stack(frames) if render else None)


def _render(env: gym.Env, index: int, *, step: int) -> np.ndarray:
    frame = env.render()
    if not (
        isinstance(frame, np.ndarray)
        and frame.ndim == 3
        and frame.shape[2] == 3
        and frame.dtype == np.uint8
    ):
        got = (
            f"{frame.dtype} array of shape {frame.shape}"
            if isinstance(frame, np.ndarray)
            else type(frame).__name__
        )
        raise ValueError(
            f"evaluate: {_env_name(env)}.render() must return an HxWx3 uint8 array, got {got} "
            f"at step {step} of episode {index}"
        )
    # Copy: some renderers reuse one buffer for every frame.
    return frame.copy()


def _env_name(env: gym.Env) -> str:
    spec = env.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__
