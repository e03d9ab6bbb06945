"""Evaluation runs on the batched simulator: the same episodes as
:func:`robot_rl.eval.runner.evaluate` (episode ``i`` reset with ``seed + i``), played by many
worlds at once.

On the ``cpu`` backend the batched simulator reproduces the single env bit for bit, so a
deterministic policy gets exactly the records the sequential runner gives, in a fraction of
the time (one batched forward pass per control step instead of one per world). The first
episodes can be filmed: their worlds are rendered after every step, before any auto-reset,
so each film ends on the state its episode ended in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from tqdm.auto import tqdm

from robot_rl.config.randomization import RandomizationConfig
from robot_rl.config.sim import RobotConfig, SimConfig, TaskConfig
from robot_rl.eval.metrics import summarize_episodes
from robot_rl.eval.runner import EpisodeRecord, EvalResult
from robot_rl.sim.batched import BatchedSim

#: A batch policy: observations (dict of (N, ...) tensors) -> actions (N, action_dim).
BatchPolicy = Callable[[Mapping[str, torch.Tensor]], Any]


@runtime_checkable
class FlatBatchPolicy(Protocol):
    """What a loaded policy artifact offers: its observation keys and a batched forward."""

    obs_keys: tuple[str, ...]

    def act_batch(self, obs_flat: torch.Tensor) -> Any: ...


class PerWorldPolicies:
    """Single-env policies, one per world, as a batch policy: ``factory(episode_seed)``
    builds each episode's policy (anything with ``reset()`` and ``act(obs) -> action`` on
    one world's numpy observations, such as a scripted expert, perhaps wrapped with
    seeded noise), so the same episode seed always gets the same policy randomness.

    :func:`evaluate_batched` calls :meth:`reset_episodes` with the worlds' episode seeds
    at the start of each round of episodes.
    """

    def __init__(self, factory: Callable[[int], Any]) -> None:
        self.factory = factory
        self.policies: list[Any] = []

    def reset_episodes(self, episode_seeds: list[int]) -> None:
        self.policies = [self.factory(int(s)) for s in episode_seeds]
        for p in self.policies:
            p.reset()

    def __call__(self, obs: Mapping[str, torch.Tensor]) -> np.ndarray:
        if not self.policies:
            raise RuntimeError("PerWorldPolicies: reset_episodes was never called")
        host = {k: v.cpu().numpy() for k, v in obs.items()}
        return np.stack(
            [
                np.asarray(p.act({k: v[w] for k, v in host.items()}), np.float32)
                for w, p in enumerate(self.policies)
            ]
        )


def as_batch_policy(policy: FlatBatchPolicy | BatchPolicy) -> BatchPolicy:
    """A loaded artifact (flattens the observation keys it was trained on, in its order)
    or a batch policy, as a batch policy."""
    if isinstance(policy, FlatBatchPolicy):
        keys = policy.obs_keys

        def act(obs: Mapping[str, torch.Tensor]) -> Any:
            missing = [k for k in keys if k not in obs]
            if missing:
                raise ValueError(
                    f"the simulator gives no observation keys {missing} that the policy "
                    f"expects (it gives {sorted(obs)})"
                )
            flat = torch.cat([obs[k].reshape(obs[k].shape[0], -1) for k in keys], dim=1)
            return policy.act_batch(flat)

        return act
    if callable(policy):
        return policy
    raise TypeError(f"expected a loaded policy or a batch policy, got {type(policy).__name__}")


def evaluate_batched(
    policy: FlatBatchPolicy | BatchPolicy,
    task_config: TaskConfig,
    *,
    n_episodes: int,
    seed: int,
    robot_config: RobotConfig | None = None,
    sim_config: SimConfig | None = None,
    randomization: RandomizationConfig | None = None,
    max_worlds: int = 128,
    n_threads: int | None = None,
    confidence: float = 0.95,
    discount: float | None = None,
    record_video_episodes: int = 0,
    camera: str = "front",
    width: int = 320,
    height: int = 240,
    progress: bool = False,
) -> EvalResult:
    """Evaluates ``policy`` on episodes ``seed .. seed + n_episodes - 1``.

    Args:
        policy: a loaded policy artifact, or a batch policy (dict of tensors -> actions).
        task_config, robot_config, sim_config, randomization: the simulated cell.
        n_episodes: number of episodes (>= 1).
        seed: seed of episode 0 (held-out seeds: keep them away from the data's).
        max_worlds: worlds simulated at once; more episodes run in rounds.
        n_threads: physics threads (default: all cores).
        confidence: confidence level of the summary's intervals.
        discount: when set (gamma in (0, 1]), each record also gets its
            ``discounted_return`` (what offline policy evaluation estimates).
        record_video_episodes: film episodes ``0 .. k - 1`` (at most ``max_worlds``: they
            run in the first round), from ``camera`` at ``width`` x ``height``; the result's
            ``frames`` holds one ``(T + 1, H, W, 3)`` array per film, as the sequential
            runner gives.
        progress: show a progress bar over episodes.

    A policy with a ``reset_episodes(episode_seeds)`` method (such as
    :class:`PerWorldPolicies`) is told each round's episode seeds before it acts.
    """
    if n_episodes < 1:
        raise ValueError(f"evaluate_batched: n_episodes must be >= 1, got {n_episodes}")
    if seed < 0 or seed + n_episodes > 2**32:
        raise ValueError(f"evaluate_batched: seeds {seed}..{seed + n_episodes - 1} out of range")
    if discount is not None and not 0 < discount <= 1:
        raise ValueError(f"evaluate_batched: discount must be in (0, 1], got {discount}")
    if not 0 <= record_video_episodes <= min(n_episodes, max_worlds):
        raise ValueError(
            f"evaluate_batched: record_video_episodes must be in [0, "
            f"{min(n_episodes, max_worlds)}] (episodes of the first round), got "
            f"{record_video_episodes}"
        )
    act = as_batch_policy(policy)
    reset_episodes = getattr(policy, "reset_episodes", None)
    start = time.perf_counter()
    n_worlds = min(n_episodes, max_worlds)
    sim = BatchedSim(
        n_worlds,
        task_config,
        robot_config,
        sim_config,
        seed=seed,
        n_threads=n_threads,
        randomization=randomization,
    )
    records: list[EpisodeRecord] = []
    frames: list[np.ndarray] = []
    view = {"camera": camera, "width": width, "height": height}
    bar = tqdm(total=n_episodes, desc="evaluate", unit="ep", disable=not progress, leave=False)
    try:
        for first in range(0, n_episodes, n_worlds):
            count = min(n_worlds, n_episodes - first)
            # Worlds past the last episode replay seeds of this round; their results are
            # dropped.
            seeds = [seed + first + (w % count) for w in range(n_worlds)]
            if reset_episodes is not None:
                reset_episodes(seeds)
            filmed = list(range(record_video_episodes)) if first == 0 else []
            sim.film(filmed, **view)
            round_records, films = _play_round(
                sim, act, seeds, first, count, discount, filmed, view, bar
            )
            records += round_records
            frames += films
    finally:
        bar.close()
        sim.close()
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
        wall_time_s=time.perf_counter() - start,
        frames=frames,
    )


def _play_round(
    sim: BatchedSim,
    act: BatchPolicy,
    seeds: list[int],
    first: int,
    count: int,
    discount: float | None,
    filmed: list[int],
    view: dict[str, Any],
    bar: tqdm,
) -> tuple[list[EpisodeRecord], list[np.ndarray]]:
    """Plays one episode in each world (seeded ``seeds``); records the first ``count``,
    and the frames of the worlds ``filmed``."""
    n = sim.n_worlds
    obs = sim.reset(episode_seeds=seeds)
    films: list[list[np.ndarray]] = [[f] for f in sim.render(filmed, **view)]
    returns = np.zeros(n)
    discounted = np.zeros(n)
    lengths = np.zeros(n, dtype=np.int64)
    success = np.zeros(n, dtype=bool)
    final_success = np.zeros(n, dtype=bool)
    ended_by_termination = np.zeros(n, dtype=bool)
    running = np.ones(n, dtype=bool)
    interventions: dict[str, np.ndarray] = {}
    while running.any():
        actions = act(obs)
        obs, reward, terminated, truncated, info = sim.step(actions)
        for film, w, frame in zip(films, filmed, info.get("frames", ()), strict=False):
            if running[w]:
                film.append(frame)
        r, te, tr = reward.cpu().numpy(), terminated.cpu().numpy(), truncated.cpu().numpy()
        ok = info["is_success"].cpu().numpy()
        if discount is not None:
            discounted[running] += discount ** lengths[running] * r[running].astype(np.float64)
        returns[running] += r[running]
        lengths[running] += 1
        success[running] |= ok[running]
        for name, acted in info.get("safety", {}).items():
            counts = interventions.setdefault(name, np.zeros(n, dtype=np.int64))
            counts[running] += acted.cpu().numpy()[running]
        ended = running & (te | tr)
        bar.update(int(np.count_nonzero(ended[:count])))
        final_success[ended] = ok[ended]
        ended_by_termination[ended] = te[ended]
        running &= ~ended
    records = [
        EpisodeRecord(
            index=first + w,
            seed=seeds[w],
            episode_return=float(returns[w]),
            length=int(lengths[w]),
            success=bool(success[w]),
            final_success=bool(final_success[w]),
            terminated=bool(ended_by_termination[w]),
            discounted_return=float(discounted[w]) if discount is not None else None,
            safety_interventions={k: int(v[w]) for k, v in interventions.items() if v[w]},
        )
        for w in range(count)
    ]
    return records, [np.stack(film) for film in films]
