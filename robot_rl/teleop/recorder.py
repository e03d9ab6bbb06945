"""The recording loop: runs a :class:`~robot_rl.policies.base.Policy` (a teleop device, the
scripted expert, a learned policy) in an env and appends each episode to an episode store.

Row t of an episode holds the observation the actor saw, the action it sent, and the
reward / terminated / truncated that followed. The final observation is not a row (the
store's sampler gives terminal rows next_obs = obs, masked by ``terminated``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.policies.base import Policy


@dataclass(frozen=True)
class RecordSummary:
    """What a recording session produced."""

    n_episodes: int
    n_steps: int
    n_success: int
    wall_time_s: float

    @property
    def success_rate(self) -> float:
        return self.n_success / max(self.n_episodes, 1)


def record_episode(
    env: gym.Env,
    policy: Policy,
    *,
    seed: int | None,
    action_noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """Runs one episode and returns its frames (store layout) and whether it succeeded.

    Args:
        env: a Gymnasium env with dict observations and ``info["is_success"]``.
        policy: the actor.
        seed: reset seed of the episode.
        action_noise_std: std of Gaussian noise added to the policy's normalized actions
            (then clipped to the action bounds); the noisy action is what is recorded.
        rng: noise generator (required when ``action_noise_std > 0``).
    """
    obs, _ = env.reset(seed=seed)
    policy.reset()
    low, high = env.action_space.low, env.action_space.high
    rows: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    rows.update(action=[], reward=[], terminated=[], truncated=[])
    success = False
    done = False
    while not done:
        action = np.asarray(policy.act(obs), dtype=np.float32)
        if action_noise_std > 0:
            if rng is None:
                raise ValueError("record_episode: action_noise_std > 0 needs an rng")
            action = action + action_noise_std * rng.standard_normal(action.shape)
        action = np.clip(action, low, high).astype(np.float32)
        next_obs, reward, terminated, truncated, info = env.step(action)
        for k, v in obs.items():
            rows[k].append(v)
        rows["action"].append(action)
        rows["reward"].append(np.float32(reward))
        rows["terminated"].append(bool(terminated))
        rows["truncated"].append(bool(truncated))
        success = success or bool(info["is_success"])
        done = terminated or truncated
        obs = next_obs
    frames = {k: np.asarray(v) for k, v in rows.items()}
    frames["reward"] = frames["reward"].astype(np.float32)
    return frames, success


def record_episodes(
    env: gym.Env,
    policy: Policy,
    store: EpisodeStore,
    *,
    n_episodes: int,
    seed: int,
    provenance: EpisodeProvenance,
    action_noise_std: float = 0.0,
    on_episode: Callable[[int, bool], None] | None = None,
) -> RecordSummary:
    """Records ``n_episodes`` episodes into ``store``; episode i resets with ``seed + i``.

    Each episode is committed to the store as soon as it ends, so an interrupted session
    keeps every finished episode. ``provenance`` is the template for every episode (its
    success label and start time are filled in per episode).
    """
    rng = np.random.default_rng(seed)
    steps = successes = 0
    start = time.perf_counter()
    for i in range(n_episodes):
        started = time.time()
        frames, success = record_episode(
            env, policy, seed=seed + i, action_noise_std=action_noise_std, rng=rng
        )
        store.append_episode(
            frames,
            replace(
                provenance,
                success=success,
                start_time_unix_s=started,
                episode_id=uuid.uuid4().hex,
            ),
        )
        steps += len(frames["action"])
        successes += success
        if on_episode is not None:
            on_episode(i, success)
    return RecordSummary(n_episodes, steps, successes, time.perf_counter() - start)
