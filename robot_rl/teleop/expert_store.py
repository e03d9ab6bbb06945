"""Recording the scripted expert of a task into a new episode store.

One way to make a store for the simulated arm's recordings (:func:`new_sim_store`: one
float32 observation key per env observation, in :data:`~robot_rl.sim.env.OBS_SPEC`'s
order, with its unit) and one way to fill it with the task's scripted expert
(:func:`record_scripted_expert`), used by the pipeline's demonstrations, the benchmark
datasets (:mod:`robot_rl.teleop.make_dataset`) and ``robot-rl-record``'s new stores.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.paths import code_version
from robot_rl.sim.env import OBS_SPEC, safety_filter_version_of
from robot_rl.sim.experts import make_expert
from robot_rl.teleop.recorder import RecordSummary, record_episodes

#: ``(episode index, the expert) -> (the policy to run, its provenance policy_id)``.
EpisodePolicy = Callable[[int, Any], tuple[Any, str]]


def sim_obs_spec(env: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """The store's ``obs_spec`` for ``env``'s observations: the keys of ``OBS_SPEC`` first,
    in its order, then any other key of the env, each with the env's shape and dtype."""
    spaces = env.observation_space.spaces
    order = [k for k in OBS_SPEC if k in spaces] + [k for k in spaces if k not in OBS_SPEC]
    return {k: (tuple(spaces[k].shape), str(spaces[k].dtype)) for k in order}


def new_sim_store(
    path: str | os.PathLike[str],
    env: Any,
    *,
    robot: str,
    task: str,
    control_hz: float,
    overwrite: bool = False,
    chunk_steps: int | None = None,
    timestamps: bool | None = None,
) -> EpisodeStore:
    """Create an episode store for recordings of the simulated ``env`` (see
    :func:`sim_obs_spec`), with the units of :data:`~robot_rl.sim.env.OBS_SPEC`; the other
    arguments are :meth:`EpisodeStore.create`'s."""
    obs_spec = sim_obs_spec(env)
    return EpisodeStore.create(
        path,
        obs_spec=obs_spec,
        action_dim=int(env.action_space.shape[0]),
        control_hz=control_hz,
        robot=robot,
        task=task,
        units={k: unit for k, (_, unit) in OBS_SPEC.items() if k in obs_spec},
        chunk_steps=chunk_steps,
        timestamps=timestamps,
        overwrite=overwrite,
    )


def record_scripted_expert(
    env: Any,
    out: str | os.PathLike[str],
    *,
    robot: str,
    task: str,
    control_hz: float,
    max_ee_step_m: float,
    n_episodes: int,
    seed: int,
    operator: str,
    config_hash: str,
    action_noise_std: float = 0.0,
    overwrite: bool = False,
    episode_policy: EpisodePolicy | None = None,
    on_episode: Callable[[int, RecordSummary], None] | None = None,
) -> RecordSummary:
    """Record the scripted expert of ``task`` in ``env`` into a new store at ``out``.

    Episode ``i`` resets with ``seed + i``. Every episode's provenance says
    ``source="scripted"``, the operator, ``robot_id="sim:<robot>"``, the config hash and
    the code version. The store is closed on return; ``env`` stays open (its caller's).

    Args:
        env: the simulated env (:func:`robot_rl.sim.env.make_env`).
        out: the store directory to create (its parent must exist).
        robot, task, control_hz: what the store records (the env's).
        max_ee_step_m: the task's ``max_ee_step_m`` (the expert's step size).
        n_episodes: episodes to record.
        seed: episode ``i`` resets with ``seed + i``; action noise is seeded with it.
        operator: ``provenance.operator``.
        config_hash: ``provenance.config_hash``: what made the data.
        action_noise_std: Gaussian noise on the expert's normalized actions.
        overwrite: replace an existing episode store at ``out``.
        episode_policy: None to record the expert itself, all episodes in one session
            (``policy_id="scripted-expert:<task>"``); else called per episode with its
            index and the expert, returning the policy to run and its ``policy_id``
            (each episode is then recorded on its own, as benchmark datasets do).
        on_episode: with ``episode_policy``, called after each episode with its index
            and its one-episode summary.

    Returns:
        The episodes, steps and successes recorded, and the wall time.
    """
    store = new_sim_store(
        out, env, robot=robot, task=task, control_hz=control_hz, overwrite=overwrite
    )
    template = EpisodeProvenance(
        source="scripted",
        operator=operator,
        robot_id=f"sim:{robot}",
        policy_id=f"scripted-expert:{task}",
        config_hash=config_hash,
        code_version=code_version(),
        safety_filter_version=safety_filter_version_of(env),
    )
    expert = make_expert(task, max_ee_step_m)
    try:
        if episode_policy is None:
            return record_episodes(
                env,
                expert,
                store,
                n_episodes=n_episodes,
                seed=seed,
                provenance=template,
                action_noise_std=action_noise_std,
            )
        start = time.perf_counter()
        total = RecordSummary(n_episodes=0, n_steps=0, n_success=0, wall_time_s=0.0)
        for i in range(n_episodes):
            policy, policy_id = episode_policy(i, expert)
            # One episode per call: each gets its own provenance (and its policy's noise).
            result = record_episodes(
                env,
                policy,
                store,
                n_episodes=1,
                seed=seed + i,
                provenance=dataclasses.replace(template, policy_id=policy_id),
                action_noise_std=action_noise_std,
            )
            total.n_episodes += result.n_episodes
            total.n_steps += result.n_steps
            total.n_success += result.n_success
            total.episodes.extend(result.episodes)
            if on_episode is not None:
                on_episode(i, result)
        total.wall_time_s = time.perf_counter() - start
        return total
    finally:
        store.close()
