"""Creating an empty episode store: argument checks, the arrays' plan, and publishing.

Every argument is checked before anything on disk is touched. The store is built in a
hidden sibling directory (``.<name>.create-<12 hex>``) under its own writer lock and then
published with a rename, or swapped with an existing store under that store's writer
lock, so a crash never leaves a half-made store at the path.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec
from zarr.storage import LocalStore

from robot_rl.data.atomic_fs import (
    atomic_write_json,
    fsync_path,
    publish_dir,
    remove_tree,
    swap_dirs,
)
from robot_rl.data.provenance import REWARD_NONE, check_reward_source
from robot_rl.data.store_layout import (
    COMMIT_FILE,
    DIGESTS_ARRAY,
    FORMAT,
    FORMAT_VERSION,
    KEY_RE,
    RESERVED_KEYS,
    RESERVED_STREAM_KEYS,
    STAT_FIELDS,
    Spec,
    auto_chunk_rows,
    commit_doc,
    compressors,
    frame_spec,
    is_store_dir,
    persisted_stat_keys,
    row_bytes,
    stream_spec,
)
from robot_rl.data.store_lock import acquire_writer_lock

# One planned array: (name, per-row shape, dtype, rows per chunk).
_Plan = list[tuple[str, tuple[int, ...], np.dtype, int]]


def create_store_dir(
    path: Path,
    *,
    obs_spec: Spec,
    action_dim: int,
    control_hz: float,
    robot: str,
    task: str,
    units: dict[str, str] | None,
    streams: dict[str, Spec],
    timestamps: bool,
    chunk_steps: int | None,
    chunks: dict[str, int] | None,
    overwrite: bool,
    reward_source: str,
) -> int:
    """Create an empty, committed store at ``path`` (arguments as
    :meth:`robot_rl.data.episode_store.EpisodeStore.create` takes them, ``streams`` and
    ``timestamps`` resolved) and return the descriptor of its writer lock, held.

    Raises:
        ValueError: a malformed argument (the message names it).
        FileExistsError: ``path`` exists and ``overwrite`` does not allow replacing it.
        FileNotFoundError: the parent directory of ``path`` does not exist.
    """
    check_create_args(
        obs_spec, action_dim, control_hz, robot, task, units, chunk_steps, streams, timestamps
    )
    check_reward_source(reward_source)
    rewards = reward_source != REWARD_NONE
    # Every argument is checked before anything on disk is touched.
    chunks = dict(chunks or {})
    if not isinstance(chunks, dict):
        raise ValueError(f"chunks: expected a dict array name -> rows, got {chunks!r}")
    plan: _Plan = []

    def plan_rows(name: str, shape: tuple[int, ...], dtype: np.dtype, default_rows: int):
        rows = chunks.pop(name) if name in chunks else default_rows
        if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
            raise ValueError(f"chunks[{name!r}]: expected a positive int, got {rows!r}")
        plan.append((name, shape, dtype, rows))

    spec = frame_spec(obs_spec, action_dim, timestamps, rewards)
    for key, (shape, dtype) in spec.items():
        plan_rows(f"data/{key}", shape, dtype, chunk_steps or auto_chunk_rows(shape, dtype))
    i8 = np.dtype(np.int64)
    plan_rows("meta/episode_ends", (), i8, 1024)
    for s, keys in streams.items():
        for key, (shape, dtype) in stream_spec(keys).items():
            plan_rows(f"streams/{s}/{key}", shape, dtype, auto_chunk_rows(shape, dtype))
        plan_rows(f"streams/{s}/episode_ends", (), i8, 1024)
    if chunks:
        known = [name for name, *_ in plan]
        raise ValueError(f"chunks: unknown array name(s) {sorted(chunks)}; known: {known}")
    replace = False
    if path.exists():
        if path.is_dir() and not any(path.iterdir()):
            pass
        elif not overwrite:
            raise FileExistsError(
                f"{path} already exists; pass overwrite=True to replace an episode store"
            )
        elif not is_store_dir(path):
            raise FileExistsError(
                f"{path} exists and is not an episode store; refusing to delete it"
            )
        else:
            replace = True
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: directory of the new store does not exist")

    # Built in a hidden sibling and published with a rename (or swapped with the old
    # store under its writer lock), so a crash never leaves a half-made store at path.
    tmp = path.with_name(f".{path.name}.create-{uuid.uuid4().hex[:12]}")
    lock_fd: int | None = None
    try:
        tmp.mkdir()
        lock_fd = acquire_writer_lock(tmp)
        build_empty(
            tmp,
            plan,
            spec,
            obs_spec,
            control_hz,
            robot,
            task,
            units,
            streams,
            timestamps,
            reward_source,
        )
        if replace:
            old_lock = acquire_writer_lock(path)
            try:
                old = swap_dirs(tmp, path)
            finally:
                os.close(old_lock)
            remove_tree(old)
        else:
            publish_dir(tmp, path)
        return lock_fd
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        remove_tree(tmp)
        raise


def build_empty(
    path: Path,
    plan: _Plan,
    spec: dict[str, tuple[tuple[int, ...], np.dtype]],
    obs_spec: Spec,
    control_hz: float,
    robot: str,
    task: str,
    units: dict[str, str] | None,
    streams: dict[str, Spec],
    timestamps: bool,
    reward_source: str,
) -> None:
    """Write the empty arrays of ``plan``, the root attributes and the first commit
    document into the directory ``path``, each made durable."""
    store = LocalStore(path)
    root = zarr.create_group(store=store, zarr_format=3)
    for name, shape, dtype, rows in plan:
        root.create_array(
            name,
            shape=(0, *shape),
            chunks=(rows, *shape),
            dtype=dtype,
            compressors=compressors(dtype, row_bytes(shape, dtype)),
            fill_value=0,
        )
    for name in ("meta/provenance", DIGESTS_ARRAY):
        root.create_array(name, shape=(0,), chunks=(256,), dtype=str, compressors=(Crc32cCodec(),))
    for key in persisted_stat_keys(spec, obs_spec):
        shape = spec[key][0]
        rows = auto_chunk_rows(shape, np.dtype(np.float64))
        root.create_array(
            f"meta/stats/{key}",
            shape=(0, len(STAT_FIELDS), *shape),
            chunks=(max(1, min(rows // len(STAT_FIELDS), 256)), len(STAT_FIELDS), *shape),
            dtype="float64",
            compressors=compressors(np.dtype(np.float64)),
            fill_value=0,
        )
    root.attrs.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "control_hz": float(control_hz),
            "robot": robot,
            "task": task,
            "obs_keys": list(obs_spec),
            "units": dict(units or {}),
            "timestamps": bool(timestamps),
            "stream_keys": {s: list(keys) for s, keys in streams.items()},
            "reward_source": reward_source,
        }
    )
    for meta in path.rglob("zarr.json"):
        fsync_path(meta)
    # A new generation for every new store: readers of a store this one replaces
    # notice the swap (see robot_rl.data.store_guard).
    doc = commit_doc(0, 0, dict.fromkeys(streams, 0), uuid.uuid4().hex)
    atomic_write_json(path / COMMIT_FILE, doc)
    fsync_path(path)


def check_create_args(
    obs_spec: Any,
    action_dim: Any,
    control_hz: Any,
    robot: Any,
    task: Any,
    units: Any,
    chunk_steps: Any,
    streams: dict[str, Any],
    timestamps: bool,
) -> None:
    """Raise ValueError, naming the argument, unless every argument of a new store is
    well formed."""
    if not isinstance(obs_spec, dict) or not obs_spec:
        raise ValueError("obs_spec: expected a non-empty dict key -> (shape, dtype)")
    for key, entry in obs_spec.items():
        _check_spec_entry("obs_spec", key, entry, RESERVED_KEYS)
    if not isinstance(action_dim, int | np.integer) or action_dim <= 0:
        raise ValueError(f"action_dim: expected a positive int, got {action_dim!r}")
    if not (isinstance(control_hz, int | float) and math.isfinite(control_hz)) or not (
        control_hz > 0
    ):
        raise ValueError(f"control_hz: expected a positive number, got {control_hz!r}")
    for name, value in (("robot", robot), ("task", task)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: expected a non-empty str, got {value!r}")
    if units is not None and not (
        isinstance(units, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in units.items())
    ):
        raise ValueError(f"units: expected a dict of str -> str, got {units!r}")
    if chunk_steps is not None and (not isinstance(chunk_steps, int) or chunk_steps <= 0):
        raise ValueError(f"chunk_steps: expected a positive int or None, got {chunk_steps!r}")
    for s, keys in streams.items():
        if not isinstance(s, str) or not KEY_RE.match(s):
            raise ValueError(
                f"streams: name {s!r}: expected a name starting with a letter, made of "
                "letters, digits, '_', '.', '-'"
            )
        if not isinstance(keys, dict) or not keys:
            raise ValueError(
                f"streams[{s!r}]: expected a non-empty dict key -> (shape, dtype), got {keys!r}"
            )
        for key, entry in keys.items():
            _check_spec_entry(f"streams[{s!r}]", key, entry, RESERVED_STREAM_KEYS)
    if streams and not timestamps:
        raise ValueError(
            "timestamps=False with streams: streams are aligned to control rows by time, "
            "so control rows need timestamps (pass timestamps=True or leave it None)"
        )


def _check_spec_entry(where: str, key: Any, entry: Any, reserved: tuple[str, ...]) -> None:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(
            f"{where} key {key!r}: expected a name starting with a letter, made of "
            "letters, digits, '_', '.', '-'"
        )
    if key in reserved:
        raise ValueError(f"{where} key {key!r} is reserved for {list(reserved)}")
    try:
        shape, dtype = entry
        shape = tuple(int(s) for s in shape)
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{where}[{key!r}]: expected (per-step shape tuple, dtype str), got {entry!r} ({e})"
        ) from None
    if any(s <= 0 for s in shape):
        raise ValueError(f"{where}[{key!r}]: shape {shape} has a non-positive size")
    if dt.kind not in "fiub":
        raise ValueError(f"{where}[{key!r}]: dtype {dt} not supported (float, int, uint or bool)")
