"""Import plain Zarr stores in Diffusion Policy's replay-buffer layout (zarr format 2 or 3).

The layout Diffusion Policy's ``ReplayBuffer`` (and other tools) write::

    <src>/                    a zarr group, format 2 (.zgroup) or 3 (zarr.json), or a
                              .zip file holding one
      data/<key>   (N, ...)   one array per key, episodes concatenated along time
      meta/episode_ends (E,)  integer, cumulative: episode i is rows [ends[i-1], ends[i])

Such a store lacks what an episode store records. Each fact is taken from the root
attributes when present (robot_rl's own zarr-2 export, ``robot-rl-data convert``, writes
them all), else from the arguments:

- the control rate (attribute ``control_hz``; required one way or the other);
- robot and task (attributes ``robot``, ``task``; default the source's name);
- the observation keys (attribute ``obs_keys``; default every data array except the
  action, ``reward``, ``terminated``, ``truncated``, ``clipped``, ``intervention`` and
  ``timestamp``). Keys of two or more dimensions per step (camera images such as
  Diffusion Policy's ``img``, (T, H, W, 3) uint8) are imported like any other; learners
  on vectors leave them out of their default inputs;
- units (attribute ``units``: key -> unit text, the action's raw bounds included);
- the action key (default ``action``, Diffusion Policy's name);
- how episodes end: ``data/terminated`` and ``data/truncated`` when present; the last
  row of an episode that carries neither flag gets ``episode_end`` (default
  ``truncated``: a demonstration stopped by time. That is the safe assumption, since a
  terminated row tells a learner that no reward follows it).

Rewards come from ``data/reward`` when present; without it the new store has no rewards
(``reward_source="none"``): behaviour cloning trains on it, and ``robot-rl-data
relabel`` adds rewards from a learned model. The per-frame flags ``clipped`` and
``intervention`` and control-row ``timestamp`` come along when present. Streams
(``streams/``) are not imported.

Actions keep the source's units: learners map their range to [-1, 1]
(:mod:`robot_rl.data.action_bounds`). Provenance of each episode: ``source="import"``,
``robot_id="zarr:<robot>"``, ``policy_id="zarr<format>:<source name>#episode_<i>"``
(``zarr2:pusht.zarr#episode_3``); when the source holds robot_rl's ``meta/provenance``
(an export), each episode keeps its success label.

The whole source is checked before the target store is created or touched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from robot_rl.data.episode_store import FORMAT as EPISODE_STORE_FORMAT
from robot_rl.data.episode_store import OPTIONAL_FLAG_KEYS, TIMESTAMP_KEY
from robot_rl.data.importers.base import (
    ImportResult,
    SourceEpisode,
    StoreTarget,
    import_provenance,
    make_frames,
    source_name,
    write_episodes,
)

#: How the last row of an episode without a terminated/truncated flag ends.
EPISODE_ENDS = ("truncated", "terminated")
#: Data keys that are never observations by default (besides the action key).
NON_OBS_KEYS = ("reward", "terminated", "truncated", *OPTIONAL_FLAG_KEYS, TIMESTAMP_KEY)
_LAYOUT = (
    "expected Diffusion Policy's replay-buffer layout: data/<key> arrays and "
    "meta/episode_ends (cumulative end row of each episode)"
)


@contextlib.contextmanager
def _open_group(path: Path) -> Iterator[Any]:
    """The root group of a zarr directory or .zip file, read-only, any zarr format."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory; {_LAYOUT}")
    store = None
    try:
        if path.is_file():
            if path.suffix != ".zip":
                raise ValueError(f"{path}: a file, not a zarr directory or .zip; {_LAYOUT}")
            store = zarr.storage.ZipStore(path, mode="r")
        try:
            group = zarr.open_group(store if store is not None else str(path), mode="r")
        except (zarr.errors.NodeNotFoundError, FileNotFoundError):
            raise ValueError(
                f"{path}: not a zarr group (no .zgroup or zarr.json at its root); {_LAYOUT}"
            ) from None
        yield group
    finally:
        if store is not None:
            store.close()


def _array(group: Any, name: str) -> Any | None:
    """The array at ``name`` in ``group``, or None when there is none (or a group is)."""
    try:
        node = group[name]
    except KeyError:
        return None
    return node if isinstance(node, zarr.Array) else None


def _episode_ends(group: Any, src: Path) -> np.ndarray:
    ends_array = _array(group, "meta/episode_ends")
    if ends_array is None:
        raise ValueError(
            f"{src}: no meta/episode_ends array, so its episodes cannot be told apart; {_LAYOUT}"
        )
    ends = np.asarray(ends_array[...])
    if ends.ndim != 1 or ends.dtype.kind not in "iu":
        raise ValueError(
            f"{src}: meta/episode_ends is {ends.dtype} of shape {ends.shape}; expected a 1-D "
            "integer array of cumulative episode end rows"
        )
    if len(ends) == 0:
        raise ValueError(f"{src}: meta/episode_ends is empty: the store has no episodes")
    starts = np.concatenate([[0], ends[:-1]])
    bad = np.flatnonzero(ends <= starts)
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{src}: meta/episode_ends must increase strictly from a positive first entry "
            f"(every episode at least one row), but episode {i} ends at row {int(ends[i])} "
            f"after it starts at row {int(starts[i])}"
        )
    return ends.astype(np.int64)


def _obs_keys(
    data_keys: list[str], obs_keys: list[str] | None, action_key: str, src: Path
) -> list[str]:
    if obs_keys is None:
        obs_keys = [k for k in data_keys if k != action_key and k not in NON_OBS_KEYS]
        if not obs_keys:
            raise ValueError(
                f"{src}: no observation keys: data/ holds only {data_keys}; name them with "
                "obs_keys (CLI: --obs-keys)"
            )
        return obs_keys
    obs_keys = list(obs_keys)
    missing = [k for k in obs_keys if k not in data_keys]
    if missing:
        raise ValueError(f"{src}: observation key(s) {missing} not in data/; it has {data_keys}")
    if not obs_keys:
        raise ValueError(f"{src}: obs_keys is empty; name at least one data/ key")
    bad = [k for k in obs_keys if k == action_key or k in NON_OBS_KEYS]
    if bad:
        raise ValueError(
            f"{src}: {bad} cannot be observation keys (the action, rewards, flags and "
            "timestamps have their own place in the store)"
        )
    return obs_keys


def _column(data: Any, key: str, rows: slice, n: int, where: str) -> np.ndarray:
    """One value per step of ``data/<key>`` (shape (n,) or (n, 1)) as an (n,) array."""
    x = np.asarray(data[key][rows])
    if x.shape not in ((n,), (n, 1)):
        raise ValueError(
            f"{where}: data/{key} has per-step shape {x.shape[1:]}; expected one value per step"
        )
    return x.reshape(n)


def _success_labels(group: Any, n_episodes: int) -> list[bool | None]:
    """Success labels from robot_rl's exported ``meta/provenance`` (else unknown)."""
    prov = _array(group, "meta/provenance")
    if prov is None or prov.shape != (n_episodes,):
        return [None] * n_episodes
    labels: list[bool | None] = []
    for entry in prov[...]:
        try:
            success = json.loads(str(entry)).get("success")
        except (ValueError, AttributeError):
            success = None
        labels.append(success if isinstance(success, bool) else None)
    return labels


def _default_name(src: Path) -> str:
    name = src.name
    for suffix in (".zip", ".zarr"):
        name = name.removesuffix(suffix)
    return name or "zarr"


def import_zarr(
    src: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    control_hz: float | None = None,
    robot: str | None = None,
    task: str | None = None,
    obs_keys: list[str] | None = None,
    action_key: str = "action",
    episode_end: str = "truncated",
    max_episodes: int | None = None,
    append: bool = False,
    overwrite: bool = False,
) -> ImportResult:
    """Import a Zarr store in Diffusion Policy's layout into an episode store.

    See the module docstring for what is read from where.

    Args:
        src: the zarr group (directory, or a ``.zip`` file), format 2 or 3.
        store_path: the target episode store (created unless ``append``).
        control_hz: control rate of the rows in Hz; default the ``control_hz`` attribute.
        robot: robot name for a new store; default the ``robot`` attribute, else the
            source's name.
        task: task name for a new store; default the ``task`` attribute, else the
            source's name.
        obs_keys: data keys that are observations; default the ``obs_keys`` attribute,
            else every data key that is not the action, a reward, a flag or a timestamp.
        action_key: the data key holding the actions.
        episode_end: ``truncated`` or ``terminated``: the flag the last row of an
            episode gets when the source sets neither there.
        max_episodes: import at most this many episodes (the first ones).
        append: add to an existing store at ``store_path`` (schema must match).
        overwrite: replace an existing store at ``store_path``.

    Returns:
        What was imported.

    Raises:
        FileNotFoundError: nothing at ``src``.
        ValueError: ``src`` is no zarr group, lacks ``meta/episode_ends`` or the action
            key, has episode ends that do not increase or do not match the data's length,
            a data key of the wrong length, no control rate, or bad values (each message
            names the source and the key or episode).
    """
    src = Path(src)
    if episode_end not in EPISODE_ENDS:
        raise ValueError(f"episode_end={episode_end!r}: expected one of {EPISODE_ENDS}")
    name = source_name(src)
    with _open_group(src) as group:
        attrs = dict(group.attrs)
        fmt = int(group.metadata.zarr_format)
        if attrs.get("format") == EPISODE_STORE_FORMAT:
            raise ValueError(
                f"{src} is an episode store already: open it as it is, or copy episodes "
                "from it with robot-rl-data filter or merge"
            )
        data = group.get("data")
        data_keys = sorted(data.array_keys()) if isinstance(data, zarr.Group) else []
        if not data_keys:
            raise ValueError(f"{src}: no arrays under data/; {_LAYOUT}")
        if action_key not in data_keys:
            raise ValueError(
                f"{src}: no data/{action_key} (the actions); data/ has {data_keys}: name the "
                "action key with action_key (CLI: --action-key)"
            )
        ends = _episode_ends(group, src)
        if obs_keys is None and attrs.get("obs_keys"):
            obs_keys = [str(k) for k in attrs["obs_keys"]]
        keys = _obs_keys(data_keys, obs_keys, action_key, src)
        has = {k: k in data_keys for k in NON_OBS_KEYS}
        n_rows = int(ends[-1])
        for key in [*keys, action_key, *(k for k in NON_OBS_KEYS if has[k])]:
            length = data[key].shape[0] if data[key].ndim else 0
            if length != n_rows:
                raise ValueError(
                    f"{src}: data/{key} has {length} rows, but meta/episode_ends says the "
                    f"episodes end at row {n_rows}; every data/ array needs one row per step"
                )
        action_dim = int(np.prod(data[action_key].shape[1:], dtype=np.int64))
        successes = _success_labels(group, len(ends))

    if control_hz is None:
        control_hz = attrs.get("control_hz")
        if control_hz is None:
            raise ValueError(
                f"{src}: the control rate is unknown (no control_hz attribute); pass "
                "control_hz (CLI: --control-hz HZ), the rate its rows were recorded at"
            )
    control_hz = float(control_hz)
    if not (math.isfinite(control_hz) and control_hz > 0):
        raise ValueError(f"control_hz={control_hz}: expected a positive rate in Hz")
    default_name = _default_name(src)
    robot = robot or str(attrs.get("robot") or default_name)
    task = task or str(attrs.get("task") or default_name)
    units = {str(k): str(v) for k, v in (attrs.get("units") or {}).items()}
    if max_episodes is not None:
        ends = ends[: max(0, int(max_episodes))]
    target = StoreTarget(
        path=Path(store_path),
        control_hz=control_hz,
        robot=robot,
        task=task,
        append=append,
        overwrite=overwrite,
        rewards=has["reward"],
        timestamps=has[TIMESTAMP_KEY],
    )

    def episodes() -> Iterator[SourceEpisode]:
        with _open_group(src) as group:
            data = group["data"]
            start = 0
            for i, end in enumerate(ends):
                where = f"{name}: episode {i} (rows {start}:{int(end)})"
                rows = slice(start, int(end))
                n = int(end) - start
                obs = {k: np.asarray(data[k][rows]) for k in keys}
                flags = {}
                for flag in ("terminated", "truncated"):
                    if not has[flag]:
                        flags[flag] = np.zeros(n, dtype=bool)
                        continue
                    x = _column(data, flag, rows, n, where)
                    if not np.isin(x, (0, 1)).all():
                        raise ValueError(f"{where}: data/{flag}: expected 0/1 flags")
                    flags[flag] = x.astype(bool)
                if not (flags["terminated"][-1] or flags["truncated"][-1]):
                    flags[episode_end][-1] = True
                reward = _column(data, "reward", rows, n, where) if has["reward"] else None
                frames = make_frames(
                    obs,
                    np.asarray(data[action_key][rows]).reshape(n, action_dim),
                    reward,
                    flags["terminated"],
                    flags["truncated"],
                    where,
                )
                for key in (*OPTIONAL_FLAG_KEYS, TIMESTAMP_KEY):
                    if has[key]:
                        frames[key] = _column(data, key, rows, n, where)
                prov = import_provenance(
                    f"zarr:{robot}", f"zarr{fmt}:{name}#episode_{i}", success=successes[i]
                )
                yield where, frames, prov
                start = int(end)

    return write_episodes(target, episodes, action_dim=action_dim, bounds=None, units=units)
