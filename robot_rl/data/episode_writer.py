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
``begin_episode`` deletes (:func:`robot_rl.data.chunk_io.truncate_uncommitted`).

Validation (:mod:`robot_rl.data.row_checks`) happens before a block's first byte is
written, so a bad block raises ValueError and leaves the open episode's earlier rows, and
everything committed, as they were.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import zarr

from robot_rl.data.atomic_fs import fsync_path
from robot_rl.data.chunk_io import (
    digest_update,
    new_digest,
    set_rows,
    truncate_uncommitted,
    write_rows,
)
from robot_rl.data.provenance import REWARD_NONE, EpisodeProvenance
from robot_rl.data.row_checks import check_block, check_timestamps
from robot_rl.data.stats import Moments
from robot_rl.data.store_commit import CommittedStore
from robot_rl.data.store_layout import REQUIRED_FRAME_KEYS, TIMESTAMP_KEY

__all__ = [
    "TIMESTAMP_KEY",
    "EpisodeWriter",
    "check_frames",
    "check_stream_rows",
    "truncate_uncommitted",
    "write_rows",
]


def check_frames(
    store: CommittedStore, frames: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], int]:
    """Check and cast a block of control rows; raise ValueError before anything is
    written."""
    required = [k for k in (*store.obs_keys, *REQUIRED_FRAME_KEYS) if k in store._spec]
    if not store.has_rewards and isinstance(frames, dict) and "reward" in frames:
        raise ValueError(
            f"frames['reward']: {store.path} is a store without rewards (reward_source "
            f"{REWARD_NONE!r}); leave 'reward' out, or create the store with rewards"
        )
    if store.has_timestamps:
        required.append(TIMESTAMP_KEY)
    return check_block("frames", store._spec, required, frames, store.path)


def check_stream_rows(
    store: CommittedStore, name: str, rows: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], int]:
    """Check and cast a block of rows of stream ``name``; raise ValueError before anything
    is written."""
    if name not in store.stream_keys:
        raise ValueError(
            f"streams: unknown stream {name!r}; declared streams: {list(store.stream_keys)}"
        )
    spec = store._stream_specs[name]
    return check_block(f"streams[{name!r}]", spec, list(spec), rows, store.path)


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

    def __init__(self, store: CommittedStore):
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
        checked, n = check_frames(self._store, frames)
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
        checked, n = check_stream_rows(self._store, name, rows)
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
