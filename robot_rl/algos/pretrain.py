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
from robot_rl.config.schema import AlgoConfig, ConfigError
from robot_rl.data.action_bounds import store_action_bounds
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.sampler import TransitionSampler, resolve_obs_keys, return_range_scale
from robot_rl.policies import Normalizer, PolicyManifest, save_policy


@dataclass(frozen=True)
class PretrainResult:
    """Where the policy went and how training went."""

    policy_dir: Path
    history: dict[str, list[tuple[int, float]]]
    n_transitions: int
    device: str


#: AlgoConfig fields that configure the run (trainer, sampler), not the algorithm.
RUN_FIELDS = frozenset(
    {"name", "steps", "log_every", "checkpoint_every", "device", "mixed_precision", "seed"}
)


def algorithm_config(algo: AlgoConfig) -> Any:
    """The algorithm's own config class, filled from the Hydra-facing :class:`AlgoConfig`.

    ``None`` fields keep the algorithm's default.

    Raises:
        ConfigError: A field is set (not ``None`` and not its default) that the chosen
            algorithm does not have, or the algorithm's config rejects a value.
    """
    _, config_cls = ALGORITHMS[algo.name]
    wanted = {f.name for f in dataclasses.fields(config_cls)}
    defaults = dataclasses.asdict(AlgoConfig())
    given: dict[str, Any] = {}
    foreign: list[str] = []
    for key, value in dataclasses.asdict(algo).items():
        if key in RUN_FIELDS or value is None:
            continue
        if key in wanted:
            given[key] = value
        elif value != defaults[key]:
            foreign.append(f"algo.{key}={value!r}")
    if foreign:
        raise ConfigError(
            f"{', '.join(foreign)}: not a setting of algorithm {algo.name!r}; its settings "
            f"are {sorted(wanted)} (see {config_cls.__module__}.{config_cls.__name__})"
        )
    # Hydra's structured config types every field; a caller building AlgoConfig in
    # Python gets no such check, so a value of the wrong kind is named here.
    numeric = {f.name for f in dataclasses.fields(config_cls) if "float" in str(f.type)}
    wrong = [
        f"algo.{key}={value!r} ({type(value).__name__}, expected a number)"
        for key, value in given.items()
        if key in numeric and not _is_number(value)
    ]
    if wrong:
        raise ConfigError(f"algo={algo.name}: " + "; ".join(wrong))
    try:
        return config_cls(**given)
    except ValueError as exc:
        raise ConfigError(f"algo={algo.name}: {exc}") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def pretrain(
    store: EpisodeStore,
    algo: AlgoConfig,
    out_dir: str | Path,
    *,
    obs_keys: list[str] | None = None,
    progress: bool = True,
    run_config: dict[str, Any] | None = None,
) -> PretrainResult:
    """Trains ``algo`` on every committed episode of ``store`` and saves the policy.

    Args:
        store: the episode store (opened for reading).
        algo: algorithm name and hyper-parameters.
        out_dir: run directory; the artifact goes to ``out_dir/policy`` and TensorBoard
            logs and checkpoints to ``out_dir/train``.
        obs_keys: observation keys the policy sees (default: every key of at most one
            dimension, :func:`~robot_rl.data.sampler.resolve_obs_keys`).
        progress: show a progress bar.
        run_config: the full resolved run config, recorded in the manifest for lineage.

    Raises:
        ValueError: the store is empty or lacks a requested key. (Callers validate the
            store first: ``store.validate()`` reads every chunk, which they may have done.)
    """
    if store.n_episodes == 0:
        raise ValueError(f"episode store {store.path} has no committed episodes to learn from")
    keys = resolve_obs_keys(store, obs_keys, images=False)
    seed_everything(algo.seed)
    shapes = {k: tuple(store.obs_spec[k][0]) for k in keys}
    normalizer = Normalizer.from_stats({k: store.stats(k) for k in keys}, keys, shapes)
    algo_cls, _ = ALGORITHMS[algo.name]
    algo_config = algorithm_config(algo)
    # Cal-QL bounds Q by each transition's Monte-Carlo return, discounted as the learner.
    calibrated = bool(getattr(algo_config, "calibrated", False))
    reward_scale = (
        return_range_scale(store)
        if getattr(algo_config, "reward_normalization", "none") == "return_range"
        else 1.0
    )
    action_bounds = store_action_bounds(store)
    device = resolve_device(algo.device)
    sampler = TransitionSampler(
        store,
        obs_keys=keys,
        batch_size=algo.batch_size,
        device=device,  # on a GPU, batches are gathered there
        seed=algo.seed,
        require_rewards=algo_cls.uses_rewards,
        reward_scale=reward_scale,
        mc_return_discount=algo_config.discount if calibrated else None,
        action_bounds=action_bounds,
    )
    learner = algo_cls(sampler.obs_dim, sampler.action_dim, algo_config, normalizer)
    trainer_cfg = TrainerConfig(
        num_steps=algo.steps,
        seed=algo.seed,
        log_every=min(algo.log_every, algo.steps),
        checkpoint_every=algo.checkpoint_every,
        # Periodic checkpoints are kept (e.g. to evaluate them offline); else the last two.
        keep_checkpoints=max(2, algo.steps // algo.checkpoint_every + 1)
        if algo.checkpoint_every
        else 2,
        device=str(device),
        mixed_precision=algo.mixed_precision,
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
        run_config,
        extra_metrics={"train/reward_scale": reward_scale},
        action_bounds=action_bounds,
    )
    policy_dir = out_dir / "policy"
    save_policy(policy_dir, learner.actor(), manifest, overwrite=True)
    return PretrainResult(policy_dir, history, sampler.n_transitions, str(learner.device))


def policy_manifest(
    store: EpisodeStore,
    algo: AlgoConfig,
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
        config=run_config if run_config is not None else dataclasses.asdict(algo),
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
    algo: AlgoConfig,
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
    algo_cls, _ = ALGORITHMS[algo.name]
    obs_dim = normalizer.dim
    learner = algo_cls(obs_dim, store.action_dim, algorithm_config(algo), normalizer)
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
