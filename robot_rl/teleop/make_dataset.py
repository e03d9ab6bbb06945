"""Benchmark datasets: fixed recipes of scripted-expert episodes per task (reach, push,
lift), so that no learning bar can be met by tuning the data. Recorded with
:func:`robot_rl.teleop.expert_store.record_scripted_expert`.

A recipe is data (:data:`RECIPES`); the only knobs are the task, the number of episodes,
the seed and where the store goes. Every recipe runs the task's scripted expert
(:mod:`robot_rl.sim.experts`) in the ``ee_delta`` action mode, with every other task
setting at the schema's default (:class:`~robot_rl.config.sim.TaskConfig`):

========================  ================================================================
``expert``                every episode: expert + Gaussian noise σ = 0.1 on the
                          normalized [-1, 1] actions; dense rewards
``mixed``                 30% of the episodes as ``expert``; 70% the expert with σ = 0.5
                          and, with probability 0.3 per step, a uniformly random action in
                          [-1, 1] instead; dense rewards
``expert-sparse``         ``expert`` with the env's sparse reward (1.0 on success steps,
                          else 0.0)
``mixed-sparse``          ``mixed`` with sparse rewards
========================  ================================================================

**Determinism.** Episode ``i`` resets the env with ``seed + i`` (as
:func:`~robot_rl.teleop.recorder.record_episodes` does). Which episodes are noisy is
fixed by the seed: each behaviour gets its share of the episodes, rounded by largest
remainder (ties to the behaviour listed first, so ``mixed`` has exactly
``floor(0.3 n + 0.5)`` expert episodes), at positions drawn by a seeded permutation.
Episode ``i``'s action noise comes from its own generator,
``SeedSequence(seed, spawn_key=(i,))``, so it does not depend on the other episodes.
The same task, recipe, episode count and seed give the same rows (episode ids and
start times differ: they are unique per recording).

**Provenance.** Each episode records what made it: ``source="scripted"``,
``operator="scripted-expert"``, ``policy_id`` naming the behaviour and the recipe, e.g.
``scripted-expert:push:sigma=0.5,random_p=0.3,recipe=mixed`` (:func:`policy_id`), and
``config_hash``, the hash of the whole dataset spec (:func:`dataset_spec`: recipe,
its parameters, task settings, episode count, seed). The stored actions are the ones
executed: noisy, clipped to [-1, 1].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_rl.config.sim import TASK_NAMES, RobotConfig, SimConfig, TaskConfig

if TYPE_CHECKING:
    from robot_rl.teleop.recorder import RecordSummary

#: ``provenance.operator`` of every generated episode (as the pipeline's scripted demos).
OPERATOR = "scripted-expert"


@dataclass(frozen=True)
class Behaviour:
    """How the scripted expert's normalized actions are perturbed in one episode.

    Attributes:
        name: short name (``expert``, ``noisy``), shown in summaries.
        noise_std: std of the Gaussian noise added to every normalized action.
        random_action_prob: per-step probability of executing a uniformly random action
            in [-1, 1] instead of the (noisy) expert's.
    """

    name: str
    noise_std: float
    random_action_prob: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """A fixed dataset recipe.

    Attributes:
        name: the name given on the command line.
        reward_type: the env's ``task.reward_type`` (``dense`` or ``sparse``).
        mix: (behaviour, percent of the episodes) pairs; the percents sum to 100.
        description: one line, for ``--help`` and summaries.
    """

    name: str
    reward_type: str
    mix: tuple[tuple[Behaviour, int], ...]
    description: str = ""


EXPERT = Behaviour("expert", noise_std=0.1)
NOISY = Behaviour("noisy", noise_std=0.5, random_action_prob=0.3)

_MIXED = ((EXPERT, 30), (NOISY, 70))
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("expert", "dense", ((EXPERT, 100),), "scripted expert, action noise σ=0.1"),
        Recipe(
            "mixed",
            "dense",
            _MIXED,
            "30% expert (σ=0.1), 70% noisy (σ=0.5, random action with p=0.3 per step)",
        ),
        Recipe("expert-sparse", "sparse", ((EXPERT, 100),), "expert, sparse reward"),
        Recipe("mixed-sparse", "sparse", _MIXED, "mixed, sparse reward"),
    )
}


def policy_id(task: str, behaviour: Behaviour, recipe: Recipe) -> str:
    """The provenance ``policy_id`` of an episode, e.g.
    ``scripted-expert:push:sigma=0.5,random_p=0.3,recipe=mixed``."""
    return (
        f"scripted-expert:{task}:sigma={behaviour.noise_std:g},"
        f"random_p={behaviour.random_action_prob:g},recipe={recipe.name}"
    )


def task_config(task: str, recipe: Recipe) -> TaskConfig:
    """The task settings a recipe records with: schema defaults, ``ee_delta``, and the
    recipe's reward type."""
    return TaskConfig(name=task, action_mode="ee_delta", reward_type=recipe.reward_type)


def dataset_spec(task: str, recipe: Recipe, n_episodes: int, seed: int) -> dict[str, Any]:
    """Everything that determines a dataset's rows, as JSON-able data (hashed into each
    episode's ``config_hash``)."""
    return {
        "recipe": dataclasses.asdict(recipe),
        "task": dataclasses.asdict(task_config(task, recipe)),
        "robot": dataclasses.asdict(RobotConfig()),
        "sim": dataclasses.asdict(SimConfig()),
        "n_episodes": n_episodes,
        "seed": seed,
    }


def episode_schedule(recipe: Recipe, n_episodes: int, seed: int) -> list[Behaviour]:
    """The behaviour of each episode, in order (see the module docstring)."""
    shares = [pct * n_episodes / 100 for _, pct in recipe.mix]
    counts = [math.floor(s) for s in shares]
    # Largest remainder; a stable sort keeps ties in the recipe's order.
    by_remainder = sorted(range(len(shares)), key=lambda k: -(shares[k] - counts[k]))
    for k in by_remainder[: n_episodes - sum(counts)]:
        counts[k] += 1
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    order = np.random.default_rng(np.random.SeedSequence(seed)).permutation(n_episodes)
    behaviours = [b for b, _ in recipe.mix]
    return [behaviours[int(labels[order[i]])] for i in range(n_episodes)]


class PerturbedPolicy:
    """A policy with a :class:`Behaviour` applied to its normalized actions.

    The wrapped policy sees every observation (its phase machine keeps running) even on
    steps where a random action replaces its own. Actions come back clipped to [-1, 1].

    Args:
        policy: the scripted expert (anything with ``reset`` and ``act``).
        behaviour: the noise and random-action probability.
        rng: this episode's generator.
    """

    def __init__(self, policy: Any, behaviour: Behaviour, rng: np.random.Generator):
        self.policy = policy
        self.behaviour = behaviour
        self.rng = rng

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        action = np.asarray(self.policy.act(obs), dtype=np.float64)
        b = self.behaviour
        if b.random_action_prob > 0 and self.rng.random() < b.random_action_prob:
            action = self.rng.uniform(-1.0, 1.0, action.shape)
        elif b.noise_std > 0:
            action = action + b.noise_std * self.rng.standard_normal(action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


@dataclass
class BehaviourStats:
    """Per-behaviour counts of a generated dataset."""

    n_episodes: int = 0
    n_steps: int = 0
    n_success: int = 0

    @property
    def success_rate(self) -> float:
        return self.n_success / max(self.n_episodes, 1)


@dataclass
class DatasetSummary:
    """What :func:`make_dataset` wrote."""

    path: Path
    task: str
    recipe: str
    n_episodes: int
    n_steps: int
    wall_time_s: float
    #: Behaviour name -> its episodes, steps and successes.
    by_behaviour: dict[str, BehaviourStats] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return sum(s.n_success for s in self.by_behaviour.values()) / max(self.n_episodes, 1)


def _check_args(task: str, recipe: str, n_episodes: int, seed: int) -> Recipe:
    if task not in TASK_NAMES:
        raise ValueError(f"task {task!r}: expected one of {list(TASK_NAMES)}")
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r}: expected one of {list(RECIPES)}")
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"number of episodes: expected an int >= 1, got {n_episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    return RECIPES[recipe]


def make_dataset(
    task: str,
    recipe: str,
    out: str | os.PathLike[str],
    *,
    n_episodes: int,
    seed: int = 0,
    overwrite: bool = False,
    on_episode: Callable[[int, Behaviour, bool | None], None] | None = None,
) -> DatasetSummary:
    """Records a benchmark dataset into a new episode store.

    Args:
        task: reach, push or lift.
        recipe: a name in :data:`RECIPES`.
        out: the store directory to create (its parent must exist).
        n_episodes: episodes to record (>= 1).
        seed: episode ``i`` resets with ``seed + i``; the schedule and noise derive from
            it too.
        overwrite: replace an existing episode store at ``out``.
        on_episode: called after each episode with (index, behaviour, success).

    Returns:
        Counts per behaviour and the wall time.

    Raises:
        ValueError: an unknown task or recipe, ``n_episodes < 1`` or a negative seed.
        FileExistsError: ``out`` exists and ``overwrite`` is False (or it is not an
            episode store).
    """
    # Simulation imports here: the recipes (for --help) need none of them.
    from robot_rl.sim.env import make_env
    from robot_rl.teleop.expert_store import record_scripted_expert

    rec = _check_args(task, recipe, n_episodes, seed)
    out = Path(out)
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(
            f"{out} already exists; pass overwrite=True (robot-rl-data make-dataset "
            "--overwrite) to replace it"
        )
    spec = dataset_spec(task, rec, n_episodes, seed)
    spec_hash = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    schedule = episode_schedule(rec, n_episodes, seed)
    cfg = task_config(task, rec)
    stats = {b.name: BehaviourStats() for b, _ in rec.mix}

    def episode_policy(i: int, expert: Any) -> tuple[PerturbedPolicy, str]:
        # Episode i's noise has its own generator: independent of the other episodes.
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        return PerturbedPolicy(expert, schedule[i], rng), policy_id(task, schedule[i], rec)

    def count(i: int, result: RecordSummary) -> None:
        s = stats[schedule[i].name]
        s.n_episodes += result.n_episodes
        s.n_steps += result.n_steps
        s.n_success += result.n_success
        if on_episode is not None:
            on_episode(i, schedule[i], bool(result.n_success))

    start = time.perf_counter()
    env = make_env(cfg, RobotConfig(), SimConfig())
    try:
        record_scripted_expert(
            env,
            out,
            robot=RobotConfig().name,
            task=task,
            control_hz=cfg.control_hz,
            max_ee_step_m=cfg.max_ee_step_m,
            n_episodes=n_episodes,
            seed=seed,
            operator=OPERATOR,
            config_hash=spec_hash,
            overwrite=overwrite,
            episode_policy=episode_policy,
            on_episode=count,
        )
    finally:
        env.close()
    return DatasetSummary(
        path=out,
        task=task,
        recipe=rec.name,
        n_episodes=sum(s.n_episodes for s in stats.values()),
        n_steps=sum(s.n_steps for s in stats.values()),
        wall_time_s=time.perf_counter() - start,
        by_behaviour=stats,
    )
