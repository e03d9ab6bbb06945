"""Export an episode store to zarr format 2, in Diffusion Policy's replay-buffer layout.

Diffusion Policy (and other tools) pin zarr-python 2.x, which cannot read the v3 format.
The export holds only committed episodes and uses codecs zarr 2 knows (numcodecs Blosc;
no crc32c, which zarr 2 lacks: the export carries no per-chunk checksum, and its root
attribute ``source_content_hash`` names the store it came from)::

    <out>/
      .zgroup, .zattrs           attributes: format "robot_rl.episode_store.zarr2",
                                 source_content_hash, control_hz, robot, task, obs_keys,
                                 units, stream_keys, preferences (list of objects)
      data/<key>                 every data/ array of the store, exactly n_steps rows
      meta/episode_ends          int64, cumulative (what ReplayBuffer reads)
      meta/provenance            vlen-utf8 JSON per episode; success is the latest label
      streams/<name>/<key>, streams/<name>/timestamp, streams/<name>/episode_ends

Read it with zarr 2: ``zarr.open(path, "r")["data/action"][:]``, or with zarr 3:
``zarr.open_group(path, mode="r", zarr_format=2)``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Blosc

from robot_rl.data.atomic_fs import fsync_tree, publish_dir, remove_tree
from robot_rl.data.episode_store import EpisodeStore

EXPORT_FORMAT = "robot_rl.episode_store.zarr2"
_FAST_CODEC_MIN_ROW_BYTES = 16 << 10


def _blosc(dtype: np.dtype, row_bytes: int) -> Blosc:
    if row_bytes >= _FAST_CODEC_MIN_ROW_BYTES:
        return Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE)
    shuffle = Blosc.BITSHUFFLE if dtype.itemsize == 1 else Blosc.SHUFFLE
    return Blosc(cname="zstd", clevel=3, shuffle=shuffle)


def _copy_array(root: Any, name: str, src: zarr.Array, n_rows: int) -> None:
    shape = tuple(src.shape[1:])
    row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * src.dtype.itemsize)
    cs = int(src.chunks[0])
    out = root.create_array(
        name,
        shape=(n_rows, *shape),
        chunks=(cs, *shape),
        dtype=src.dtype,
        compressors=_blosc(src.dtype, row_bytes),
        fill_value=0,
    )
    # Whole chunks at a time, about 64 MiB per block.
    step = cs * max(1, (64 << 20) // (row_bytes * cs))
    for lo in range(0, n_rows, step):
        hi = min(lo + step, n_rows)
        out[lo:hi] = np.asarray(src[lo:hi])


def _write_small(root: Any, name: str, values: np.ndarray) -> None:
    out = root.create_array(
        name,
        shape=values.shape,
        chunks=(max(1, min(len(values), 1 << 16)),),
        dtype=values.dtype,
        compressors=_blosc(values.dtype, 0),
        fill_value=0,
    )
    if len(values):
        out[:] = values


def export_zarr2(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Write the committed content of the store at ``src`` to a zarr-2 group at ``dst``.

    The output is built in a hidden sibling directory and renamed to ``dst`` once
    complete, so ``dst`` never holds a partial export.

    Args:
        src: episode store (opened read-only).
        dst: output path; must not exist (or be an empty directory).

    Returns:
        ``dst``.
    """
    dst = Path(dst)
    if dst.exists() and not (dst.is_dir() and not any(dst.iterdir())):
        raise FileExistsError(f"{dst} already exists; choose a new output path")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"{dst.parent}: output directory does not exist")
    with EpisodeStore.open(src) as store:
        tmp = dst.with_name(f".{dst.name}.convert-{uuid.uuid4().hex[:12]}")
        try:
            root = zarr.open_group(str(tmp), mode="w-", zarr_format=2)
            root.attrs.update(
                {
                    "format": EXPORT_FORMAT,
                    "source_content_hash": store.content_hash(),
                    "control_hz": store.control_hz,
                    "robot": store.attrs.get("robot"),
                    "task": store.attrs.get("task"),
                    "obs_keys": store.obs_keys,
                    "units": store.attrs.get("units") or {},
                    "stream_keys": store.stream_keys,
                    "preferences": [asdict(p) for p in store.preferences()],
                }
            )
            for key in store.data_keys:
                _copy_array(root, f"data/{key}", store.zarr_array(key), store.n_steps)
            _write_small(root, "meta/episode_ends", np.asarray(store.episode_ends, np.int64))
            prov = root.create_array(
                "meta/provenance",
                shape=(store.n_episodes,),
                chunks=(max(1, min(store.n_episodes, 4096)),),
                dtype=str,
            )
            if store.n_episodes:
                prov[:] = np.array(
                    [store.provenance(i).to_json() for i in range(store.n_episodes)], dtype=object
                )
            for s in store.stream_names:
                for key in store._streams[s]:
                    _copy_array(
                        root,
                        f"streams/{s}/{key}",
                        store.stream_zarr_array(s, key),
                        store.n_stream_rows(s),
                    )
                _write_small(
                    root,
                    f"streams/{s}/episode_ends",
                    np.asarray(store._stream_ends[s], np.int64),
                )
            fsync_tree(tmp)
            publish_dir(tmp, dst)
        except BaseException:
            remove_tree(tmp)
            raise
    return dst
