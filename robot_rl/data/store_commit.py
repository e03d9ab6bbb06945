"""The commit record: what a store has committed, and how an episode joins it.

Zarr appends write array metadata (the new shape) before the chunks, so a grown
``episode_ends`` says nothing about whether an episode's chunks are all on disk. An episode
exists only once ``commit.json``, written after every chunk of the episode has been
written and fsynced, counts it; it is replaced atomically (temporary file in the same
directory, fsync, ``os.replace``, fsync of the directory). Readers use only the first
``n_steps`` rows and ``n_episodes`` episodes (and each stream's committed rows), so arrays
left longer by a crash are ignored, and the next ``begin_episode`` deletes that
uncommitted tail before writing. Episodes are written incrementally through
:class:`robot_rl.data.episode_writer.EpisodeWriter`, which ends in :meth:`CommittedStore._commit`.

:class:`CommittedStore` is the base of :class:`robot_rl.data.episode_store.EpisodeStore`: it
opens the arrays at the commit, holds the committed counts and episode ends, the label log
and the writer lock. Reading, streams, labels and statistics build on it in their own
modules; the writer and the validator use it directly, so they never import the store
class above them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
import zarr

from robot_rl.data.atomic_fs import atomic_write_json
from robot_rl.data.labels import LabelLog, read_label_log
from robot_rl.data.provenance import (
    REWARD_NONE,
    REWARD_RECORDED,
    EpisodeProvenance,
    check_reward_source,
)
from robot_rl.data.store_guard import CheckedLocalStore
from robot_rl.data.store_layout import (
    COMMIT_FILE,
    DIGESTS_ARRAY,
    FORMAT_VERSION,
    OPTIONAL_FLAG_KEYS,
    REQUIRED_FRAME_KEYS,
    TIMESTAMP_KEY,
    Spec,
    StoreFormatError,
    StoreRewrittenError,
    commit_doc,
    frame_spec,
    no_rewards_error,
    stream_spec,
)


class CommittedStore:
    """A store directory opened at its commit record; see the module docstring.

    Not made directly: :class:`robot_rl.data.episode_store.EpisodeStore` (``create``,
    ``open``) is the store users open.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str, _lock_fd: int | None = None):
        # Use create/open; this constructor expects an existing, committed store.
        self.path = Path(path)
        self.mode = mode
        self._lock_fd = _lock_fd
        self._closed = False
        # The open robot_rl.data.episode_writer.EpisodeWriter, if any.
        self._writer: Any = None
        self._zstore = CheckedLocalStore(self.path, read_only=(mode == "r"))
        root = zarr.open_group(store=self._zstore, mode="r")
        self.attrs: dict[str, Any] = dict(root.attrs)
        version = self.attrs.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StoreFormatError(
                f"{self.path}: format_version {version!r} is not supported by this code "
                f"(it reads up to {FORMAT_VERSION}); upgrade robot_rl"
            )
        self.obs_keys: list[str] = list(self.attrs["obs_keys"])
        self.control_hz: float = float(self.attrs["control_hz"])
        self.has_timestamps: bool = bool(self.attrs.get("timestamps", False))
        try:
            self.reward_source: str = check_reward_source(
                self.attrs.get("reward_source", REWARD_RECORDED), "reward_source"
            )
        except ValueError as e:
            raise StoreFormatError(f"{self.path}/zarr.json: attribute {e}") from None
        if not self.has_rewards and (self.path / "data" / "reward").exists():
            raise StoreFormatError(
                f"{self.path}: attribute reward_source is {REWARD_NONE!r} but data/reward "
                "exists; the store's metadata contradicts itself"
            )
        self.stream_keys: dict[str, list[str]] = {
            s: list(keys) for s, keys in (self.attrs.get("stream_keys") or {}).items()
        }
        self._cache: dict[Any, Any] = {}
        self._load_commit()
        self.obs_spec: Spec = {
            k: (tuple(self._data[k].shape[1:]), str(self._data[k].dtype)) for k in self.obs_keys
        }
        self.action_dim: int = int(self._data["action"].shape[1])
        self._spec = frame_spec(
            self.obs_spec, self.action_dim, self.has_timestamps, self.has_rewards
        )
        self.stream_spec: dict[str, Spec] = {
            s: {k: (tuple(arrs[k].shape[1:]), str(arrs[k].dtype)) for k in self.stream_keys[s]}
            for s, arrs in self._streams.items()
        }
        self._stream_specs = {s: stream_spec(spec) for s, spec in self.stream_spec.items()}

    def _open_arrays(self) -> None:
        mode = "r" if self.mode == "r" else "r+"

        def arr(name: str) -> zarr.Array:
            try:
                a = zarr.open_array(store=self._zstore, path=name, mode=mode)
            except (FileNotFoundError, KeyError, ValueError) as e:
                raise StoreFormatError(f"{self.path}: array {name} is missing ({e})") from None
            # Chunks holding only the fill value are still written, so that validate()
            # can tell a deleted chunk file from a chunk of zeros.
            return a.with_config({"write_empty_chunks": True})

        keys = [*self.obs_keys, *REQUIRED_FRAME_KEYS, *OPTIONAL_FLAG_KEYS]
        if not self.has_rewards:
            keys.remove("reward")
        if self.has_timestamps:
            keys.append(TIMESTAMP_KEY)
        self._data: dict[str, zarr.Array] = {k: arr(f"data/{k}") for k in keys}
        self._ends_arr = arr("meta/episode_ends")
        self._prov_arr = arr("meta/provenance")
        # Format version 3 on; older stores have no digests.
        self._digest_arr: zarr.Array | None = (
            arr(DIGESTS_ARRAY) if (self.path / DIGESTS_ARRAY / "zarr.json").is_file() else None
        )
        self._stats_arr: dict[str, zarr.Array] = {}
        stats_dir = self.path / "meta" / "stats"
        for key in [*self.obs_keys, "action", "reward"]:
            if (stats_dir / key).is_dir():
                self._stats_arr[key] = arr(f"meta/stats/{key}")
        self._streams: dict[str, dict[str, zarr.Array]] = {
            s: {k: arr(f"streams/{s}/{k}") for k in (TIMESTAMP_KEY, *keys)}
            for s, keys in self.stream_keys.items()
        }
        self._stream_ends_arr: dict[str, zarr.Array] = {
            s: arr(f"streams/{s}/episode_ends") for s in self.stream_keys
        }

    def _all_arrays(self) -> Iterator[tuple[str, zarr.Array, int]]:
        """Every row-appended array: (name, array, committed rows)."""
        n_ep = self._n_episodes
        for k, a in self._data.items():
            yield f"data/{k}", a, self._n_steps
        yield "meta/episode_ends", self._ends_arr, n_ep
        yield "meta/provenance", self._prov_arr, n_ep
        if self._digest_arr is not None:
            yield DIGESTS_ARRAY, self._digest_arr, n_ep
        for k, a in self._stats_arr.items():
            yield f"meta/stats/{k}", a, n_ep
        for s, arrays in self._streams.items():
            for k, a in arrays.items():
                yield f"streams/{s}/{k}", a, self._stream_rows[s]
            yield f"streams/{s}/episode_ends", self._stream_ends_arr[s], n_ep

    def _load_commit(self) -> None:
        # Commit document first, arrays second: array metadata is written before the
        # chunks and the commit after them, so arrays opened now cover every committed
        # row. Opening the arrays first could see shapes older than the commit.
        try:
            doc = json.loads((self.path / COMMIT_FILE).read_text(encoding="utf-8"))
            n_ep, n_steps = int(doc["n_episodes"]), int(doc["n_steps"])
            stream_rows = {s: int(n) for s, n in (doc.get("stream_rows") or {}).items()}
            generation = doc.get("generation")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise StoreFormatError(f"{self.path}/{COMMIT_FILE}: unreadable ({e})") from None
        if getattr(self, "_generation", None) is not None and generation != self._generation:
            raise StoreRewrittenError(
                f"{self.path}: store was rewritten (purged) since it was opened; reopen it"
            )
        self._generation: str | None = None if generation is None else str(generation)
        self._zstore.generation = self._generation
        if set(stream_rows) != set(self.stream_keys):
            raise StoreFormatError(
                f"{self.path}/{COMMIT_FILE}: stream_rows covers {sorted(stream_rows)} but the "
                f"store declares streams {sorted(self.stream_keys)}"
            )
        self._open_arrays()
        ends = self._read_ends("meta/episode_ends", self._ends_arr, n_ep)
        if len(ends) != n_ep or (n_ep and int(ends[-1]) != n_steps) or (not n_ep and n_steps):
            raise StoreFormatError(
                f"{self.path}: {COMMIT_FILE} says {n_ep} episodes / {n_steps} steps but "
                f"meta/episode_ends has {len(ends)} committed entries ending at "
                f"{int(ends[-1]) if len(ends) else 0}"
            )
        stream_ends = {}
        for s, a in self._stream_ends_arr.items():
            e = self._read_ends(f"streams/{s}/episode_ends", a, n_ep)
            last = int(e[-1]) if len(e) else 0
            if len(e) != n_ep or last != stream_rows[s]:
                raise StoreFormatError(
                    f"{self.path}: {COMMIT_FILE} says stream {s!r} has {stream_rows[s]} rows "
                    f"in {n_ep} episodes but streams/{s}/episode_ends has {len(e)} committed "
                    f"entries ending at {last}"
                )
            e.setflags(write=False)
            stream_ends[s] = e
        expected_rows = [(f"data/{k}", a, n_steps) for k, a in self._data.items()]
        expected_rows.append(("meta/provenance", self._prov_arr, n_ep))
        if self._digest_arr is not None:
            expected_rows.append((DIGESTS_ARRAY, self._digest_arr, n_ep))
        expected_rows += [(f"meta/stats/{k}", a, n_ep) for k, a in self._stats_arr.items()]
        for s, arrays in self._streams.items():
            expected_rows += [(f"streams/{s}/{k}", a, stream_rows[s]) for k, a in arrays.items()]
        for name, a, n in expected_rows:
            if a.shape[0] < n:
                raise StoreFormatError(
                    f"{self.path}: {name} has {a.shape[0]} rows, fewer than the {n} committed"
                )
        # A damaged labels.json leaves the data readable: validate() reports it, and
        # labelling is refused until it is repaired (a rewrite would drop the old log).
        self._labels_error: str | None = None
        try:
            labels = read_label_log(self.path)
        except ValueError as e:
            labels, self._labels_error = LabelLog(), str(e)
        self._n_episodes = n_ep
        self._n_steps = n_steps
        self._ends = ends
        self._ends.setflags(write=False)
        self._stream_rows = stream_rows
        self._stream_ends = stream_ends
        self._labels = labels
        self._ids: dict[str, int] | None = None
        self._cache.clear()
        self._sync_committed()

    def _sync_committed(self) -> None:
        # What CheckedLocalStore needs to tell a missing committed chunk from an unwritten one.
        self._zstore.committed = {name: (n, int(a.chunks[0])) for name, a, n in self._all_arrays()}

    def _read_ends(self, name: str, a: zarr.Array, n: int) -> np.ndarray:
        try:
            return np.asarray(a[:n], dtype=np.int64)
        except Exception as e:  # a failed checksum surfaces as ValueError, I/O as OSError
            raise StoreFormatError(
                f"{self.path}: {name} unreadable ({type(e).__name__}: {e}); "
                "without it no episode can be located"
            ) from None

    def refresh(self) -> None:
        """Pick up episodes and labels committed by a writer since this store was opened."""
        self._check_open()
        if self._writer is not None:
            raise RuntimeError(f"{self.path}: cannot refresh while an episode is being written")
        self._load_commit()

    def close(self) -> None:
        """Discard an open episode writer, release the writer lock (mode ``"a"``); the
        object is unusable afterwards."""
        if self._closed:
            return
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.discard()
        self._closed = True
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, mode={self.mode!r}, "
            f"n_episodes={self._n_episodes}, n_steps={self._n_steps})"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: episode store is closed")

    def _check_writable(self, what: str = "append") -> None:
        self._check_open()
        if self.mode != "a":
            raise RuntimeError(f"{self.path}: opened read-only; open with mode='a' to {what}")

    # ------------------------------------------------------------------ committed counts

    @property
    def n_episodes(self) -> int:
        """Number of committed episodes."""
        return self._n_episodes

    @property
    def n_steps(self) -> int:
        """Number of committed control-rate rows."""
        return self._n_steps

    @property
    def episode_ends(self) -> np.ndarray:
        """Cumulative end row of each committed episode (int64, read-only)."""
        return self._ends

    @property
    def generation(self) -> str | None:
        """The store directory's generation (hex UUID, new for every created or rewritten
        store; None for stores older than format 3). With ``n_steps`` it names the
        committed content: appends only add rows, and a rewrite gets a new generation."""
        return self._generation

    @property
    def has_rewards(self) -> bool:
        """False for a store without rewards (``reward_source`` ``"none"``: no
        ``data/reward``)."""
        return self.reward_source != REWARD_NONE

    def require_rewards(self) -> None:
        """Raise :class:`NoRewardsError` (saying to run ``robot-rl-data relabel``) if the
        store has no rewards; for code that trains on rewards."""
        if not self.has_rewards:
            raise no_rewards_error(self.path)

    @property
    def data_keys(self) -> list[str]:
        """Keys of the ``data/`` arrays: observation keys first, then the frame keys."""
        return list(self._data)

    def episode_bounds(self, i: int) -> tuple[int, int]:
        """Row range ``[start, end)`` of committed episode ``i`` (negative counts back)."""
        i = self._episode_index(i)
        start = int(self._ends[i - 1]) if i > 0 else 0
        return start, int(self._ends[i])

    def _episode_index(self, i: int) -> int:
        n = self._n_episodes
        if not isinstance(i, int | np.integer) or isinstance(i, bool) or not -n <= i < n:
            raise IndexError(
                f"episode index {i!r} out of range: {self.path} has {n} committed episode(s)"
            )
        return int(i) % n

    def _check_new_episode_id(self, episode_id: str) -> None:
        if episode_id in self._id_map():
            raise ValueError(
                f"provenance.episode_id {episode_id!r} is already used by episode "
                f"{self._id_map()[episode_id]} of {self.path}; every episode needs its own id"
            )

    def _id_map(self) -> dict[str, int]:
        if self._ids is None:
            texts = self._prov_arr[: self._n_episodes] if self._n_episodes else []
            self._ids = {
                EpisodeProvenance.from_json(str(t)).episode_id: i for i, t in enumerate(texts)
            }
        return self._ids

    def _check_stream(self, name: str) -> None:
        if name not in self.stream_keys:
            raise KeyError(
                f"{self.path}: no stream {name!r}; declared streams: {list(self.stream_keys)}"
            )

    # ------------------------------------------------------------------ committing

    def _commit(
        self,
        episode_ends: list[int],
        stream_episode_ends: dict[str, list[int]],
        provenances: list[EpisodeProvenance],
    ) -> None:
        """Publish new episodes (their rows and ``meta/`` rows are durable already):
        their end rows, each stream's end rows, and their provenance, in order."""
        e0 = self._n_episodes
        n_episodes, n_steps = e0 + len(episode_ends), int(episode_ends[-1])
        stream_rows = {s: int(v[-1]) for s, v in stream_episode_ends.items()}
        atomic_write_json(
            self.path / COMMIT_FILE,
            commit_doc(n_episodes, n_steps, stream_rows, self._generation),
        )
        self._n_episodes, self._n_steps = n_episodes, n_steps
        ends = np.append(self._ends, np.asarray(episode_ends, np.int64))
        ends.setflags(write=False)
        self._ends = ends
        for s, v in stream_episode_ends.items():
            e = np.append(self._stream_ends[s], np.asarray(v, np.int64))
            e.setflags(write=False)
            self._stream_ends[s] = e
        self._stream_rows = {**self._stream_rows, **stream_rows}
        if self._ids is not None:
            for k, p in enumerate(provenances):
                self._ids[p.episode_id] = e0 + k
        self._cache.clear()
        self._sync_committed()
