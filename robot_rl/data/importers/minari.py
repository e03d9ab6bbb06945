"""Import Minari datasets into an episode store.

A Minari episode of N steps has N+1 observations (the last one after the final step)
and N actions, rewards, terminations and truncations. The store keeps the
observation each action was taken from, so rows are ``observations[0..N-1]``; the final
observation is dropped (the store has no row for it). Dict observations are flattened to
keys (nested ones joined with ``.``), a Box observation becomes the key ``observation``
(see :func:`~robot_rl.data.importers.base.flatten_obs`).

Only local datasets are read: an id is looked up under ``MINARI_DATASETS_PATH`` (Minari's
own default otherwise) and never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def _minari():
    try:
        import minari
    except ImportError as e:  # pragma: no cover - minari is a dependency
        raise ImportError(
            "import_minari needs the minari package: pip install 'minari[hdf5]'"
        ) from e
    return minari


def load_minari_dataset(dataset: Any):
    """A ``MinariDataset`` from itself, a local dataset id, or a dataset directory.

    A directory may be the dataset's own (holding ``data/``) or its ``data/``.
    """
    minari = _minari()
    if isinstance(dataset, minari.MinariDataset):
        return dataset
    if not isinstance(dataset, str | os.PathLike):
        raise ValueError(
            f"dataset: expected a MinariDataset, a dataset id or a path, got "
            f"{type(dataset).__name__}"
        )
    path = Path(dataset)
    if path.is_dir():
        data = path / "data" if (path / "data").is_dir() else path
        try:
            return minari.MinariDataset(data)
        except (ValueError, OSError) as e:
            raise ValueError(
                f"{path}: not a Minari dataset directory ({e}); expected a dataset's "
                "directory as Minari writes it, or a local dataset id"
            ) from None
    try:
        return minari.load_dataset(str(dataset), download=False)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"Minari dataset {str(dataset)!r}: not a directory and not a local dataset id "
            f"({e}); robot_rl never downloads datasets"
        ) from None


def _control_hz_of_spec(env_spec) -> float | None:
    """The control rate of the env a dataset was recorded in, by making that env."""
    if env_spec is None:
        return None
    import gymnasium as gym

    try:
        env = gym.make(env_spec)
    except Exception:  # the env's package may be absent: then the caller must say
        return None
    try:
        dt = getattr(env.unwrapped, "dt", None)
        if dt:
            return 1.0 / float(dt)
        fps = env.metadata.get("render_fps")
        return float(fps) if fps else None
    finally:
        env.close()


def import_minari(
    dataset: Any,
    store_path: str | os.PathLike[str],
    *,
    max_episodes: int | None = None,
    control_hz: float | None = None,
    robot: str | None = None,
    task: str | None = None,
    append: bool = False,
    overwrite: bool = False,
) -> ImportResult:
    """Import the episodes of a Minari dataset into an episode store.

    Every episode is read and checked before the store is created or touched, so a bad
    dataset leaves the store unchanged.

    Args:
        dataset: a ``minari.MinariDataset``, a local dataset id (``"ns/name-v0"``) or a
            dataset directory.
        store_path: the target store (created unless ``append``).
        max_episodes: import at most this many episodes (the first ones).
        control_hz: control rate in Hz; default from the recorded env (``1 / dt``, else
            its ``render_fps``), which must then be installed.
        robot: robot name for a new store; default the recorded env's id.
        task: task name for a new store; default the dataset id.
        append: add to an existing store at ``store_path`` (schema must match).
        overwrite: replace an existing store at ``store_path``.

    Returns:
        What was imported. Actions are stored as float32 in the dataset's units; when
        the action space is not [-1, 1] its bounds are in the result and in the store's
        ``units["action"]``. Provenance of each episode: ``source="import"``,
        ``robot_id="minari:<env id>"``, ``policy_id="minari:<dataset id>#episode_<i>"``.

    Raises:
        ValueError: an action space that is not a Box, ragged lengths (observations
            must have one row more than actions), non-finite values (the message names
            the dataset, episode and key), or no control rate.
    """
    import gymnasium as gym

    ds = load_minari_dataset(dataset)
    dataset_id = ds.id
    space = ds.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            f"Minari dataset {dataset_id}: action space {space} is not a Box; the store "
            "holds continuous action vectors"
        )
    action_dim = int(np.prod(space.shape, dtype=np.int64))
    bounds = action_bounds(space.low, space.high)
    env_id = ds.env_spec.id if ds.env_spec is not None else dataset_id
    if control_hz is None:
        control_hz = _control_hz_of_spec(ds.env_spec)
        if control_hz is None:
            raise ValueError(
                f"Minari dataset {dataset_id}: cannot tell the control rate from its env "
                f"({env_id}); pass control_hz"
            )
    indices = list(ds.episode_indices)
    if max_episodes is not None:
        indices = indices[: max(0, int(max_episodes))]
    target = StoreTarget(
        path=Path(store_path),
        control_hz=float(control_hz),
        robot=robot or env_id,
        task=task or dataset_id,
        append=append,
        overwrite=overwrite,
    )

    def episodes() -> Iterator[SourceEpisode]:
        for ep in ds.iterate_episodes(indices):
            where = f"Minari dataset {dataset_id}: episode {ep.id}"
            n = len(ep.rewards)
            obs = flatten_obs(ep.observations)
            for key, x in obs.items():
                if len(x) != n + 1:
                    raise ValueError(
                        f"{where}: observation {key!r} has {len(x)} rows; expected {n + 1} "
                        f"(one more than the {n} steps)"
                    )
            if not isinstance(ep.actions, np.ndarray):
                raise ValueError(f"{where}: 'action' is not an array ({type(ep.actions)})")
            frames = make_frames(
                {k: x[:n] for k, x in obs.items()},
                ep.actions,
                ep.rewards,
                ep.terminations,
                ep.truncations,
                where,
            )
            prov = import_provenance(f"minari:{env_id}", f"minari:{dataset_id}#episode_{ep.id}")
            yield where, frames, prov

    return write_episodes(target, episodes, action_dim=action_dim, bounds=bounds)
