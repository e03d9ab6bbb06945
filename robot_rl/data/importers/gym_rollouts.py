"""Record rollouts of any Gymnasium env into an episode store.

Each episode starts with ``env.reset(seed=seed + i)`` and runs the policy until the env
terminates or truncates it (its TimeLimit, or ``max_episode_steps`` here). Row t holds
the observation the action of step t was chosen from; the observation after the last
step is dropped. Dict observations are flattened to keys (gymnasium-robotics Fetch:
``observation``, ``achieved_goal``, ``desired_goal``); a Box observation becomes the key
``observation``. Where the env reports ``info["is_success"]`` on the last step, it becomes
the episode's success label.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from robot_rl.data.importers.base import (
    ImportResult,
    SourceEpisode,
    StoreTarget,
    action_bounds,
    flatten_obs,
    import_provenance,
    make_frames,
    write_episodes,
)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make``, registering gymnasium-robotics' envs when the id is not yet known.

    Raises:
        ValueError: Gymnasium cannot make ``env_id`` (unknown id, namespace or version,
            or a missing dependency); one line naming the id, the close registered ids
            and where ids of other packages come from.
    """
    robotics = True
    if env_id not in gym.registry:
        try:
            # Its import prints a notice about Adroit rewards to stderr, whatever env
            # is made; it would bury this command's own output.
            with contextlib.redirect_stderr(io.StringIO()):
                import gymnasium_robotics

            gym.register_envs(gymnasium_robotics)
        except ImportError:
            robotics = False
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(_unknown_env_message(env_id, e, robotics)) from None


def _unknown_env_message(env_id: str, error: Exception, robotics: bool) -> str:
    name = env_id.rpartition(":")[2]
    close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
    hints = [f"close registered ids: {', '.join(close)}"] if close else []
    if not robotics:
        hints.append(
            "gymnasium-robotics ids (FetchPush-v4, ...) need the gymnasium_robotics package"
        )
    hints.append(
        "an env of another package is registered when its module is imported: give the "
        "id as 'module:id' (robot_rl's own tasks: 'robot_rl.sim:robot_rl/Lift-v0')"
    )
    reason = " ".join(str(error).split())
    return f"gym env id {env_id!r}: {reason}; " + "; ".join(hints)


def _policy_fn(policy: Any, env: gym.Env, seed: int) -> tuple[Callable[[Any], Any], str]:
    if policy is None:
        space = env.action_space
        space.seed(seed)
        return (lambda obs: space.sample()), "random"
    if hasattr(policy, "predict"):  # a Stable-Baselines3 model
        return (lambda obs: policy.predict(obs, deterministic=True)[0]), type(policy).__name__
    if callable(policy):
        return policy, getattr(policy, "__name__", type(policy).__name__)
    raise ValueError(
        f"policy: expected None (random), a callable obs -> action or an object with "
        f"predict(), got {type(policy).__name__}"
    )


def record_gym_rollouts(
    env: str | gym.Env,
    store_path: str | os.PathLike[str],
    *,
    n_episodes: int,
    policy: Any = None,
    seed: int = 0,
    max_episode_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    policy_id: str | None = None,
    control_hz: float | None = None,
    robot: str | None = None,
    task: str | None = None,
    append: bool = False,
    overwrite: bool = False,
) -> ImportResult:
    """Run ``n_episodes`` episodes of a Gymnasium env and store them.

    Episodes are checked and committed one at a time: an episode with bad values (say
    a NaN observation) raises and adds nothing, and the episodes recorded before it in
    this call stay committed.

    Args:
        env: an env id (made with ``gym.make(env, **env_kwargs)`` and closed after) or an
            env instance (left open).
        store_path: the target store (created unless ``append``).
        n_episodes: episodes to record.
        policy: None for uniform random actions (seeded by ``seed``), a callable taking
            the env's observation and returning an action, or an object with an SB3-style
            ``predict(obs, deterministic=True)``.
        seed: episode i is reset with ``seed + i``.
        max_episode_steps: cut episodes after this many steps (last row truncated);
            default the env's own limit, one of which is required.
        env_kwargs: keyword arguments of ``gym.make`` when ``env`` is an id.
        policy_id: name recorded as the provenance ``policy_id``; default
            ``"gym:<policy name>"`` (``"gym:random"`` for random actions).
        control_hz: control rate in Hz; default ``1 / env.unwrapped.dt``, else the env's
            ``render_fps``.
        robot: robot name for a new store; default the env id.
        task: task name for a new store; default the env id.
        append: add to an existing store at ``store_path`` (schema must match).
        overwrite: replace an existing store at ``store_path``.

    Returns:
        What was recorded. Provenance of each episode: ``source="import"``,
        ``robot_id="gym:<env id>"``, ``policy_id`` as above, success from
        ``info["is_success"]`` where the env reports it, start time of the episode.

    Raises:
        ValueError: an action space that is not a Box, no episode limit, no control
            rate, or bad values from the env or policy (the message names the env,
            episode and key).
    """
    if not isinstance(n_episodes, int) or n_episodes <= 0:
        raise ValueError(f"n_episodes: expected a positive int, got {n_episodes!r}")
    own_env = isinstance(env, str)
    env = make_env(env, **(env_kwargs or {})) if own_env else env
    try:
        return _record(
            env,
            store_path,
            n_episodes=n_episodes,
            policy=policy,
            seed=seed,
            max_episode_steps=max_episode_steps,
            policy_id=policy_id,
            control_hz=control_hz,
            robot=robot,
            task=task,
            append=append,
            overwrite=overwrite,
        )
    finally:
        if own_env:
            env.close()


def _record(
    env: gym.Env,
    store_path,
    *,
    n_episodes,
    policy,
    seed,
    max_episode_steps,
    policy_id,
    control_hz,
    robot,
    task,
    append,
    overwrite,
) -> ImportResult:
    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            f"{env_id}: action space {space} is not a Box; the store holds continuous "
            "action vectors"
        )
    action_dim = int(np.prod(space.shape, dtype=np.int64))
    limit = max_episode_steps or (env.spec.max_episode_steps if env.spec else None)
    if not limit:
        raise ValueError(
            f"{env_id}: the env has no episode limit; pass max_episode_steps "
            "(CLI: --max-episode-steps)"
        )
    if control_hz is None:
        dt = getattr(env.unwrapped, "dt", None)
        control_hz = 1.0 / float(dt) if dt else env.metadata.get("render_fps")
        if not control_hz:
            raise ValueError(f"{env_id}: cannot tell the env's control rate; pass control_hz")
    act, policy_name = _policy_fn(policy, env, seed)
    policy_id = policy_id or f"gym:{policy_name}"
    target = StoreTarget(
        path=Path(store_path),
        control_hz=float(control_hz),
        robot=robot or env_id,
        task=task or env_id,
        append=append,
        overwrite=overwrite,
    )

    def episodes() -> Iterator[SourceEpisode]:
        for i in range(n_episodes):
            where = f"{env_id}: episode {i} (seed {seed + i})"
            start = time.time()
            obs, info = env.reset(seed=seed + i)
            rows: list[dict[str, np.ndarray]] = []
            actions, rewards, terminated, truncated = [], [], [], []
            for t in range(int(limit)):
                action = np.asarray(act(obs))
                if action.size != action_dim:
                    raise ValueError(
                        f"{where}: policy returned an action of shape {action.shape} at "
                        f"step {t}; expected {action_dim} values"
                    )
                rows.append(flatten_obs(obs))
                next_obs, reward, term, trunc, info = env.step(action)
                actions.append(action.reshape(-1))
                rewards.append(float(reward))
                terminated.append(bool(term))
                truncated.append(bool(trunc) or (t + 1 == limit and not term))
                obs = next_obs
                if term or trunc:
                    break
            try:
                obs_arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            except (KeyError, ValueError) as e:
                raise ValueError(f"{where}: observations change keys or shapes ({e})") from None
            frames = make_frames(
                obs_arrays,
                np.stack(actions),
                np.asarray(rewards),
                np.asarray(terminated),
                np.asarray(truncated),
                where,
            )
            success = info.get("is_success")
            prov = import_provenance(
                f"gym:{env_id}",
                policy_id,
                success=None if success is None else bool(success),
                start_time_unix_s=start,
            )
            yield where, frames, prov

    return write_episodes(
        target,
        episodes,
        action_dim=action_dim,
        bounds=action_bounds(space.low, space.high),
        check_first=False,
    )
