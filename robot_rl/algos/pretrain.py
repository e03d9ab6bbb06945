"""Offline pretraining from an episode store to a policy artifact: the one code path
behind ``robot-rl-pretrain`` and the pipeline's training stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.algos import (
    ALGORITHMS,
    OfflineTrainer,
    TrainerConfig,
    resolve_device,
    seed_everything,
)
from robot_rl.config.algos import AlgorithmConfig
from robot_rl.config.train import TrainConfig
from robot_rl.config.validation import ConfigError
from robot_rl.data.action_bounds import store_action_bounds
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.returns import return_range_scale
from robot_rl.data.sampler import TransitionSampler
from robot_rl.data.sampler_rows import resolve_obs_keys
from robot_rl.policies import Normalizer, PolicyManifest, save_policy


@dataclass(frozen=True)
class PretrainResult:
    """Where the policy went and how training went."""

    policy_dir: Path
    history: dict[str, list[tuple[int, float]]]
    n_transitions: int
    device: str


def algorithm_for(algo: AlgorithmConfig) -> type[Any]:
    """The algorithm class of an algorithm config (from :data:`ALGORITHMS`).

    Raises:
        ConfigError: ``algo`` is not one of the registered algorithms' configs.
    """
    entry = ALGORITHMS.get(getattr(algo, "name", None))  # type: ignore[arg-type]
    if entry is None or type(algo) is not entry[1]:
        raise ConfigError(
            f"algo is a {type(algo).__name__}: expected the config of one of "
            f"{sorted(ALGORITHMS)} ({', '.join(c.__name__ for _, c in ALGORITHMS.values())})"
        )
    return entry[0]


def pretrain(
    store: EpisodeStore,
    algo: AlgorithmConfig,
    out_dir: str | Path,
    *,
    train: TrainConfig | None = None,
    obs_keys: list[str] | None = None,
    progress: bool = True,
    run_config: dict[str, Any] | None = None,
) -> PretrainResult:
    """Trains ``algo`` on every committed episode of ``store`` and saves the policy.

    Args:
        store: the episode store (opened for reading).
        algo: the algorithm's config (``BCConfig``, ``IQLConfig``, ...: its class picks
            the algorithm).
        out_dir: run directory; the artifact goes to ``out_dir/policy`` and TensorBoard
            logs and checkpoints to ``out_dir/train``.
        train: the training run (steps, batch size, seed, device, ...); default
            ``TrainConfig()``.
        obs_keys: observation keys the policy sees (default: every key of at most one
            dimension, :func:`~robot_rl.data.sampler_rows.resolve_obs_keys`).
        progress: show a progress bar.
        run_config: the full resolved run config, recorded in the manifest for lineage.

    Raises:
        ValueError: the store is empty or lacks a requested key. (Callers validate the
            store first: ``store.validate()`` reads every chunk, which they may have done.)
    """
    train = train if train is not None else TrainConfig()
    algo_cls = algorithm_for(algo)
    if store.n_episodes == 0:
        raise ValueError(f"episode store {store.path} has no committed episodes to learn from")
    keys = resolve_obs_keys(store, obs_keys, images=False)
    seed_everything(train.seed)
    shapes = {k: tuple(store.obs_spec[k][0]) for k in keys}
    normalizer = Normalizer.from_stats({k: store.stats(k) for k in keys}, keys, shapes)
    # Cal-QL bounds Q by each transition's Monte-Carlo return, discounted as the learner.
    calibrated = bool(getattr(algo, "calibrated", False))
    reward_scale = (
        return_range_scale(store)
        if getattr(algo, "reward_normalization", "none") == "return_range"
        else 1.0
    )
    action_bounds = store_action_bounds(store)
    device = resolve_device(train.device)
    sampler = TransitionSampler(
        store,
        obs_keys=keys,
        batch_size=train.batch_size,
        device=device,  # on a GPU, batches are gathered there
        seed=train.seed,
        require_rewards=algo_cls.uses_rewards,
        reward_scale=reward_scale,
        mc_return_discount=algo.discount if calibrated else None,
        action_bounds=action_bounds,
    )
    learner = algo_cls(sampler.obs_dim, sampler.action_dim, algo, normalizer)
    trainer_cfg = TrainerConfig(
        num_steps=train.steps,
        seed=train.seed,
        log_every=min(train.log_every, train.steps),
        checkpoint_every=train.checkpoint_every,
        # Periodic checkpoints are kept (e.g. to evaluate them offline); else the last two.
        keep_checkpoints=max(2, train.steps // train.checkpoint_every + 1)
        if train.checkpoint_every
        else 2,
        device=str(device),
        mixed_precision=train.mixed_precision,
        progress=progress,
    )
    out_dir = Path(out_dir)
    trainer = OfflineTrainer(learner, sampler, trainer_cfg, log_dir=out_dir / "train")
    history = trainer.train()
    manifest = policy_manifest(
        store,
        algo,
        keys,
        history,
        run_config if run_config is not None else run_record(algo, train),
        extra_metrics={"train/reward_scale": reward_scale},
        action_bounds=action_bounds,
    )
    policy_dir = out_dir / "policy"
    save_policy(policy_dir, learner.actor(), manifest, overwrite=True)
    return PretrainResult(policy_dir, history, sampler.n_transitions, str(learner.device))


def run_record(algo: AlgorithmConfig, train: TrainConfig | None = None) -> dict[str, Any]:
    """What a manifest records as the config of a run built in Python (without Hydra):
    the algorithm's fields and, when given, the training run's."""
    record: dict[str, Any] = {"algo": dataclasses.asdict(algo)}
    if train is not None:
        record["train"] = dataclasses.asdict(train)
    return record


def policy_manifest(
    store: EpisodeStore,
    algo: AlgorithmConfig,
    obs_keys: list[str],
    history: dict[str, list[tuple[int, float]]],
    run_config: dict[str, Any] | None = None,
    extra_metrics: dict[str, float] | None = None,
    action_bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> PolicyManifest:
    """The manifest of a policy trained on ``store``: observation layout, the action
    bounds its [-1, 1] outputs map to (``action_bounds``, default
    :func:`~robot_rl.data.action_bounds.store_action_bounds`), lineage (dataset content
    hash, episode range, config) and the last value of each logged metric."""
    low, high = action_bounds if action_bounds is not None else store_action_bounds(store)
    return PolicyManifest(
        algorithm=algo.name,
        obs_keys=list(obs_keys),
        obs_shapes={k: tuple(store.obs_spec[k][0]) for k in obs_keys},
        action_dim=store.action_dim,
        action_low=[float(v) for v in low],
        action_high=[float(v) for v in high],
        dataset_hash=store.content_hash(),
        episode_range=[0, store.n_episodes],
        config=run_config if run_config is not None else run_record(algo),
        env={
            "robot": store.attrs.get("robot"),
            "task": store.attrs.get("task"),
            "control_hz": float(store.control_hz),
        },
        metrics={
            **{tag: values[-1][1] for tag, values in history.items() if values},
            **(extra_metrics or {}),
        },
    )


def export_checkpoint(
    store: EpisodeStore,
    algo: AlgorithmConfig,
    checkpoint_dir: str | Path,
    policy_dir: str | Path,
    *,
    obs_keys: list[str] | None = None,
) -> Path:
    """Saves the actor of a :func:`pretrain` checkpoint (``<run>/train/checkpoints/
    step_<N>``) as a policy artifact, built as ``pretrain`` builds its final one; the
    manifest's config records ``checkpoint_step``.

    Raises:
        ValueError: the checkpoint belongs to another algorithm or configuration.
    """
    checkpoint_dir = Path(checkpoint_dir)
    keys = resolve_obs_keys(store, obs_keys, images=False)
    shapes = {k: tuple(store.obs_spec[k][0]) for k in keys}
    normalizer = Normalizer.from_stats({k: store.stats(k) for k in keys}, keys, shapes)
    algo_cls = algorithm_for(algo)
    learner = algo_cls(normalizer.dim, store.action_dim, algo, normalizer)
    trainer_cfg = TrainerConfig(num_steps=1, device="cpu", progress=False)
    trainer = OfflineTrainer(learner, _NoBatches(), trainer_cfg)
    trainer.load_checkpoint(checkpoint_dir)
    manifest = policy_manifest(store, algo, keys, {k: list(v) for k, v in trainer.history.items()})
    manifest.config = {**manifest.config, "checkpoint_step": trainer.step}
    out = Path(policy_dir)
    save_policy(out, learner.actor(), manifest, overwrite=True)
    return out


class _NoBatches:
    """A batch source for a trainer that only loads a checkpoint."""

    def sample(self) -> Any:
        raise RuntimeError("export_checkpoint never trains")
