"""An uncompressed, memory-mapped copy of a store's committed rows, for out-of-core sampling.

Random batches read through zarr decode every compressed chunk a batch touches (about
1 MiB per row drawn), which is thousands of times slower than a gather from memory. The
out-of-core samplers instead decode the store once, chunk by chunk, into flat ``.npy``
files and gather from them with numpy fancy indexing on memory maps; the OS page cache,
however much RAM it is given, is then the cache in front of the disk.

Layout of one cache (a directory, one per store snapshot and observation selection)::

    <cache root>/<store id>-<selection id>-<snapshot id>/
      obs.npy          (S, obs_dim) float32: the observation keys flattened and
                       concatenated in ``obs_keys`` order
      action.npy       (S, action_dim) float32
      reward.npy       (S,) float32
      terminated.npy   (S,) bool
      manifest.json    what the cache was built from; written last

Disk cost: ``S * 4 * (obs_dim + action_dim + 1) + S`` bytes (:func:`cache_nbytes`), more
than the compressed store, and 4x the raw size of ``uint8`` keys such as images, which
are stored as float32 like the batches they feed.

The cache root is ``cache_dir`` if given, else ``$ROBOT_RL_CACHE_DIR/sampler``, else
``~/.cache/robot_rl/sampler``. The snapshot id covers the store's path, generation,
committed row and episode counts and episode ends, and the selection id the observation
keys and their shapes, so appending an episode, rewriting the store (purge, filter) or
choosing other keys builds a new cache; building one removes the older caches of the
same store and selection. A cache is built in a temporary sibling directory and renamed
into place only once complete and fsynced, so a crash or error mid-build never leaves a
partial cache that a later sampler would trust.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from robot_rl.data.atomic_fs import atomic_write_json, fsync_path
from robot_rl.data.episode_store import EpisodeStore

CACHE_DIR_ENV = "ROBOT_RL_CACHE_DIR"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
# float32 bytes decoded per block while building: bounds memory to a few blocks.
_BLOCK_BYTES = 16 << 20


@dataclass(frozen=True)
class RowCache:
    """Read-only memory maps of a store's committed rows (see the module docstring)."""

    path: Path | None  # None for an empty store (nothing to cache)
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray


def default_cache_root() -> Path:
    """``$ROBOT_RL_CACHE_DIR/sampler`` if that variable is set, else
    ``~/.cache/robot_rl/sampler``."""
    root = os.environ.get(CACHE_DIR_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "robot_rl") / "sampler"


def _obs_widths(store: EpisodeStore, obs_keys: list[str]) -> list[int]:
    return [int(np.prod(store.obs_spec[k][0], dtype=np.int64)) for k in obs_keys]


def cache_nbytes(store: EpisodeStore, obs_keys: list[str]) -> int:
    """Bytes on disk of the cache of ``store``'s committed rows with these obs keys."""
    floats_per_row = sum(_obs_widths(store, obs_keys)) + store.action_dim + 1
    return store.n_steps * (4 * floats_per_row + 1)


def _digest(doc: object, n: int) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:n]


def _identity(store: EpisodeStore, obs_keys: list[str]) -> tuple[str, dict]:
    """(directory name, identity document) of the cache of the store's committed rows."""
    path = str(store.path.resolve())
    generation = store.generation
    store_doc: dict = {"path": path, "generation": generation}
    if generation is None:
        # Stores older than format 3 have no generation: the commit document's change
        # time stands in for it (a rewrite replaces the file).
        st = (store.path / "commit.json").stat()
        store_doc["commit_mtime_ns"] = st.st_mtime_ns
    selection = {
        "format_version": _FORMAT_VERSION,
        "obs_keys": [[k, list(store.obs_spec[k][0])] for k in obs_keys],
        "action_dim": store.action_dim,
    }
    ends = np.ascontiguousarray(store.episode_ends, dtype=np.int64)
    snapshot = {
        "n_steps": store.n_steps,
        "n_episodes": store.n_episodes,
        "episode_ends_sha256": hashlib.sha256(ends.tobytes()).hexdigest(),
    }
    identity = {"store": store_doc, "selection": selection, "snapshot": snapshot}
    name = f"{_digest(store_doc, 16)}-{_digest(selection, 8)}-{_digest(snapshot, 16)}"
    return name, identity


def _expected_shapes(store: EpisodeStore, obs_keys: list[str]) -> dict[str, tuple]:
    n = store.n_steps
    return {
        "obs": ((n, sum(_obs_widths(store, obs_keys))), np.float32),
        "action": ((n, store.action_dim), np.float32),
        "reward": ((n,), np.float32),
        "terminated": ((n,), np.bool_),
    }


def _load(path: Path, identity: dict, shapes: dict[str, tuple]) -> RowCache | None:
    """The cache at ``path`` if it is complete and was built from ``identity``, else None."""
    try:
        manifest = json.loads((path / _MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("identity") != identity:
            return None
        arrays = {}
        for name, (shape, dtype) in shapes.items():
            a = np.load(path / f"{name}.npy", mmap_mode="r")
            if a.shape != shape or a.dtype != dtype:
                return None
            # A plain ndarray view of the map: fancy indexing skips memmap's subclass hooks.
            arrays[name] = np.asarray(a)
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return RowCache(path=path, **arrays)


def _copy_rows(
    arr: zarr.Array, n: int, write: Callable[[int, int, np.ndarray], None], width: int
) -> None:
    """Decode rows [0, n) of ``arr`` in chunk-aligned blocks and hand each to ``write``."""
    chunk = int(arr.chunks[0])
    per_block = max(1, _BLOCK_BYTES // (4 * max(width, 1)) // chunk) * chunk
    for r0 in range(0, n, per_block):
        r1 = min(n, r0 + per_block)
        write(r0, r1, np.asarray(arr[r0:r1]))


def _build(store: EpisodeStore, obs_keys: list[str], tmp: Path, shapes, identity) -> None:
    """Write every file of the cache into the (empty) directory ``tmp``, manifest last."""
    n = store.n_steps
    out = {
        name: np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
        for name, (shape, dtype) in shapes.items()
    }
    col = 0
    for key, width in zip(obs_keys, _obs_widths(store, obs_keys), strict=True):

        def put(r0: int, r1: int, x: np.ndarray, c: int = col, w: int = width) -> None:
            out["obs"][r0:r1, c : c + w] = x.reshape(r1 - r0, w)

        _copy_rows(store.zarr_array(key), n, put, width)
        col += width
    for name, width in (("action", store.action_dim), ("reward", 1), ("terminated", 1)):

        def put(r0: int, r1: int, x: np.ndarray, name: str = name) -> None:
            out[name][r0:r1] = x

        _copy_rows(store.zarr_array(name), n, put, width)
    for name, a in out.items():
        a.flush()
        del a
        fsync_path(tmp / f"{name}.npy")
    out.clear()
    atomic_write_json(tmp / _MANIFEST, {"identity": identity})


def _prune_older(root: Path, name: str) -> None:
    """Remove other snapshots' caches of the same store and selection (best effort)."""
    prefix = name.rsplit("-", 1)[0] + "-"
    for old in root.glob(prefix + "*"):
        if old.name != name and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)


def open_row_cache(
    store: EpisodeStore, obs_keys: list[str], cache_dir: str | os.PathLike[str] | None = None
) -> RowCache:
    """Open the cache of ``store``'s committed rows, building it first if there is none.

    Args:
        store: the episode store; its committed rows (at this call) are cached.
        obs_keys: observation keys of the flat obs, in order.
        cache_dir: the cache root (one subdirectory per store snapshot and selection);
            default :func:`default_cache_root`.

    Raises:
        OSError: the cache root is not a writable directory, or has too little free space
            for a cache that must be built.
    """
    shapes = _expected_shapes(store, obs_keys)
    if store.n_steps == 0:  # nothing to map (zero-length files cannot be mapped)
        return RowCache(None, **{k: np.zeros(s, d) for k, (s, d) in shapes.items()})
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    name, identity = _identity(store, obs_keys)
    final = root / name
    cache = _load(final, identity, shapes)
    if cache is not None:
        return cache

    nbytes = cache_nbytes(store, obs_keys)
    hint = (
        f"pass cache_dir= a writable directory with {nbytes / 1e9:.3g} GB free, or set "
        f"{CACHE_DIR_ENV}"
    )
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    except OSError as e:
        raise OSError(
            e.errno, f"sampler cache for {store.path}: cannot write in {root} ({e}); {hint}"
        ) from None
    try:
        free = shutil.disk_usage(root).free
        if free < nbytes:
            raise OSError(
                errno.ENOSPC,
                f"sampler cache for {store.path}: {root} has {free / 1e9:.3g} GB free, the "
                f"cache needs {nbytes / 1e9:.3g} GB; {hint}",
            )
        if final.exists():  # incomplete or stale under this name: replace it
            shutil.rmtree(final)
        _build(store, obs_keys, tmp, shapes, identity)
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            # Another process published the same cache first: use theirs.
        fsync_path(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cache = _load(final, identity, shapes)
    if cache is None:
        raise OSError(f"sampler cache {final}: unreadable right after it was built")
    _prune_older(root, name)
    return cache
