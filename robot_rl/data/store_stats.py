"""Summaries of a store's committed content: per-key statistics and the content hash."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr

from robot_rl.data.stats import Moments
from robot_rl.data.store_layout import FORMAT, HASH_VERSION, STAT_FIELDS, row_bytes
from robot_rl.data.store_reading import StoreReading

# stats() takes q01/q99 from at most this many rows (a seeded uniform subsample of the
# committed rows beyond it), and holds at most _QUANTILE_MAX_ELEMS float64 values, so its
# memory is bounded whatever the store's size.
QUANTILE_MAX_ROWS = 200_000
_QUANTILE_MAX_ELEMS = 1 << 23
# Rows read per block when a statistic streams over a key's data.
_STATS_BLOCK_BYTES = 64 << 20


class StoreStats(StoreReading):
    """Statistics and the content hash of the committed rows (part of
    :class:`robot_rl.data.episode_store.EpisodeStore`)."""

    def stats(self, key: str) -> dict[str, Any]:
        """Per-dimension statistics of ``data/<key>`` over the committed rows.

        Mean, std (population), min and max are exact: they come from the per-episode
        moments persisted at commit (or, for keys too large to persist, one streaming pass
        over the data). q01 and q99 (linear interpolation, as ``np.quantile``) are exact
        when the store has at most ``QUANTILE_MAX_ROWS`` (200k) committed rows; above
        that they are the quantiles of a uniform subsample of that many rows, drawn
        without replacement with a fixed seed (deterministic for given committed rows),
        read chunk-wise. The rank error of such an estimate has standard deviation
        ``sqrt(p (1 - p) / m)`` for m rows: about 0.02 percentage points at p = 0.01 and
        m = 200k. Keys with many elements per step (images) use fewer rows, so that at
        most 2**23 values are held. Memory stays bounded for stores larger than RAM.

        Returns:
            dict with ``count`` (int) and ``mean``, ``std``, ``min``, ``max``, ``q01``,
            ``q99`` as float64 arrays of the key's per-step shape.
        """
        self._check_open()
        if key == "reward":
            self.require_rewards()
        if key not in (*self.obs_keys, "action", "reward"):
            raise KeyError(
                f"stats: key {key!r} has no statistics; use one of "
                f"{[*self.obs_keys, 'action', 'reward']}"
            )
        if self._n_steps == 0:
            raise ValueError(f"stats({key!r}): {self.path} has no committed steps")
        cache_key = ("stats", key, self._n_steps)
        if cache_key in self._cache:
            return self._cache[cache_key]
        if key in self._stats_arr:
            n = self._n_episodes
            rows = np.asarray(self._stats_arr[key][:n])
            counts = np.diff(self._ends, prepend=0)
            m = Moments.merge_rows(counts, *(rows[:, j] for j in range(len(STAT_FIELDS))))
        else:
            m = None
            for block in self._blocks(key):
                bm = Moments.from_rows(block)
                m = bm if m is None else m.merge(bm)
            assert m is not None
        q01, q99 = np.quantile(self._quantile_rows(key), [0.01, 0.99], axis=0)
        out = {
            "count": m.count,
            "mean": m.mean,
            "std": m.std,
            "min": m.min,
            "max": m.max,
            "q01": q01,
            "q99": q99,
        }
        self._cache[cache_key] = out
        return out

    def _block_rows(self, a: zarr.Array) -> int:
        row = row_bytes(tuple(a.shape[1:]), a.dtype)
        cs = int(a.chunks[0])
        return cs * max(1, _STATS_BLOCK_BYTES // (row * cs))

    def _blocks(self, key: str) -> Iterator[np.ndarray]:
        """The committed rows of ``data/<key>`` in blocks of whole chunks (bounded memory)."""
        a = self._data[key]
        step = self._block_rows(a)
        for lo in range(0, self._n_steps, step):
            yield np.asarray(a[lo : min(lo + step, self._n_steps)])

    def _quantile_rows(self, key: str) -> np.ndarray:
        """float64 rows of ``data/<key>`` for quantiles: all committed rows, or a seeded
        uniform subsample of at most QUANTILE_MAX_ROWS (see :meth:`stats`)."""
        a = self._data[key]
        n = self._n_steps
        shape = tuple(a.shape[1:])
        elems = max(1, int(np.prod(shape, dtype=np.int64)))
        m = min(n, QUANTILE_MAX_ROWS, max(1, _QUANTILE_MAX_ELEMS // elems))
        out = np.empty((m, *shape), dtype=np.float64)
        if m == n:
            lo = 0
            for block in self._blocks(key):
                out[lo : lo + len(block)] = block
                lo += len(block)
            return out
        rows = np.sort(np.random.default_rng(0).choice(n, size=m, replace=False))
        # Groups of rows within one block of chunks: each chunk is decoded once.
        step = self._block_rows(a)
        bounds = np.searchsorted(rows, np.arange(0, n + step, step))
        for g0, g1 in itertools.pairwise(bounds):
            if g1 > g0:
                out[g0:g1] = a.oindex[rows[g0:g1]]
        return out

    def content_hash(self) -> str:
        """SHA-256 (hex) of the committed content, for lineage.

        Covers the schema, every ``data/`` and ``streams/`` array's committed rows, the
        episode ends of the store and of each stream, the recorded provenance, and the
        human feedback that learning can see: each episode's latest success label and the
        preferences (episode pair and verdict). Who labelled and when is left out, so
        re-entering the same label keeps the hash; a changed label, or a new preference,
        changes it, since a model trained on the labels would change too.

        Reads every committed row, so it detects any change of a committed value, and
        depends only on the committed content (not on chunking, compression or an
        uncommitted tail), so it is stable across reopening, filters that keep
        everything, and merges of one store.
        """
        self._check_open()
        cache_key = ("hash", self._n_steps, self._n_episodes)
        if cache_key in self._cache:
            return self._cache[cache_key]
        h = hashlib.sha256()
        header = {
            "format": FORMAT,
            "hash_version": HASH_VERSION,
            "control_hz": self.control_hz,
            "robot": self.attrs.get("robot"),
            "task": self.attrs.get("task"),
            "obs_keys": self.obs_keys,
            "units": self.attrs.get("units", {}),
            "spec": {k: [list(s), str(d)] for k, (s, d) in self._spec.items()},
            "streams": {
                s: {k: [list(sh), str(d)] for k, (sh, d) in spec.items()}
                for s, spec in self._stream_specs.items()
            },
            "n_episodes": self._n_episodes,
            "n_steps": self._n_steps,
            "stream_rows": self._stream_rows,
        }
        h.update(json.dumps(header, sort_keys=True).encode())

        def hash_rows(name: str, a: zarr.Array, n: int) -> None:
            step = a.chunks[0] * max(1, 4096 // a.chunks[0])
            h.update(f"\0{name}\0".encode())
            for s in range(0, n, step):
                block = np.asarray(a[s : min(s + step, n)])
                h.update(np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).data)

        for key in sorted(self._data):
            hash_rows(f"data/{key}", self._data[key], self._n_steps)
        h.update(b"\0meta/episode_ends\0")
        h.update(np.ascontiguousarray(self._ends, dtype="<i8").data)
        h.update(b"\0meta/provenance\0")
        if self._n_episodes:
            for text in self._prov_arr[: self._n_episodes]:
                b = str(text).encode()
                h.update(len(b).to_bytes(8, "little") + b)
        for s in sorted(self._streams):
            for key in sorted(self._streams[s]):
                hash_rows(f"streams/{s}/{key}", self._streams[s][key], self._stream_rows[s])
            h.update(f"\0streams/{s}/episode_ends\0".encode())
            h.update(np.ascontiguousarray(self._stream_ends[s], dtype="<i8").data)
        h.update(b"\0labels\0")
        h.update(self._labels.hash_items(self.episode_ids()))
        digest = h.hexdigest()
        self._cache[cache_key] = digest
        return digest
