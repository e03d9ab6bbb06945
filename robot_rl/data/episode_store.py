"""The episode store: robot episodes in Zarr (v3 format) with an atomic commit protocol.

The layout follows Diffusion Policy's replay buffer, so its users feel at home:
control-rate arrays concatenated along time under ``data/`` and cumulative
``meta/episode_ends``, streams at other rates under ``streams/<name>/``, per-episode
provenance, digests and statistics under ``meta/``. An episode exists once the commit
document ``commit.json`` counts it, so a crash mid-episode never exposes a partial one.
Plain zarr reads it: ``zarr.open_group(path)["data/action"][:n_steps]``, with ``n_steps``
from ``commit.json``.

:class:`EpisodeStore` is the one class users open (:meth:`EpisodeStore.create`,
:meth:`EpisodeStore.open`, :func:`open_store`); its concerns live in their own modules,
dependencies pointing one way (each imports only those above it in this list):

- :mod:`~robot_rl.data.store_layout`: the layout on disk (documented there in full),
  names, array specs, codecs, :class:`StoreSchema` and the store's errors;
- :mod:`~robot_rl.data.store_lock`: the one-writer lock, stale rewrite siblings;
- :mod:`~robot_rl.data.store_guard`: reads refuse a rewritten store or a missing chunk;
- :mod:`~robot_rl.data.store_create`: creating an empty store;
- :mod:`~robot_rl.data.store_commit`: the commit record (:class:`CommittedStore`): the
  commit protocol, committed counts, the writer lock held;
- :mod:`~robot_rl.data.store_reading`, :mod:`~robot_rl.data.store_streams`,
  :mod:`~robot_rl.data.store_labels`, :mod:`~robot_rl.data.store_stats`: reading control
  rows and provenance, streams, labels, statistics and the content hash;
- :mod:`~robot_rl.data.episode_writer` (incremental, crash-safe writing, on
  :mod:`~robot_rl.data.row_checks` and :mod:`~robot_rl.data.chunk_io`) and
  :mod:`~robot_rl.data.validation` (validate), both on the commit record;
- this module: :class:`EpisodeStore`, which joins them and opens, creates, writes and
  validates.

Around it: :mod:`~robot_rl.data.provenance` (EpisodeProvenance), :mod:`~robot_rl.data.labels`
(success labels, preferences), :mod:`~robot_rl.data.governance` (pseudonyms, purge, filter,
split, merge), :mod:`~robot_rl.data.export` (zarr format 2) and
:mod:`~robot_rl.data.atomic_fs` (fsync, atomic replace, directory swap).

Only a local file system is supported for writing (recording, commits and purges stay
local; see DESIGN.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robot_rl.data.atomic_fs import journal_path, remove_tree
from robot_rl.data.episode_writer import (
    EpisodeWriter,
    check_frames,
    check_stream_rows,
    truncate_uncommitted,
)
from robot_rl.data.labels import Preference, SuccessLabel
from robot_rl.data.provenance import REWARD_NONE, REWARD_RECORDED, SOURCES, EpisodeProvenance
from robot_rl.data.row_checks import check_timestamps
from robot_rl.data.store_commit import CommittedStore
from robot_rl.data.store_create import create_store_dir
from robot_rl.data.store_labels import StoreLabels
from robot_rl.data.store_layout import (
    COMMIT_FILE,
    DIGESTS_ARRAY,
    FORMAT,
    FORMAT_VERSION,
    HASH_VERSION,
    LOCK_FILE,
    OPTIONAL_FLAG_KEYS,
    PERSISTED_STATS_MAX_ELEMS,
    REQUIRED_FRAME_KEYS,
    RESERVED_KEYS,
    RESERVED_STREAM_KEYS,
    REWRITE_TAGS,
    TIMESTAMP_KEY,
    MissingChunkError,
    NoRewardsError,
    Spec,
    StoreFormatError,
    StoreRewrittenError,
    StoreSchema,
    is_store_dir,
    no_rewards_error,
)
from robot_rl.data.store_lock import acquire_writer_lock, finish_swap_locked, stale_siblings
from robot_rl.data.store_stats import QUANTILE_MAX_ROWS, StoreStats
from robot_rl.data.store_streams import StoreStreams
from robot_rl.data.validation import ValidationReport, validate_store

__all__ = [
    "COMMIT_FILE",
    "DIGESTS_ARRAY",
    "FORMAT",
    "FORMAT_VERSION",
    "HASH_VERSION",
    "LOCK_FILE",
    "OPTIONAL_FLAG_KEYS",
    "PERSISTED_STATS_MAX_ELEMS",
    "QUANTILE_MAX_ROWS",
    "REQUIRED_FRAME_KEYS",
    "RESERVED_KEYS",
    "RESERVED_STREAM_KEYS",
    "REWARD_NONE",
    "REWARD_RECORDED",
    "REWRITE_TAGS",
    "SOURCES",
    "TIMESTAMP_KEY",
    "CommittedStore",
    "EpisodeProvenance",
    "EpisodeStore",
    "EpisodeWriter",
    "MissingChunkError",
    "NoRewardsError",
    "Preference",
    "Spec",
    "StoreFormatError",
    "StoreRewrittenError",
    "StoreSchema",
    "SuccessLabel",
    "ValidationReport",
    "no_rewards_error",
    "open_store",
    "stale_siblings",
]


class EpisodeStore(StoreStreams, StoreLabels, StoreStats):
    """Episodes of robot data in a Zarr (v3 format) directory; see the module docstring.

    Open with :meth:`create`, :meth:`open` or :func:`open_store`. A store opened with
    mode ``"r"`` shows the episodes (and labels) committed when it was opened (or last
    :meth:`refresh`-ed); one opened with ``"a"`` (only one writer at a time) writes
    episodes through :meth:`begin_episode` or :meth:`append_episode`, and labels.

    Reading (:class:`~robot_rl.data.store_reading.StoreReading`), streams
    (:class:`~robot_rl.data.store_streams.StoreStreams`), labels
    (:class:`~robot_rl.data.store_labels.StoreLabels`) and statistics
    (:class:`~robot_rl.data.store_stats.StoreStats`) are defined in their own modules, on
    the commit record (:class:`~robot_rl.data.store_commit.CommittedStore`).
    """

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        obs_spec: Spec,
        action_dim: int,
        control_hz: float,
        robot: str,
        task: str,
        units: dict[str, str] | None = None,
        streams: dict[str, Spec] | None = None,
        timestamps: bool | None = None,
        chunk_steps: int | None = None,
        chunks: dict[str, int] | None = None,
        overwrite: bool = False,
        reward_source: str = REWARD_RECORDED,
    ) -> EpisodeStore:
        """Create an empty store at ``path`` and open it for appending.

        Args:
            path: directory to create (its parent must exist).
            obs_spec: observation key -> (per-step shape, dtype string), e.g.
                ``{"joint_pos": ((7,), "float32")}``. Keys start with a letter and use
                only letters, digits, ``_ . -``; they cannot be a reserved frame key.
            action_dim: size of the action vector.
            control_hz: control rate of the rows, in Hz.
            robot: robot model name (e.g. ``"panda"``).
            task: task name.
            units: optional key -> unit string (e.g. ``{"joint_pos": "rad"}``).
            streams: optional stream name -> {key: (per-row shape, dtype)} for data at
                other rates, e.g. ``{"robot_state": {"joint_pos": ((7,), "float32")},
                "camera_front": {"rgb": ((224, 224, 3), "uint8")}}``. Every stream also
                gets a float64 ``timestamp`` (seconds).
            timestamps: give control rows a float64 ``data/timestamp`` (seconds), required
                in every appended block. None (default): True exactly when ``streams``
                are declared, since streams are aligned to control rows by time.
            chunk_steps: rows per chunk for every ``data/`` array; None picks per key
                (about 1 MiB uncompressed, at most 4096 rows).
            chunks: rows per chunk for individual arrays by name (``"data/action"``,
                ``"streams/camera_front/rgb"``), overriding ``chunk_steps`` and the
                automatic choice (about 1 MiB: a few frames per chunk for images).
            overwrite: replace an existing episode store at ``path``. A directory that
                is not an episode store is never deleted.
            reward_source: ``"recorded"`` (default: episodes come with their rewards),
                ``"none"`` (no rewards: no ``data/reward``, episodes are appended without
                ``reward``; see "Rewards" in the module docstring) or
                ``"learned:<reward model id>"`` (what relabel writes).

        Returns:
            The new store, opened in mode ``"a"``.

        Raises:
            ValueError: a malformed argument (the message names it).
            FileExistsError: ``path`` exists and ``overwrite`` does not allow replacing it.
        """
        path = Path(path)
        streams = dict(streams or {})
        if timestamps is None:
            timestamps = bool(streams)
        lock_fd = create_store_dir(
            path,
            obs_spec=obs_spec,
            action_dim=action_dim,
            control_hz=control_hz,
            robot=robot,
            task=task,
            units=units,
            streams=streams,
            timestamps=timestamps,
            chunk_steps=chunk_steps,
            chunks=chunks,
            overwrite=overwrite,
            reward_source=reward_source,
        )
        try:
            return cls(path, "a", _lock_fd=lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r") -> EpisodeStore:
        """Open an existing store.

        Args:
            path: the store's directory.
            mode: ``"r"`` read-only, or ``"a"`` to append and label (takes the writer lock).

        Raises:
            FileNotFoundError: nothing at ``path``.
            StoreFormatError: ``path`` is not an episode store, or its metadata is damaged.
            RuntimeError: mode ``"a"`` while another writer holds the store.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode: expected 'r' or 'a', got {mode!r}")
        path = Path(path)
        if journal_path(path).is_file():
            if mode == "r":
                if not path.exists():
                    raise FileNotFoundError(
                        f"{path}: a rewrite (purge) of this store was interrupted between its "
                        "two renames; open it with mode='a' (EpisodeStore.open(path, 'a')) to "
                        "finish it"
                    )
            else:
                finish_swap_locked(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no episode store here (path does not exist)")
        if not is_store_dir(path):
            raise StoreFormatError(
                f"{path}: not an episode store (expected a zarr v3 group whose zarr.json has "
                f'attribute format="{FORMAT}")'
            )
        if not (path / COMMIT_FILE).is_file():
            raise StoreFormatError(
                f"{path}: no {COMMIT_FILE}; the store's creation did not finish. Create it again"
            )
        lock_fd = acquire_writer_lock(path) if mode == "a" else None
        try:
            if lock_fd is not None:
                # Under the writer lock: no rewrite of this store is running, so hidden
                # siblings (perhaps holding purged data) are crash leftovers.
                for stale in stale_siblings(path):
                    remove_tree(stale)
            return cls(path, mode, _lock_fd=lock_fd)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise

    # ------------------------------------------------------------------ validation

    def validate(self) -> ValidationReport:
        """Read every committed chunk and check checksums and consistency (see
        :func:`robot_rl.data.validation.validate_store`)."""
        self._check_open()
        return validate_store(self)

    # ------------------------------------------------------------------ writing

    def begin_episode(self) -> EpisodeWriter:
        """Start writing an episode incrementally (see :class:`EpisodeWriter`).

        Deletes any uncommitted tail a crash or a discarded episode left first. One
        writer at a time per store.

        Raises:
            RuntimeError: the store is read-only, closed, or an episode is already open.
        """
        self._check_writable()
        if self._writer is not None and not self._writer.closed:
            raise RuntimeError(
                f"{self.path}: an episode is already being written ({self._writer!r}); "
                "commit or discard it first"
            )
        truncate_uncommitted(self)
        self._writer = EpisodeWriter(self)
        return self._writer

    def append_episode(
        self,
        frames: dict[str, np.ndarray],
        provenance: EpisodeProvenance,
        streams: dict[str, dict[str, np.ndarray]] | None = None,
    ) -> int:
        """Append one whole episode and commit it (begin, append, append_stream, commit).

        Args:
            frames: every observation key, ``action`` (T, action_dim), ``reward`` (T,)
                (left out in a store without rewards),
                ``terminated`` (T,), ``truncated`` (T,), ``timestamp`` (T,) float64 s if
                the store has control-row timestamps, and optionally ``clipped`` and
                ``intervention`` (T,) bool (default all False). Float keys must be finite;
                values are cast to the stored dtype within the same kind.
            provenance: where the episode came from.
            streams: optional stream name -> rows (each with ``timestamp``); a declared
                stream left out gets 0 rows in this episode.

        Returns:
            The new episode's index.

        Raises:
            ValueError: malformed frames, streams or provenance (the message names the
                key, what was expected and what was given); nothing is written.
            RuntimeError: the store is not open for appending, or an episode writer is open.
        """
        self._check_writable()
        if not isinstance(provenance, EpisodeProvenance):
            raise ValueError(
                f"provenance: expected an EpisodeProvenance, got {type(provenance).__name__}"
            )
        provenance.check()
        data, n_new = check_frames(self, frames)
        if n_new == 0:
            raise ValueError(f"frames[{self.obs_keys[0]!r}]: episode has 0 steps; expected T >= 1")
        if TIMESTAMP_KEY in data:
            check_timestamps("frames", data[TIMESTAMP_KEY], None)
        if streams is not None and not isinstance(streams, dict):
            raise ValueError(f"streams: expected a dict name -> rows, got {type(streams).__name__}")
        checked_streams = {}
        for name, rows in (streams or {}).items():
            checked_streams[name] = check_stream_rows(self, name, rows)
            check_timestamps(f"streams[{name!r}]", checked_streams[name][0][TIMESTAMP_KEY], None)
        writer = self.begin_episode()
        with writer:
            writer._write_frames(data, n_new)
            for name, (rows, n) in checked_streams.items():
                writer._write_stream(name, rows, n)
            return writer.commit(provenance)


def open_store(path: str | os.PathLike[str], mode: str = "r") -> EpisodeStore:
    """Open an existing episode store (see :meth:`EpisodeStore.open`)."""
    return EpisodeStore.open(path, mode=mode)
