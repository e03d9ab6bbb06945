"""Rows into zarr chunks, durably: writing and fsyncing rows, per-episode digests, and
deleting what a crash or a discarded episode left past the committed rows."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from robot_rl.data.atomic_fs import fsync_path
from robot_rl.data.store_commit import CommittedStore

# Temporary files zarr's LocalStore (``<name>.<uuid32>.partial``) and the store's own
# documents (``.<name>.tmp-<pid>``) leave when a process dies mid-write.
_PARTIAL_RE = re.compile(r"^.+\.[0-9a-f]{32}\.partial$")
_TMP_DOC_RE = re.compile(r"^\..+\.tmp-\d+$")


def digest_update(h: Any, rows: np.ndarray) -> None:
    """Feed rows into a per-episode digest: C-order, little-endian bytes of the stored dtype.

    The digest of an episode's rows of a key depends only on their values, not on how
    they were split into blocks or chunks (the store's ``meta/digests``)."""
    x = np.ascontiguousarray(rows, dtype=rows.dtype.newbyteorder("<"))
    h.update(memoryview(x).cast("B"))


def new_digest() -> Any:
    """A fresh per-episode digest (SHA-256)."""
    return hashlib.sha256()


def set_rows(a: zarr.Array, n: int) -> None:
    """Set the array's length along axis 0 to ``n`` rows (metadata only).

    Shrinking skips zarr's search for chunks outside the new shape, which enumerates every
    chunk of the array (its cost would grow with the store); callers delete dead chunk
    files themselves (:func:`truncate_uncommitted`), or there are none (a trim of rows
    grown ahead but never written).
    """
    shape = (n, *a.shape[1:])
    if n >= a.shape[0]:
        a.resize(shape)
    else:
        sync(a.async_array.resize(shape, delete_outside_chunks=False))


def chunk_file(array_dir: Path, a: zarr.Array, c: int) -> Path:
    """Path of chunk ``c`` along axis 0 (the store's chunks span every other axis)."""
    return array_dir.joinpath("c", str(c), *(["0"] * (a.ndim - 1)))


def write_rows(
    store_dir: Path,
    name: str,
    a: zarr.Array,
    lo: int,
    rows: np.ndarray,
    dirs: set[Path],
    grow_rows: int = 0,
) -> None:
    """Write ``rows`` at row ``lo`` of array ``name`` (growing it) and fsync their chunks.

    When the array must grow, it grows by ``grow_rows`` more than needed, so a long
    episode rewrites the array metadata once per several chunks, not once per chunk
    (commit trims the shape to the committed rows). Directories that may have gained
    entries are added to ``dirs``; the caller fsyncs them (once each) before committing.
    """
    hi = lo + len(rows)
    if a.shape[0] < hi:
        set_rows(a, hi + grow_rows)
    a[lo:hi] = rows
    cs = a.chunks[0]
    array_dir = store_dir / name
    dirs.add(array_dir)
    for c in range(lo // cs, (hi - 1) // cs + 1):
        f = chunk_file(array_dir, a, c)
        fsync_path(f)
        d = f.parent
        while d != array_dir:
            dirs.add(d)
            d = d.parent


def truncate_uncommitted(store: CommittedStore) -> None:
    """Delete every row past the committed counts (a crashed or discarded episode).

    Whole chunks past the committed rows hold only uncommitted data, perhaps torn by the
    crash that left them; zarr's resize would delete only those inside the old shape, so
    they are deleted here, along with temporary files a killed write left behind.
    """
    for name, a, committed in store._all_arrays():
        array_dir = store.path / name
        for child in array_dir.iterdir() if array_dir.is_dir() else ():
            if _PARTIAL_RE.match(child.name):  # a killed metadata write
                child.unlink(missing_ok=True)
        if a.shape[0] <= committed:
            continue
        first_dead = math.ceil(committed / a.chunks[0])
        chunk_root = array_dir / "c"
        if chunk_root.is_dir():
            for child in chunk_root.iterdir():
                head = child.name.split(".", 1)[0]
                if _PARTIAL_RE.match(child.name) or (head.isdigit() and int(head) >= first_dead):
                    shutil.rmtree(child) if child.is_dir() else child.unlink(missing_ok=True)
                elif child.is_dir() and head.isdigit() and int(head) == first_dead - 1:
                    for f in child.rglob("*.partial"):
                        f.unlink(missing_ok=True)
        set_rows(a, committed)
    for child in store.path.iterdir():
        if _TMP_DOC_RE.match(child.name):
            child.unlink(missing_ok=True)
