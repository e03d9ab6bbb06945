"""Writing episodes into an episode store, incrementally and crash-safely.

:class:`EpisodeWriter` is the recorder's hot path: ``store.begin_episode()`` returns one,
``append`` takes blocks of control-rate rows and ``append_stream`` blocks of rows of a
declared stream, ``commit`` makes the episode visible, ``discard`` drops it.
``end_episode`` closes an episode without committing it, so that many commit together
(one write per array for all of them): what bulk rewrites of a store use, where no
reader waits for each one. Each array keeps at most one chunk of pending rows in memory
(the rows up to its next chunk boundary); a full chunk is written, fsynced, and
forgotten, so an episode of any length costs one chunk per array of memory and the disk
work is spread over the episode.

Commit order (see the store's module docstring for why): every remaining chunk, then the
per-episode ``meta/`` rows (episode end, provenance, statistics, stream episode ends),
each fsynced along with the array metadata and the directories that gained entries; only
then is ``commit.json`` replaced, and only then does the episode exist. A process killed
before that leaves rows past the committed counts, which readers ignore and the next
``begin_episode`` deletes (:func:`truncate_uncommitted`).

Validation (:func:`check_block`) happens before a block's first byte is written, so a bad
block raises ValueError and leaves the open episode's earlier rows, and everything
committed, as they were.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import zarr
from zarr.core.sync import sync

from robot_rl.data.atomic_fs import fsync_path
from robot_rl.data.stats import Moments

if TYPE_CHECKING:
    from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore

# Temporary files zarr's LocalStore (``<name>.<uuid32>.partial``) and the store's own
# documents (``.<name>.tmp-<pid>``) leave when a process dies mid-write.
_PARTIAL_RE = re.compile(r"^.+\.[0-9a-f]{32}\.partial$")
_TMP_DOC_RE = re.compile(r"^\..+\.tmp-\d+$")

Spec = dict[str, tuple[tuple[int, ...], np.dtype]]

# Key of the float64 seconds column of control rows (optional) and of every stream.
TIMESTAMP_KEY = "timestamp"


# ---------------------------------------------------------------------------- validation


def cast_values(what: str, key: str, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Check that ``x`` fits ``dtype`` (same kind, in range, finite floats) and cast it.

    Raises:
        ValueError: naming ``what[key]``, what was expected and what was given.
    """
    src = x.dtype
    ok = (
        src.kind == dtype.kind
        or (dtype.kind in "iu" and src.kind in "iu")
        or (dtype.kind == "b" and src.kind in "iu")
    )
    if not ok:
        raise ValueError(
            f"{what}[{key!r}]: expected dtype {dtype} (kind {dtype.kind!r}), got {src}"
        )
    if dtype.kind == "b":
        if src.kind != "b" and not np.isin(x, (0, 1)).all():
            raise ValueError(
                f"{what}[{key!r}]: expected bool (or 0/1) values, got {src} with other values"
            )
        return x.astype(bool)
    if dtype.kind in "iu" and x.size:
        info = np.iinfo(dtype)
        lo, hi = x.min(), x.max()
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"{what}[{key!r}]: values in [{lo}, {hi}] do not fit dtype {dtype} "
                f"([{info.min}, {info.max}])"
            )
    if dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            step = int(np.argwhere(~finite)[0][0])
            raise ValueError(f"{what}[{key!r}]: NaN or inf at step {step}; expected finite")
        with np.errstate(over="ignore"):
            y = x.astype(dtype)
        if not np.isfinite(y).all():
            raise ValueError(
                f"{what}[{key!r}]: values overflow {dtype} (max |x| = {np.abs(x).max()})"
            )
        return y
    return x.astype(dtype)


def check_block(
    what: str,
    spec: Spec,
    required: list[str],
    block: dict[str, np.ndarray],
    where: Path,
) -> tuple[dict[str, np.ndarray], int]:
    """Check and cast a block of rows against ``spec``; nothing is written.

    Keys of ``spec`` not in ``required`` are optional bool flags that default to all
    False. Every key needs the same number of rows T (T may be 0).

    Returns:
        (every key of ``spec`` -> rows cast to its dtype, T).

    Raises:
        ValueError: an unknown or missing key, a wrong shape or dtype, differing T,
            non-finite floats; the message names ``what[key]`` and ``where``.
    """
    if not isinstance(block, dict):
        raise ValueError(f"{what}: expected a dict key -> array, got {type(block).__name__}")
    unknown = sorted(set(block) - set(spec))
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; expected {list(spec)} ({where})")
    missing = [k for k in required if k not in block]
    if missing:
        raise ValueError(f"{what}: missing key(s) {missing}; every block needs {required}")
    n_rows: int | None = None
    first_key = ""
    out: dict[str, np.ndarray] = {}
    for key, (shape, dtype) in spec.items():
        if key not in block:
            continue
        x = np.asarray(block[key])
        if x.ndim != 1 + len(shape) or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{what}[{key!r}]: expected shape (T, {', '.join(map(str, shape))}) "
                f"(per-step shape {shape}), got {x.shape}".replace(", )", ")")
            )
        if n_rows is None:
            n_rows, first_key = x.shape[0], key
        elif x.shape[0] != n_rows:
            raise ValueError(
                f"{what}[{key!r}]: has {x.shape[0]} steps, but {what}[{first_key!r}] has "
                f"{n_rows}; every key needs the same T"
            )
        out[key] = cast_values(what, key, x, dtype)
    assert n_rows is not None  # required is never empty
    for key, (shape, dtype) in spec.items():
        if key not in out:
            out[key] = np.zeros((n_rows, *shape), dtype=dtype)
    return out, int(n_rows)


def check_timestamps(what: str, ts: np.ndarray, previous: float | None) -> None:
    """Raise ValueError unless ``ts`` is non-decreasing and starts at or after ``previous``."""
    if ts.size == 0:
        return
    bad = np.nonzero(np.diff(ts) < 0)[0]
    if bad.size:
        r = int(bad[0]) + 1
        raise ValueError(
            f"{what}['timestamp']: decreases at row {r} ({ts[r - 1]!r} -> {ts[r]!r}); "
            "timestamps must be non-decreasing"
        )
    if previous is not None and ts[0] < previous:
        raise ValueError(
            f"{what}['timestamp']: first value {ts[0]!r} is before the last appended "
            f"{previous!r}; timestamps must be non-decreasing across blocks"
        )


def digest_update(h: Any, rows: np.ndarray) -> None:
    """Feed rows into a per-episode digest: C-order, little-endian bytes of the stored dtype.

    The digest of an episode's rows of a key depends only on their values, not on how
    they were split into blocks or chunks (the store's ``meta/digests``)."""
    x = np.ascontiguousarray(rows, dtype=rows.dtype.newbyteorder("<"))
    h.update(memoryview(x).cast("B"))


def new_digest() -> Any:
    """A fresh per-episode digest (SHA-256)."""
    return hashlib.sha256()


# ---------------------------------------------------------------------------- durable writes


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


# Chunks an array grows by beyond what a write needs (see write_rows).
_GROW_CHUNKS = 8


class _ArrayTail:
    """Rows of one array not yet written: at most those up to its next chunk boundary."""

    def __init__(self, store_dir: Path, name: str, a: zarr.Array, start_row: int):
        self.store_dir, self.name, self.a = store_dir, name, a
        self.cs = int(a.chunks[0])
        self.grow = _GROW_CHUNKS * self.cs
        self.start = start_row  # global row of the first pending row
        self.fill = 0
        self.buf: np.ndarray | None = None

    def add(self, rows: np.ndarray, dirs: set[Path]) -> None:
        i, n = 0, len(rows)
        while i < n:
            cap = self.cs - self.start % self.cs  # rows up to the next chunk boundary
            if self.fill == 0 and n - i >= cap:
                # Whole chunks straight from the block, no copy.
                k = cap + (n - i - cap) // self.cs * self.cs
                block = rows[i : i + k]
                write_rows(self.store_dir, self.name, self.a, self.start, block, dirs, self.grow)
                self.start += k
                i += k
                continue
            if self.buf is None:
                self.buf = np.empty((self.cs, *self.a.shape[1:]), dtype=self.a.dtype)
            take = min(cap - self.fill, n - i)
            self.buf[self.fill : self.fill + take] = rows[i : i + take]
            self.fill += take
            i += take
            if self.fill == cap:
                self.flush(dirs)

    def flush(self, dirs: set[Path]) -> None:
        if self.fill:
            assert self.buf is not None
            rows = self.buf[: self.fill]
            write_rows(self.store_dir, self.name, self.a, self.start, rows, dirs, self.grow)
            self.start += self.fill
            self.fill = 0


def truncate_uncommitted(store: EpisodeStore) -> None:
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


# ---------------------------------------------------------------------------- the writer


class _StagedEpisode(NamedTuple):
    """An ended episode's ``meta/`` rows, held until the writer commits."""

    end: int
    stream_ends: dict[str, int]
    provenance: EpisodeProvenance
    digest_doc: str | None
    stats: dict[str, np.ndarray]


class EpisodeWriter:
    """One episode being written; get it from :meth:`EpisodeStore.begin_episode`.

    Rows become visible to readers only at :meth:`commit`. A writer (like its store) is
    not thread-safe: drive it from one thread, e.g. the recorder's writer thread. Use as
    a context manager to discard the episode when the block is left without a commit
    (an exception included)::

        with store.begin_episode() as writer:
            for block in blocks:
                writer.append(block)
            writer.commit(provenance)
    """

    def __init__(self, store: EpisodeStore):
        self._store = store
        self._dirs: set[Path] = set()
        self._closed = False
        n0 = store.n_steps
        self._data_tails = {
            k: _ArrayTail(store.path, f"data/{k}", a, n0) for k, a in store._data.items()
        }
        self._stream_tails = {
            s: {
                k: _ArrayTail(store.path, f"streams/{s}/{k}", a, store._stream_rows[s])
                for k, a in arrays.items()
            }
            for s, arrays in store._streams.items()
        }
        # Episodes ended (end_episode) but not yet committed, and their rows.
        self._staged: list[_StagedEpisode] = []
        self._staged_ids: set[str] = set()
        self._staged_rows = 0
        self._staged_stream_rows: dict[str, int] = dict.fromkeys(store._streams, 0)
        self._start_episode()

    def _start_episode(self) -> None:
        """Per-episode state: row counts, timestamps, statistics and digests."""
        store = self._store
        self._n_rows = 0
        self._stream_n: dict[str, int] = dict.fromkeys(store._streams, 0)
        self._last_ts: float | None = None
        self._stream_last_ts: dict[str, float | None] = dict.fromkeys(store._streams)
        self._moments: dict[str, Moments | None] = dict.fromkeys(store._stats_arr)
        # Per-episode digests of every data and stream key (stores of format version 3 on).
        self._digests: dict[str, Any] | None = None
        if store._digest_arr is not None:
            names = [f"data/{k}" for k in store._data]
            names += [f"streams/{s}/{k}" for s, arrays in store._streams.items() for k in arrays]
            self._digests = {name: new_digest() for name in names}

    # ------------------------------------------------------------------ state

    @property
    def n_rows(self) -> int:
        """Control-rate rows appended so far."""
        return self._n_rows

    def n_stream_rows(self, name: str) -> int:
        """Rows of stream ``name`` appended so far."""
        self._store._check_stream(name)
        return self._stream_n[name]

    @property
    def closed(self) -> bool:
        """True once committed or discarded."""
        return self._closed

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"{self._store.path}: this episode writer is closed (committed or discarded); "
                "call store.begin_episode() for the next episode"
            )

    # ------------------------------------------------------------------ appending

    def append(self, frames: dict[str, np.ndarray]) -> None:
        """Append a block of control-rate rows (T >= 0).

        Args:
            frames: the same keys as :meth:`EpisodeStore.append_episode` takes, each with
                T rows; ``timestamp`` (float64 s, non-decreasing) when the store has
                control-row timestamps.

        Raises:
            ValueError: a malformed block; nothing of it is written, and the episode's
                earlier rows stay.
        """
        self._check_usable()
        checked, n = self._store._check_frames(frames)
        if "timestamp" in checked:
            check_timestamps("frames", checked["timestamp"], self._last_ts)
        self._write_frames(checked, n)

    def _write_frames(self, checked: dict[str, np.ndarray], n: int) -> None:
        if n == 0:
            return
        for key in self._moments:
            m = Moments.from_rows(checked[key])
            prev = self._moments[key]
            self._moments[key] = m if prev is None else prev.merge(m)
        try:
            for key, tail in self._data_tails.items():
                tail.add(checked[key], self._dirs)
                if self._digests is not None:
                    digest_update(self._digests[f"data/{key}"], checked[key])
        except BaseException:
            # Arrays now disagree on this episode's length: it cannot be committed.
            self.discard()
            raise
        self._n_rows += n
        if "timestamp" in checked:
            self._last_ts = float(checked["timestamp"][-1])

    def append_stream(self, name: str, rows: dict[str, np.ndarray]) -> None:
        """Append a block of rows of the declared stream ``name`` (T >= 0).

        Args:
            name: a stream declared at :meth:`EpisodeStore.create`.
            rows: every key of the stream plus ``timestamp`` (float64 seconds on the same
                clock as the control rows' timestamps, non-decreasing).

        Raises:
            ValueError: an unknown stream or a malformed block; nothing of it is written.
        """
        self._check_usable()
        checked, n = self._store._check_stream_rows(name, rows)
        check_timestamps(f"streams[{name!r}]", checked["timestamp"], self._stream_last_ts[name])
        self._write_stream(name, checked, n)

    def _write_stream(self, name: str, checked: dict[str, np.ndarray], n: int) -> None:
        if n == 0:
            return
        try:
            for key, tail in self._stream_tails[name].items():
                tail.add(checked[key], self._dirs)
                if self._digests is not None:
                    digest_update(self._digests[f"streams/{name}/{key}"], checked[key])
        except BaseException:
            self.discard()
            raise
        self._stream_n[name] += n
        self._stream_last_ts[name] = float(checked["timestamp"][-1])

    # ------------------------------------------------------------------ ending

    @property
    def n_ended(self) -> int:
        """Episodes ended with :meth:`end_episode` and not yet committed."""
        return len(self._staged)

    def end_episode(self, provenance: EpisodeProvenance) -> None:
        """End the current episode without committing it; the writer goes on with a new
        one. Ended episodes commit with the next :meth:`commit`, all at once: one write
        per array and one set of fsyncs for all of them instead of one per episode, which
        is what bulk rewrites of a store use. Until then none of them is visible, and a
        crash or :meth:`discard` drops them all.

        Raises:
            ValueError: as :meth:`commit`; nothing changes, so fix it and end again.
        """
        self._check_usable()
        self._stage(provenance)

    def _stage(self, provenance: EpisodeProvenance) -> None:
        from robot_rl.data.episode_store import EpisodeProvenance

        if not isinstance(provenance, EpisodeProvenance):
            raise ValueError(
                f"provenance: expected an EpisodeProvenance, got {type(provenance).__name__}"
            )
        provenance.check()
        store = self._store
        store._check_new_episode_id(provenance.episode_id)
        if provenance.episode_id in self._staged_ids:
            raise ValueError(
                f"provenance.episode_id {provenance.episode_id!r} is already used by an "
                "episode ended earlier in this writer; every episode needs its own id"
            )
        if self._n_rows == 0:
            raise ValueError(
                f"{store.path}: the episode has 0 control rows; append at least one "
                "before commit (or discard it)"
            )
        digest_doc = None
        if self._digests is not None and store._digest_arr is not None:
            digest_doc = json.dumps(
                {name: h.hexdigest() for name, h in self._digests.items()}, sort_keys=True
            )
        stats = {}
        for key, m in self._moments.items():
            assert m is not None
            stats[key] = np.stack([m.mean, m.m2, m.min, m.max])
        self._staged_rows += self._n_rows
        for s, n in self._stream_n.items():
            self._staged_stream_rows[s] += n
        stream_ends = {s: store._stream_rows[s] + n for s, n in self._staged_stream_rows.items()}
        self._staged_ids.add(provenance.episode_id)
        self._staged.append(
            _StagedEpisode(
                end=store.n_steps + self._staged_rows,
                stream_ends=stream_ends,
                provenance=provenance,
                digest_doc=digest_doc,
                stats=stats,
            )
        )
        self._start_episode()

    def commit(self, provenance: EpisodeProvenance) -> int:
        """Write what is pending, make it durable, and commit the episode (and any
        ended with :meth:`end_episode` before it, in order).

        Args:
            provenance: where the episode came from.

        Returns:
            The new episode's index (the last one's, with ended episodes before it).

        Raises:
            ValueError: malformed provenance, or no rows; the writer stays open, so fix
                and commit again, or discard.
            OSError: a failed write; the episode is discarded.
        """
        self._check_usable()
        self._stage(provenance)
        store = self._store
        staged = self._staged
        try:
            tails = [*self._data_tails.values()]
            tails += [t for ts in self._stream_tails.values() for t in ts.values()]
            for tail in tails:
                tail.flush(self._dirs)
                if tail.a.shape[0] != tail.start:  # trim what write_rows grew ahead
                    set_rows(tail.a, tail.start)
            e0 = store.n_episodes
            strings = np.dtypes.StringDType()
            meta_rows: list[tuple[str, zarr.Array, np.ndarray]] = [
                ("meta/episode_ends", store._ends_arr, np.array([e.end for e in staged])),
                (
                    "meta/provenance",
                    store._prov_arr,
                    np.array([e.provenance.to_json() for e in staged], dtype=strings),
                ),
            ]
            if store._digest_arr is not None and staged[0].digest_doc is not None:
                docs = np.array([e.digest_doc for e in staged], dtype=strings)
                meta_rows.append(("meta/digests", store._digest_arr, docs))
            for key, a in store._stats_arr.items():
                rows = np.stack([e.stats[key] for e in staged])
                meta_rows.append((f"meta/stats/{key}", a, rows))
            for s, a in store._stream_ends_arr.items():
                ends = np.array([e.stream_ends[s] for e in staged])
                meta_rows.append((f"streams/{s}/episode_ends", a, ends))
            for name, a, rows in meta_rows:
                write_rows(store.path, name, a, e0, rows, self._dirs)
            # Array metadata (the grown shapes) and new directory entries, deepest first.
            for name, _, _ in store._all_arrays():
                fsync_path(store.path / name / "zarr.json")
            for d in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
                if d.is_dir():
                    fsync_path(d)
            # Only now, with every chunk durable, do the episodes exist.
            store._commit(
                [e.end for e in staged],
                {s: [e.stream_ends[s] for e in staged] for s in store._stream_ends_arr},
                [e.provenance for e in staged],
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.discard()
            raise
        self._close()
        return e0 + len(staged) - 1

    def discard(self) -> None:
        """Drop the episode: nothing becomes visible and its rows are deleted from disk."""
        if self._closed:
            return
        self._close()
        truncate_uncommitted(self._store)

    def _close(self) -> None:
        self._closed = True
        self._data_tails.clear()
        self._stream_tails.clear()
        if self._store._writer is self:
            self._store._writer = None

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.discard()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"EpisodeWriter({str(self._store.path)!r}, n_rows={self._n_rows}, {state})"
