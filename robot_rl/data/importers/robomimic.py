"""Import robomimic-style HDF5 demonstrations into an episode store.

The layout robomimic (and robosuite's conversion scripts) write::

    data/                    attrs: env_args (JSON: env_name, env_kwargs with robots and
                             control_freq), total
      demo_0/                attrs: num_samples (N)
        actions    (N, A)
        rewards    (N,)
        dones      (N,)      1 where the episode is done (task success or its end)
        obs/<key>  (N, ...)
        next_obs/<key>       not imported: the store takes s' from the next row
        states     (N, D)    not imported (simulator states)
    mask/<filter key>        (optional) names of the demos in a split, e.g. "train"

Demos are imported in numeric order (``demo_2`` before ``demo_10``). ``dones`` become
``terminated``; a demo whose last ``dones`` is 0 ends truncated (see
:func:`~robot_rl.data.importers.base.make_frames`). The last ``next_obs`` row, the only
one not also in ``obs``, is dropped.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from robot_rl.data.importers.base import (
    ImportResult,
    SourceEpisode,
    StoreTarget,
    import_provenance,
    make_frames,
    source_name,
    write_episodes,
)

_DEMO_RE = re.compile(r"^demo_(\d+)$")


def _demo_names(f, path: Path, filter_key: str | None) -> list[str]:
    if "data" not in f:
        raise ValueError(f"{path.name}: no 'data' group; expected robomimic's data/demo_<k>")
    names = list(f["data"].keys())
    if filter_key is not None:
        mask_key = f"mask/{filter_key}"
        if mask_key not in f:
            have = sorted(f["mask"].keys()) if "mask" in f else []
            raise ValueError(f"{path.name}: no filter key {mask_key!r}; the file has {have}")
        wanted = [n.decode() if isinstance(n, bytes) else str(n) for n in f[mask_key][()]]
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"{path.name}: {mask_key} lists demos not in data/: {missing}")
        names = wanted
    bad = [n for n in names if not _DEMO_RE.match(n)]
    if bad:
        raise ValueError(f"{path.name}: data/ entries {bad} are not named demo_<k>")
    return sorted(names, key=lambda n: int(_DEMO_RE.match(n).group(1)))


def _env_args(f, path: Path) -> dict:
    raw = f["data"].attrs.get("env_args")
    if raw is None:
        return {}
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        doc = json.loads(str(raw))
    except ValueError as e:
        raise ValueError(f"{path.name}: data attrs env_args is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name}: data attrs env_args: expected a JSON object")
    return doc


def _read(group, key: str, where: str) -> np.ndarray:
    if key not in group:
        have = sorted(group.keys())
        raise ValueError(f"{where}: missing {key!r}; the demo has {have}")
    return np.asarray(group[key][()])


def import_robomimic(
    hdf5_path: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    obs_keys: list[str] | None = None,
    filter_key: str | None = None,
    max_episodes: int | None = None,
    control_hz: float | None = None,
    robot: str | None = None,
    task: str | None = None,
    append: bool = False,
    overwrite: bool = False,
) -> ImportResult:
    """Import the demos of a robomimic-style HDF5 file into an episode store.

    Every demo is read and checked before the store is created or touched, so a bad
    file leaves the store unchanged.

    Args:
        hdf5_path: the HDF5 file.
        store_path: the target store (created unless ``append``).
        obs_keys: keys under ``obs/`` to import; default every key of the first demo.
        filter_key: import only the demos listed in ``mask/<filter_key>``.
        max_episodes: import at most this many demos (the first, in numeric order).
        control_hz: control rate in Hz; default ``env_args.env_kwargs.control_freq``.
        robot: robot name for a new store; default ``env_kwargs.robots`` joined by ``+``.
        task: task name for a new store; default ``env_args.env_name``.
        append: add to an existing store at ``store_path`` (schema must match).
        overwrite: replace an existing store at ``store_path``.

    Returns:
        What was imported. Provenance of each episode: ``source="import"``,
        ``robot_id="robomimic:<env_name>"``, ``policy_id="robomimic:<file name>#demo_<k>"``.

    Raises:
        ValueError: a missing key, ragged lengths, non-finite values, malformed
            ``env_args`` or ``num_samples`` (the message names the file, demo and key).
        FileNotFoundError: no file at ``hdf5_path``.
    """
    import h5py

    path = Path(hdf5_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no robomimic HDF5 file here")
    name = source_name(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not an HDF5 file ({e}); expected robomimic's layout") from None
    with f:
        demos = _demo_names(f, path, filter_key)
        if max_episodes is not None:
            demos = demos[: max(0, int(max_episodes))]
        if not demos:
            raise ValueError(f"{name}: no demos to import")
        env_args = _env_args(f, path)
        first = f["data"][demos[0]]
        if obs_keys is None:
            if "obs" not in first:
                raise ValueError(f"{name}: data/{demos[0]}: missing 'obs' group")
            obs_keys = list(first["obs"].keys())
        if not obs_keys:
            raise ValueError(f"{name}: no observation keys to import")
        actions = first.get("actions")
        if actions is None or actions.ndim != 2:
            raise ValueError(f"{name}: data/{demos[0]}: 'actions' missing or not (N, action_dim)")
        action_dim = int(actions.shape[1])

    env_kwargs = env_args.get("env_kwargs") or {}
    env_name = str(env_args.get("env_name") or path.stem)
    if control_hz is None:
        control_hz = env_kwargs.get("control_freq")
        if control_hz is None:
            raise ValueError(f"{name}: env_args has no env_kwargs.control_freq; pass control_hz")
    if robot is None:
        robots = env_kwargs.get("robots") or env_name
        robot = "+".join(robots) if isinstance(robots, list) else str(robots)
    target = StoreTarget(
        path=Path(store_path),
        control_hz=float(control_hz),
        robot=robot,
        task=task or env_name,
        append=append,
        overwrite=overwrite,
    )

    def episodes() -> Iterator[SourceEpisode]:
        with h5py.File(path, "r") as f:
            for demo in demos:
                where = f"{name}: data/{demo}"
                g = f["data"][demo]
                if "obs" not in g:
                    raise ValueError(f"{where}: missing 'obs' group")
                obs = {k: _read(g["obs"], k, f"{where}/obs") for k in obs_keys}
                action = _read(g, "actions", where)
                reward = _read(g, "rewards", where)
                dones = _read(g, "dones", where)
                n = g.attrs.get("num_samples")
                if n is not None and int(n) != len(action):
                    raise ValueError(
                        f"{where}: attrs num_samples is {int(n)} but 'actions' has "
                        f"{len(action)} rows"
                    )
                if dones.ndim != 1 or not np.isin(dones, (0, 1)).all():
                    raise ValueError(f"{where}: 'dones': expected (N,) of 0/1 values")
                frames = make_frames(
                    obs,
                    action,
                    reward,
                    terminated=dones.astype(bool),
                    truncated=np.zeros(len(dones), dtype=bool),
                    where=where,
                )
                prov = import_provenance(f"robomimic:{env_name}", f"robomimic:{name}#{demo}")
                yield where, frames, prov

    return write_episodes(target, episodes, action_dim=action_dim, bounds=None)
