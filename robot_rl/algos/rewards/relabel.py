"""Rewrite a store's rewards: learned rewards in (relabel), or rewards out (strip).

:func:`relabel` writes a new store holding the source's episodes (observations, actions,
flags, timestamps, streams, provenance, episode ids, labels and preferences, all bit for
bit) with ``data/reward`` computed by a reward model (:mod:`robot_rl.algos.rewards`). The store
records where its rewards came from: the root attribute ``reward_source`` and every
episode's ``provenance.reward_source`` are ``"learned:<model id>"``, the model's content
hash (see :mod:`robot_rl.algos.rewards.model`). :func:`strip_rewards` writes a copy without
rewards (``reward_source="none"``), e.g. to benchmark learned rewards against true ones.

Neither touches the source store. As the governance rewrites do
(:mod:`robot_rl.data.governance`), the new store is written through the ordinary episode
writer (:mod:`robot_rl.data.rewrite`: checksums, digests and statistics are fresh and
consistent), validated, and only then published at ``dst`` with a rename, so ``dst`` never
shows a partial store.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.algos.rewards.model import RewardModel, load_reward_model
from robot_rl.data.episode_store import EpisodeStore, StoreFormatError
from robot_rl.data.labels import LabelLog
from robot_rl.data.provenance import REWARD_LEARNED_PREFIX, REWARD_NONE
from robot_rl.data.rewrite import write_new_store

# (episode index, start row, end row) -> float32 rewards of those rows, or None.
RewardFn = Callable[[int, int, int], np.ndarray | None]


@dataclass(frozen=True)
class RelabelResult:
    """What :func:`relabel` or :func:`strip_rewards` wrote.

    Attributes:
        path: the new store.
        reward_source: its ``reward_source``.
        n_episodes: episodes written.
        n_steps: control rows written.
    """

    path: Path
    reward_source: str
    n_episodes: int
    n_steps: int


def relabel(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    model: RewardModel | str | os.PathLike[str],
    *,
    replace_rewards: bool = False,
) -> RelabelResult:
    """Write a copy of ``src`` at ``dst`` with rewards from a reward model.

    Args:
        src: the source store (opened read-only; never modified).
        dst: the new store (must not exist, or be an empty directory).
        model: a :class:`~robot_rl.algos.rewards.RewardModel` or the directory of a saved one.
        replace_rewards: allow a source that has rewards (they are replaced in the copy);
            by default only stores without rewards are relabelled, so true rewards are
            not overwritten by mistake.

    Returns:
        What was written; ``reward_source`` is ``"learned:<model id>"``.

    Raises:
        ValueError: the model's observation keys, shapes or action size do not match the
            store; or the source has rewards and ``replace_rewards`` is False.
        FileExistsError: ``dst`` exists.
    """
    m = model if isinstance(model, RewardModel) else load_reward_model(model)
    with EpisodeStore.open(src) as store:
        if store.has_rewards and not replace_rewards:
            raise ValueError(
                f"store {store.path} already has rewards (reward source: "
                f"{store.reward_source}); pass replace_rewards=True (--replace-rewards) to "
                "write a copy with learned rewards instead"
            )
        m.check_store(store)
        source = f"{REWARD_LEARNED_PREFIX}{m.model_id}"

        def rewards(i: int, start: int, end: int) -> np.ndarray:
            return m.store_rows(store, start, end)

        return _rewrite(store, Path(dst), "relabel", source, rewards)


def strip_rewards(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> RelabelResult:
    """Write a copy of ``src`` at ``dst`` without rewards (``reward_source="none"``):
    everything else is kept, and each episode's provenance says ``reward_source="none"``.

    Raises:
        FileExistsError: ``dst`` exists.
    """
    with EpisodeStore.open(src) as store:
        return _rewrite(store, Path(dst), "strip", REWARD_NONE, lambda i, s, e: None)


def _rewrite(
    store: EpisodeStore, dst: Path, tag: str, reward_source: str, rewards: RewardFn
) -> RelabelResult:
    if store._labels_error is not None:
        raise StoreFormatError(
            f"{store._labels_error}; repair {store.path}/labels.json first (a copy would "
            "drop the damaged labels)"
        )
    schema = dataclasses.replace(store.schema, reward_source=reward_source)
    chunks = {k: v for k, v in store.chunk_rows().items() if k != "data/reward"}

    def edit(src: EpisodeStore, i: int):
        start, end = src.episode_bounds(i)
        reward = rewards(i, start, end)
        if reward is not None and (reward.shape != (end - start,) or not np.isfinite(reward).all()):
            raise ValueError(
                f"episode {i}: the reward model gave rewards of shape {reward.shape} "
                f"(expected ({end - start},)), or non-finite values"
            )
        prov = dataclasses.replace(src.recorded_provenance(i), reward_source=reward_source)
        return {"reward": reward}, prov

    episodes = [(store, i) for i in range(store.n_episodes)]
    labels = LabelLog(store.labels(), store.preferences())
    write_new_store(dst, tag, schema, chunks, episodes, labels, edit)
    return RelabelResult(dst, reward_source, store.n_episodes, store.n_steps)
