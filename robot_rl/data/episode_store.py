"""The episode store: robot episodes in Zarr (v3 format) with an atomic commit protocol.

The layout follows Diffusion Policy's replay buffer, so its users feel at home:
control-rate arrays concatenated along time under ``data/`` and cumulative
``meta/episode_ends``. On disk (a directory)::

    <store>/
      zarr.json                 root group; attributes: format ("robot_rl.episode_store"),
                                format_version (3), control_hz, robot, task, obs_keys, units,
                                timestamps (bool), stream_keys ({stream: [key, ...]}),
                                reward_source ("recorded", "none" or "learned:<model id>";
                                absent in older stores: "recorded")
      commit.json               the commit document: {"format", "format_version",
                                "n_episodes", "n_steps", "stream_rows": {stream: rows},
                                "generation": hex UUID, new for every store directory
                                (create, and so every purge/filter/merge output)}; the
                                only source of truth for what is committed
      labels.json               human feedback: success labels and pairwise preferences, an
                                append-only log replaced atomically (robot_rl.data.labels);
                                absent until the first label
      .writer.lock              advisory lock (flock) held by the one writer in mode "a"
      data/<obs key>            (S, *shape) one array per observation key, dtype as declared
      data/action               (S, action_dim) float32
      data/reward               (S,) float32; absent when reward_source is "none" (see
                                "Rewards" below)
      data/terminated           (S,) bool   the episode ended in a terminal state
      data/truncated            (S,) bool   the episode was cut (time limit, operator stop)
      data/clipped              (S,) bool   the safety filter changed the action
      data/intervention         (S,) bool   an operator was in control
      data/timestamp            (S,) float64 seconds, only in stores created with
                                timestamps=True (the default when streams are declared);
                                non-decreasing within an episode
      meta/episode_ends         (N,) int64, cumulative: episode i is rows [ends[i-1], ends[i])
      meta/provenance           (N,) string, one JSON object per episode (EpisodeProvenance,
                                as recorded; a later success label lives in labels.json)
      meta/digests              (N,) string, one JSON object per episode: array name
                                ("data/<key>", "streams/<name>/<key>") -> SHA-256 (hex) of
                                the episode's rows (C order, little-endian), recorded at
                                commit; validate() recomputes them
      meta/stats/<key>          (N, 4, *shape) float64: per-episode moments (mean, m2,
                                min, max along axis 1) of each obs key of at most 1024
                                elements per step, action and reward
      streams/<name>/timestamp  (R,) float64 seconds, same clock as data/timestamp,
                                non-decreasing within an episode
      streams/<name>/<key>      (R, *shape) rows at the stream's own rate (1 kHz robot
                                state, 30 Hz camera images, ...)
      streams/<name>/episode_ends  (N,) int64, cumulative like meta/episode_ends (an
                                episode may have 0 rows of a stream)

Plain zarr reads it: ``zarr.open_group(path)["data/action"][:n_steps]`` and
``json.loads(group["meta/provenance"][i].item())``, where ``n_steps`` (and each stream's
committed rows) comes from ``commit.json``. Stream rows are aligned to control rows by
time: :meth:`EpisodeStore.align_stream` gives, for each control row, the latest stream row
at or before it.

Format versions: 2 added streams, ``data/timestamp``, ``labels.json`` and
``stream_rows``; 3 added ``meta/digests`` and the commit document's ``generation``.
Older stores open and append as before (without digests or generation checks).

Rewrites. A purge (or ``create(overwrite=True)``) swaps a new store directory in at the
path. A store object opened before holds the old counts but reads through the path, so
every read first checks the generation in ``commit.json`` (one ``stat`` per chunk read;
the file is re-read only when it changed) and raises :class:`StoreRewrittenError`
("reopen it") on a mismatch, as does :meth:`EpisodeStore.refresh`. A chunk of committed
rows that is missing raises :class:`MissingChunkError` instead of reading as zeros. A
purge does not wait for readers to close (no reader locks): they fail on their next read.

Commit protocol. Zarr appends write array metadata (the new shape) before the chunks,
so a grown ``episode_ends`` says nothing about whether an episode's chunks are all on
disk. An episode exists only once ``commit.json``, written after every chunk of the
episode has been written and fsynced, counts it; it is replaced atomically (temporary
file in the same directory, fsync, ``os.replace``, fsync of the directory). Readers use
only the first ``n_steps`` rows and ``n_episodes`` episodes (and each stream's committed
rows), so arrays left longer by a crash are ignored, and the next ``begin_episode``
deletes that uncommitted tail before writing. Episodes are written incrementally through
:class:`robot_rl.data.episode_writer.EpisodeWriter`.

Checksums. Every array's codec pipeline ends in crc32c (after Blosc), so a damaged chunk
fails to decode; :meth:`EpisodeStore.validate` reads every committed chunk and names the
episodes and keys a bad chunk touches. Chunks are written even when they hold only the
fill value (``write_empty_chunks``), so a missing chunk file is detected too. Arrays of
large rows (images) use Blosc zstd level 1, fast enough to record several cameras far
faster than real time; the rest use zstd level 3.

Rewards. A store may lack rewards (teleop logs nobody scored): created with
``reward_source="none"``, it has no ``data/reward`` array (nor its statistics), its
episodes are appended without ``reward``, and reading rewards (``array("reward")``,
``stats("reward")``, samplers) raises :class:`NoRewardsError`, which says to run
``robot-rl-data relabel`` (:mod:`robot_rl.data.relabel`): that writes a new store with
rewards from a learned reward model, ``reward_source="learned:<model id>"``. No
placeholder values (zeros, NaN) stand in for missing rewards, so every check of the data
(finite floats, digests, statistics) holds as for any store.

Only a local file system is supported for writing (recording, commits and purges stay
local; see DESIGN.md).

Around this module: :mod:`~robot_rl.data.episode_writer` (incremental, crash-safe
writing and block validation), :mod:`~robot_rl.data.provenance` (EpisodeProvenance),
:mod:`~robot_rl.data.labels` (success labels, preferences),
:mod:`~robot_rl.data.validation` (validate), :mod:`~robot_rl.data.governance`
(pseudonyms, purge, filter, split, merge), :mod:`~robot_rl.data.export` (zarr format 2)
and :mod:`~robot_rl.data.atomic_fs` (fsync, atomic replace, directory swap).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.storage import LocalStore

from robot_rl.data.atomic_fs import atomic_write_json as _atomic_write_json
from robot_rl.data.atomic_fs import finish_interrupted_swap, journal_path, publish_dir, swap_dirs
from robot_rl.data.atomic_fs import fsync_path as _fsync_path
from robot_rl.data.atomic_fs import remove_tree as _remove_tree
from robot_rl.data.episode_writer import (
    TIMESTAMP_KEY,
    EpisodeWriter,
    check_block,
    check_timestamps,
    truncate_uncommitted,
)
from robot_rl.data.labels import (
    LABELS_FILE,
    LabelLog,
    Preference,
    SuccessLabel,
    check_labeller,
    check_preferred,
    check_success,
    read_label_log,
)
from robot_rl.data.provenance import (
    REWARD_NONE,
    REWARD_RECORDED,
    EpisodeProvenance,
    check_reward_source,
)
from robot_rl.data.provenance import SOURCES as SOURCES  # re-exported
from robot_rl.data.stats import Moments
from robot_rl.data.validation import ValidationReport, validate_store

try:  # POSIX advisory locks; without them (Windows) the single-writer rule is unchecked.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "robot_rl.episode_store"
FORMAT_VERSION = 3
COMMIT_FILE = "commit.json"
LOCK_FILE = ".writer.lock"
# Per-episode digests of every row-appended data and stream array (format version 3).
DIGESTS_ARRAY = "meta/digests"
# Hidden siblings a rewrite builds a new store in: ``.<store name>.<tag>-<12 hex>`` (and
# ``...old`` for the old store during a journal swap). A crash can leave one behind, and a
# purge's may hold purged data: open(mode="a") deletes them, validate() reports them.
REWRITE_TAGS = ("create", "purge", "filter", "merge", "split", "relabel", "strip")
_SIBLING_RE = re.compile(
    r"^\.(?P<name>.+)\.(?:" + "|".join(REWRITE_TAGS) + r")-[0-9a-f]{12}(\.old)?$"
)
# Bumped whenever what content_hash() covers changes.
HASH_VERSION = 2

# Per-frame arrays every episode has, besides the observation keys.
REQUIRED_FRAME_KEYS = ("action", "reward", "terminated", "truncated")
# Per-frame flags an episode may omit (then all False).
OPTIONAL_FLAG_KEYS = ("clipped", "intervention")
RESERVED_KEYS = (*REQUIRED_FRAME_KEYS, *OPTIONAL_FLAG_KEYS, TIMESTAMP_KEY)
RESERVED_STREAM_KEYS = (TIMESTAMP_KEY, "episode_ends")

# Keys up to this many elements per step get persisted per-episode moments; bigger ones
# (images) would add a float64 copy of a frame per episode per statistic, so their
# moments are computed on demand from the data instead.
PERSISTED_STATS_MAX_ELEMS = 1024
# stats() takes q01/q99 from at most this many rows (a seeded uniform subsample of the
# committed rows beyond it), and holds at most _QUANTILE_MAX_ELEMS float64 values, so its
# memory is bounded whatever the store's size.
QUANTILE_MAX_ROWS = 200_000
_QUANTILE_MAX_ELEMS = 1 << 23
# Rows read per block when a statistic streams over a key's data.
_STATS_BLOCK_BYTES = 64 << 20

_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_STAT_FIELDS = ("mean", "m2", "min", "max")
# Uncompressed bytes per data chunk the automatic chunk size aims at.
_TARGET_CHUNK_BYTES = 1 << 20
_MAX_CHUNK_ROWS = 4096
# Rows at least this big (camera images) get the fast codec.
_FAST_CODEC_MIN_ROW_BYTES = 16 << 10

Spec = dict[str, tuple[tuple[int, ...], str]]


class StoreFormatError(ValueError):
    """A path is not an episode store, or its metadata contradicts itself."""


class StoreRewrittenError(RuntimeError):
    """The store at the path was replaced (purged, recreated) after this object opened it."""


class MissingChunkError(OSError):
    """A chunk file that committed rows live in is missing (chunks are always written)."""


class NoRewardsError(ValueError):
    """Rewards were asked of a store without rewards (``reward_source`` ``"none"``)."""


def no_rewards_error(path: Path) -> NoRewardsError:
    """The error for reading rewards of the store at ``path``, which has none: it says
    how to get a store with rewards."""
    return NoRewardsError(
        f"store {path} has no rewards (reward source: {REWARD_NONE}); run `robot-rl-data "
        f"relabel {path} --model <reward model> --out <new store>` first (train a reward "
        "model from labels or preferences with `robot-rl-data train-reward`)"
    )


def stale_siblings(path: Path) -> list[Path]:
    """Hidden sibling directories a crashed rewrite of the store at ``path`` left behind
    (see ``REWRITE_TAGS``), skipping any a live process still holds the writer lock of."""
    out = []
    parent = path.parent
    if not parent.is_dir():
        return out
    for child in sorted(parent.iterdir()):
        m = _SIBLING_RE.match(child.name)
        if not m or m.group("name") != path.name or not child.is_dir():
            continue
        if _lock_is_held(child / LOCK_FILE):
            continue
        out.append(child)
    return out


def _lock_is_held(lock_file: Path) -> bool:
    if fcntl is None or not lock_file.is_file():  # pragma: no cover
        return False
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_generation(commit_file: Path) -> str | None:
    doc = json.loads(commit_file.read_text(encoding="utf-8"))
    gen = doc.get("generation")
    return str(gen) if gen is not None else None


class _CheckedLocalStore(LocalStore):
    """A LocalStore that refuses to read a rewritten store or to invent missing chunks.

    Zarr reads a missing chunk as the fill value; in an episode store every chunk of the
    committed rows exists (``write_empty_chunks``), so a missing one is damage (or a store
    swapped underneath) and raises :class:`MissingChunkError`. Before every read the
    generation in ``commit.json`` is compared with the one this store was opened at (the
    file is re-read only when its inode, mtime or size changed, so a read costs one stat).
    """

    def __init__(self, root: Path, *, read_only: bool):
        super().__init__(root, read_only=read_only)
        self.generation: str | None = None
        # array name -> (committed rows, rows per chunk)
        self.committed: dict[str, tuple[int, int]] = {}
        self._commit_stat: tuple[int, int, int] | None = None

    def check_generation(self) -> None:
        if self.generation is None:
            return
        commit_file = Path(self.root) / COMMIT_FILE
        try:
            st = os.stat(commit_file)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if key == self._commit_stat:
                return
            gen = _read_generation(commit_file)
        except (OSError, ValueError):
            gen = None
            key = None
        if gen != self.generation:
            raise StoreRewrittenError(
                f"{self.root}: store was rewritten (purged) since it was opened; reopen it"
            )
        self._commit_stat = key

    async def get(self, key, prototype=None, byte_range=None):  # type: ignore[override]
        self.check_generation()
        out = await super().get(key, prototype, byte_range)
        if out is None:
            self._check_missing(key)
        return out

    def _check_missing(self, key: str) -> None:
        name, sep, rest = key.rpartition("/c/")
        if not sep or name not in self.committed:
            return
        try:
            c = int(rest.split("/", 1)[0])
        except ValueError:
            return
        rows, chunk_rows = self.committed[name]
        if c * chunk_rows < rows:
            raise MissingChunkError(
                f"{self.root}: chunk file {key} is missing, but rows {c * chunk_rows}-"
                f"{min((c + 1) * chunk_rows, rows) - 1} of {name} are committed; the store "
                "is damaged (run validate)"
            )


@dataclass(frozen=True)
class StoreSchema:
    """What a store holds per row, independent of its episodes; stores with equal schemas
    can be merged. Fields mean what the arguments of :meth:`EpisodeStore.create` mean."""

    obs_spec: Spec
    action_dim: int
    control_hz: float
    robot: str
    task: str
    units: dict[str, str]
    streams: dict[str, Spec]
    timestamps: bool
    reward_source: str = REWARD_RECORDED

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`EpisodeStore.create` that make a store of this schema."""
        return {
            "obs_spec": self.obs_spec,
            "action_dim": self.action_dim,
            "control_hz": self.control_hz,
            "robot": self.robot,
            "task": self.task,
            "units": self.units,
            "streams": self.streams,
            "timestamps": self.timestamps,
            "reward_source": self.reward_source,
        }


def _frame_spec(
    obs_spec: Spec, action_dim: int, timestamps: bool, rewards: bool = True
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-step shape and dtype of every ``data/`` array, observation keys first."""
    spec = {k: (tuple(shape), np.dtype(dt)) for k, (shape, dt) in obs_spec.items()}
    spec["action"] = ((action_dim,), np.dtype(np.float32))
    if rewards:
        spec["reward"] = ((), np.dtype(np.float32))
    for k in ("terminated", "truncated", *OPTIONAL_FLAG_KEYS):
        spec[k] = ((), np.dtype(bool))
    if timestamps:
        spec[TIMESTAMP_KEY] = ((), np.dtype(np.float64))
    return spec


def _stream_spec(keys: Spec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    spec = {TIMESTAMP_KEY: ((), np.dtype(np.float64))}
    spec.update({k: (tuple(shape), np.dtype(dt)) for k, (shape, dt) in keys.items()})
    return spec


def _row_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)


def _auto_chunk_rows(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(min(_MAX_CHUNK_ROWS, max(1, _TARGET_CHUNK_BYTES // _row_bytes(shape, dtype))))


def _compressors(dtype: np.dtype, row_bytes: int = 0) -> tuple[Any, ...]:
    # crc32c comes last so the checksum covers the compressed bytes and is verified
    # before decompression is attempted.
    if row_bytes >= _FAST_CODEC_MIN_ROW_BYTES:
        # Images: recording several cameras must stay far faster than real time.
        return (BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"), Crc32cCodec())
    shuffle = "bitshuffle" if dtype.itemsize == 1 else "shuffle"
    return (BloscCodec(cname="zstd", clevel=3, shuffle=shuffle), Crc32cCodec())


def _is_store_dir(path: Path) -> bool:
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return doc.get("attributes", {}).get("format") == FORMAT


def _check_spec_entry(where: str, key: Any, entry: Any, reserved: tuple[str, ...]) -> None:
    if not isinstance(key, str) or not _KEY_RE.match(key):
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


class EpisodeStore:
    """Episodes of robot data in a Zarr (v3 format) directory; see the module docstring.

    Open with :meth:`create`, :meth:`open` or :func:`open_store`. A store opened with
    mode ``"r"`` shows the episodes (and labels) committed when it was opened (or last
    :meth:`refresh`-ed); one opened with ``"a"`` (only one writer at a time) writes
    episodes through :meth:`begin_episode` or :meth:`append_episode`, and labels.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str, _lock_fd: int | None = None):
        # Use create/open; this constructor expects an existing, committed store.
        self.path = Path(path)
        self.mode = mode
        self._lock_fd = _lock_fd
        self._closed = False
        self._writer: EpisodeWriter | None = None
        self._zstore = _CheckedLocalStore(self.path, read_only=(mode == "r"))
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
        self._spec = _frame_spec(
            self.obs_spec, self.action_dim, self.has_timestamps, self.has_rewards
        )
        self.stream_spec: dict[str, Spec] = {
            s: {k: (tuple(arrs[k].shape[1:]), str(arrs[k].dtype)) for k in self.stream_keys[s]}
            for s, arrs in self._streams.items()
        }
        self._stream_specs = {s: _stream_spec(spec) for s, spec in self.stream_spec.items()}

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
        cls._check_create_args(
            obs_spec, action_dim, control_hz, robot, task, units, chunk_steps, streams, timestamps
        )
        check_reward_source(reward_source)
        rewards = reward_source != REWARD_NONE
        # Every argument is checked before anything on disk is touched.
        chunks = dict(chunks or {})
        if not isinstance(chunks, dict):
            raise ValueError(f"chunks: expected a dict array name -> rows, got {chunks!r}")
        plan: list[tuple[str, tuple[int, ...], np.dtype, int]] = []

        def plan_rows(name: str, shape: tuple[int, ...], dtype: np.dtype, default_rows: int):
            rows = chunks.pop(name) if name in chunks else default_rows
            if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
                raise ValueError(f"chunks[{name!r}]: expected a positive int, got {rows!r}")
            plan.append((name, shape, dtype, rows))

        spec = _frame_spec(obs_spec, action_dim, timestamps, rewards)
        for key, (shape, dtype) in spec.items():
            plan_rows(f"data/{key}", shape, dtype, chunk_steps or _auto_chunk_rows(shape, dtype))
        i8 = np.dtype(np.int64)
        plan_rows("meta/episode_ends", (), i8, 1024)
        for s, keys in streams.items():
            for key, (shape, dtype) in _stream_spec(keys).items():
                plan_rows(f"streams/{s}/{key}", shape, dtype, _auto_chunk_rows(shape, dtype))
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
            elif not _is_store_dir(path):
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
            lock_fd = cls._acquire_writer_lock(tmp)
            cls._build_empty(
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
                old_lock = cls._acquire_writer_lock(path)
                try:
                    old = swap_dirs(tmp, path)
                finally:
                    os.close(old_lock)
                _remove_tree(old)
            else:
                publish_dir(tmp, path)
            return cls(path, "a", _lock_fd=lock_fd)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            _remove_tree(tmp)
            raise

    @classmethod
    def _build_empty(
        cls,
        path,
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
    ) -> None:
        store = LocalStore(path)
        root = zarr.create_group(store=store, zarr_format=3)
        for name, shape, dtype, rows in plan:
            root.create_array(
                name,
                shape=(0, *shape),
                chunks=(rows, *shape),
                dtype=dtype,
                compressors=_compressors(dtype, _row_bytes(shape, dtype)),
                fill_value=0,
            )
        for name in ("meta/provenance", DIGESTS_ARRAY):
            root.create_array(
                name, shape=(0,), chunks=(256,), dtype=str, compressors=(Crc32cCodec(),)
            )
        for key in cls._persisted_stat_keys(spec, obs_spec):
            shape = spec[key][0]
            rows = _auto_chunk_rows(shape, np.dtype(np.float64))
            root.create_array(
                f"meta/stats/{key}",
                shape=(0, len(_STAT_FIELDS), *shape),
                chunks=(max(1, min(rows // len(_STAT_FIELDS), 256)), len(_STAT_FIELDS), *shape),
                dtype="float64",
                compressors=_compressors(np.dtype(np.float64)),
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
            _fsync_path(meta)
        # A new generation for every new store: readers of a store this one replaces
        # notice the swap (see _CheckedLocalStore).
        doc = cls._commit_doc(0, 0, dict.fromkeys(streams, 0), uuid.uuid4().hex)
        _atomic_write_json(path / COMMIT_FILE, doc)
        _fsync_path(path)

    @staticmethod
    def _check_create_args(
        obs_spec, action_dim, control_hz, robot, task, units, chunk_steps, streams, timestamps
    ):
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
            if not isinstance(s, str) or not _KEY_RE.match(s):
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

    @staticmethod
    def _persisted_stat_keys(spec, obs_spec) -> list[str]:
        keys = [k for k in (*obs_spec, "action", "reward") if k in spec]  # no reward: none
        return [
            k for k in keys if int(np.prod(spec[k][0], dtype=np.int64)) <= PERSISTED_STATS_MAX_ELEMS
        ]

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
                cls._finish_swap_locked(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no episode store here (path does not exist)")
        if not _is_store_dir(path):
            raise StoreFormatError(
                f"{path}: not an episode store (expected a zarr v3 group whose zarr.json has "
                f'attribute format="{FORMAT}")'
            )
        if not (path / COMMIT_FILE).is_file():
            raise StoreFormatError(
                f"{path}: no {COMMIT_FILE}; the store's creation did not finish. Create it again"
            )
        lock_fd = cls._acquire_writer_lock(path) if mode == "a" else None
        try:
            if lock_fd is not None:
                # Under the writer lock: no rewrite of this store is running, so hidden
                # siblings (perhaps holding purged data) are crash leftovers.
                for stale in stale_siblings(path):
                    _remove_tree(stale)
            return cls(path, mode, _lock_fd=lock_fd)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise

    @classmethod
    def _finish_swap_locked(cls, path: Path) -> None:
        """Finish a journal swap a crash interrupted, holding the writer lock of whichever
        store directory the journal's rewrite left at hand."""
        try:
            doc = json.loads(journal_path(path).read_text(encoding="utf-8"))
            old = path.with_name(doc["old"])
        except (OSError, ValueError, KeyError, TypeError):
            old = None
        target = path if path.exists() else old
        fd = None
        if target is not None and target.is_dir():
            fd = cls._acquire_writer_lock(target)
        try:
            finish_interrupted_swap(path)
        finally:
            if fd is not None:
                os.close(fd)

    @staticmethod
    def _acquire_writer_lock(path: Path) -> int:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(
                f"{path}: another writer holds this store (lock {LOCK_FILE}); close it first"
            ) from None
        return fd

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
        # What _CheckedLocalStore needs to tell a missing committed chunk from an unwritten one.
        self._zstore.committed = {name: (n, int(a.chunks[0])) for name, a, n in self._all_arrays()}

    def _read_ends(self, name: str, a: zarr.Array, n: int) -> np.ndarray:
        try:
            return np.asarray(a[:n], dtype=np.int64)
        except Exception as e:  # a failed checksum surfaces as ValueError, I/O as OSError
            raise StoreFormatError(
                f"{self.path}: {name} unreadable ({type(e).__name__}: {e}); "
                "without it no episode can be located"
            ) from None

    @staticmethod
    def _commit_doc(
        n_episodes: int, n_steps: int, stream_rows: dict[str, int], generation: str | None
    ) -> dict[str, Any]:
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_episodes": n_episodes,
            "n_steps": n_steps,
            "stream_rows": stream_rows,
        }
        if generation is not None:
            # Unique per store directory: a rewrite (purge, recreate) makes a new one.
            doc["generation"] = generation
        return doc

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

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return (
            f"EpisodeStore({str(self.path)!r}, mode={self.mode!r}, "
            f"n_episodes={self._n_episodes}, n_steps={self._n_steps})"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: episode store is closed")

    def _check_writable(self, what: str = "append") -> None:
        self._check_open()
        if self.mode != "a":
            raise RuntimeError(f"{self.path}: opened read-only; open with mode='a' to {what}")

    # ------------------------------------------------------------------ reading

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

    @property
    def schema(self) -> StoreSchema:
        """What the store holds per row (see :class:`StoreSchema`)."""
        return StoreSchema(
            obs_spec=dict(self.obs_spec),
            action_dim=self.action_dim,
            control_hz=self.control_hz,
            robot=str(self.attrs.get("robot")),
            task=str(self.attrs.get("task")),
            units=dict(self.attrs.get("units") or {}),
            streams={s: dict(spec) for s, spec in self.stream_spec.items()},
            timestamps=self.has_timestamps,
            reward_source=self.reward_source,
        )

    def chunk_rows(self) -> dict[str, int]:
        """Rows per chunk of every row-appended array except ``meta/provenance`` and
        ``meta/stats``, by name (what :meth:`create`'s ``chunks`` takes)."""
        return {
            name: int(a.chunks[0])
            for name, a, _ in self._all_arrays()
            if not name.startswith(("meta/provenance", "meta/stats/", DIGESTS_ARRAY))
        }

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

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """All ``data/`` arrays of committed episode ``i``, keyed like ``append_episode``."""
        self._check_open()
        start, end = self.episode_bounds(i)
        return {k: np.asarray(a[start:end]) for k, a in self._data.items()}

    def recorded_provenance(self, i: int) -> EpisodeProvenance:
        """Provenance of committed episode ``i`` as committed (before any later label)."""
        self._check_open()
        i = self._episode_index(i)
        return EpisodeProvenance.from_json(self._prov_arr[i].item())

    def provenance(self, i: int) -> EpisodeProvenance:
        """Provenance of committed episode ``i``; ``success`` is its latest label, if any."""
        prov = self.recorded_provenance(i)
        latest = self._labels.latest_success()
        if prov.episode_id in latest:
            prov.success = latest[prov.episode_id]
        return prov

    def episode_ids(self) -> list[str]:
        """``episode_id`` of every committed episode, in index order."""
        return list(self._id_map())

    def episode_index(self, episode_id: str) -> int:
        """Index of the committed episode with this ``episode_id``."""
        try:
            return self._id_map()[episode_id]
        except KeyError:
            raise KeyError(
                f"{self.path}: no committed episode has episode_id {episode_id!r}"
            ) from None

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

    def array(self, key: str) -> np.ndarray:
        """All committed rows of ``data/<key>``."""
        self._check_open()
        return np.asarray(self._data_array(key)[: self._n_steps])

    def zarr_array(self, key: str) -> zarr.Array:
        """The underlying ``data/<key>`` zarr array; rows past ``n_steps`` are uncommitted."""
        return self._data_array(key)

    def _data_array(self, key: str) -> zarr.Array:
        if key == "reward":
            self.require_rewards()
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(
                f"{self.path}: no data key {key!r}; keys are {list(self._data)}"
            ) from None

    def iter_episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Committed episodes in order (each as :meth:`episode` returns it)."""
        for i in range(self._n_episodes):
            yield self.episode(i)

    # ------------------------------------------------------------------ streams

    @property
    def stream_names(self) -> list[str]:
        """Names of the declared streams."""
        return list(self.stream_keys)

    def _check_stream(self, name: str) -> None:
        if name not in self.stream_keys:
            raise KeyError(
                f"{self.path}: no stream {name!r}; declared streams: {list(self.stream_keys)}"
            )

    def n_stream_rows(self, name: str) -> int:
        """Committed rows of stream ``name``, over all episodes."""
        self._check_stream(name)
        return self._stream_rows[name]

    def stream_bounds(self, name: str, episode: int) -> tuple[int, int]:
        """Row range ``[start, end)`` of stream ``name`` in committed episode ``episode``."""
        self._check_stream(name)
        i = self._episode_index(episode)
        ends = self._stream_ends[name]
        return (int(ends[i - 1]) if i > 0 else 0), int(ends[i])

    def stream(self, name: str, episode: int) -> dict[str, np.ndarray]:
        """Rows of stream ``name`` in committed episode ``episode``: ``timestamp`` and
        every declared key."""
        self._check_open()
        start, end = self.stream_bounds(name, episode)
        return {k: np.asarray(a[start:end]) for k, a in self._streams[name].items()}

    def stream_zarr_array(self, name: str, key: str) -> zarr.Array:
        """The underlying ``streams/<name>/<key>`` array; rows past
        :meth:`n_stream_rows` are uncommitted."""
        self._check_stream(name)
        try:
            return self._streams[name][key]
        except KeyError:
            raise KeyError(
                f"{self.path}: stream {name!r} has no key {key!r}; keys are "
                f"{list(self._streams[name])}"
            ) from None

    def align_stream(self, name: str, episode: int, key: str | None = None) -> np.ndarray:
        """Align stream ``name`` to the control rows of ``episode`` by time.

        For each control row, the latest stream row whose timestamp is at or before the
        control row's timestamp (no look-ahead).

        Args:
            name: a declared stream.
            episode: committed episode index.
            key: None to get indices; a stream key to get that key's aligned rows.

        Returns:
            key None: int64 (T,) indices into ``stream(name, episode)`` rows, -1 where
            the stream has no row yet at a control row's time. With ``key``: the key's
            rows at those indices, shape (T, *shape).

        Raises:
            ValueError: the store has no control-row timestamps; or ``key`` was given
                and some control row precedes the stream's first row (use the indices).
        """
        self._check_open()
        if not self.has_timestamps:
            raise ValueError(
                f"{self.path}: control rows have no timestamps (store created with "
                "timestamps=False); streams cannot be aligned"
            )
        c0, c1 = self.episode_bounds(episode)
        s0, s1 = self.stream_bounds(name, episode)
        control_t = np.asarray(self._data[TIMESTAMP_KEY][c0:c1])
        stream_t = np.asarray(self._streams[name][TIMESTAMP_KEY][s0:s1])
        idx = np.searchsorted(stream_t, control_t, side="right").astype(np.int64) - 1
        if key is None:
            return idx
        arr = self.stream_zarr_array(name, key)
        if idx.size and idx[0] < 0:
            first = int(np.argmax(idx >= 0)) if (idx >= 0).any() else len(idx)
            raise ValueError(
                f"align_stream({name!r}, episode={episode}, key={key!r}): control rows 0-"
                f"{first - 1} precede the stream's first row; take the indices (key=None) "
                "and handle -1"
            )
        return np.asarray(arr.oindex[s0 + idx]) if idx.size else np.asarray(arr[s0:s0])

    # ------------------------------------------------------------------ labels

    def labels(self) -> list[SuccessLabel]:
        """The success-label log, oldest first (the latest entry per episode wins)."""
        return list(self._labels.labels)

    def preferences(self) -> list[Preference]:
        """The pairwise preferences, oldest first."""
        return list(self._labels.preferences)

    def set_success_label(self, i: int, value: bool | None, labeller: str) -> None:
        """Label committed episode ``i`` a success (True), failure (False) or unknown
        (None), overriding earlier labels; the log keeps who said what, when.

        Atomic (``labels.json`` is replaced) and touches no data chunk.

        Args:
            i: committed episode index.
            value: True, False or None.
            labeller: pseudonym of who labels (never a real name).
        """
        self._check_writable("label")
        value = check_success(value)
        check_labeller(labeller)
        prov = self.recorded_provenance(i)
        self._write_labels(
            LabelLog(
                [*self._labels.labels, SuccessLabel(prov.episode_id, value, labeller)],
                list(self._labels.preferences),
            )
        )

    def add_preference(self, id_a: str, id_b: str, preferred: str, labeller: str) -> None:
        """Record that episode ``id_a`` is preferred to ``id_b`` (``"a"``), the reverse
        (``"b"``), or neither (``"equal"``). Episodes are named by ``episode_id``.

        Atomic (``labels.json`` is replaced) and touches no data chunk.
        """
        self._check_writable("label")
        check_preferred(preferred)
        check_labeller(labeller)
        for which, eid in (("id_a", id_a), ("id_b", id_b)):
            if eid not in self._id_map():
                raise KeyError(f"{which}: {self.path} has no committed episode {eid!r}")
        if id_a == id_b:
            raise ValueError(f"add_preference: id_a and id_b are the same episode ({id_a!r})")
        self._write_labels(
            LabelLog(
                list(self._labels.labels),
                [*self._labels.preferences, Preference(id_a, id_b, preferred, labeller)],
            )
        )

    def _write_labels(self, log: LabelLog) -> None:
        if self._labels_error is not None:
            raise StoreFormatError(
                f"{self._labels_error}; repair or remove {self.path / LABELS_FILE} before "
                "labelling (writing now would drop the damaged log)"
            )
        _atomic_write_json(self.path / LABELS_FILE, log.to_doc())
        self._labels = log
        self._cache.clear()

    # ------------------------------------------------------------------ statistics

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
            m = Moments.merge_rows(counts, *(rows[:, j] for j in range(len(_STAT_FIELDS))))
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
        row = _row_bytes(tuple(a.shape[1:]), a.dtype)
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

    def mismatches(self, wanted: dict[str, Any], *, theirs: str = "expected") -> list[str]:
        """What differs between this store and what a run needs, one line per key, e.g.
        ``"task: store has 'reach', config has 'push'"`` with ``theirs="config has"``.

        Keys: ``robot``, ``task``, ``control_hz``, ``action_dim`` and ``obs_spec``
        (key -> (shape tuple, dtype string)).
        """
        have = {
            "robot": self.attrs.get("robot"),
            "task": self.attrs.get("task"),
            "control_hz": self.control_hz,
            "action_dim": self.action_dim,
            "obs_spec": {k: (tuple(sh), str(d)) for k, (sh, d) in self.obs_spec.items()},
        }
        unknown = sorted(set(wanted) - set(have))
        if unknown:
            raise KeyError(f"mismatches: no store property {unknown}; known: {sorted(have)}")
        return [
            f"{k}: store has {have[k]!r}, {theirs} {v!r}" for k, v in wanted.items() if have[k] != v
        ]

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

    # ------------------------------------------------------------------ validation

    def validate(self) -> ValidationReport:
        """Read every committed chunk and check checksums and consistency (see
        :func:`robot_rl.data.validation.validate_store`)."""
        self._check_open()
        return validate_store(self)

    # ------------------------------------------------------------------ writing

    def _check_frames(self, frames: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """Check and cast a block of control rows; raise ValueError before anything is
        written."""
        required = [k for k in (*self.obs_keys, *REQUIRED_FRAME_KEYS) if k in self._spec]
        if not self.has_rewards and isinstance(frames, dict) and "reward" in frames:
            raise ValueError(
                f"frames['reward']: {self.path} is a store without rewards (reward_source "
                f"{REWARD_NONE!r}); leave 'reward' out, or create the store with rewards"
            )
        if self.has_timestamps:
            required.append(TIMESTAMP_KEY)
        return check_block("frames", self._spec, required, frames, self.path)

    def _check_stream_rows(
        self, name: str, rows: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], int]:
        if name not in self.stream_keys:
            raise ValueError(
                f"streams: unknown stream {name!r}; declared streams: {list(self.stream_keys)}"
            )
        spec = self._stream_specs[name]
        return check_block(f"streams[{name!r}]", spec, list(spec), rows, self.path)

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
        data, n_new = self._check_frames(frames)
        if n_new == 0:
            raise ValueError(f"frames[{self.obs_keys[0]!r}]: episode has 0 steps; expected T >= 1")
        if TIMESTAMP_KEY in data:
            check_timestamps("frames", data[TIMESTAMP_KEY], None)
        if streams is not None and not isinstance(streams, dict):
            raise ValueError(f"streams: expected a dict name -> rows, got {type(streams).__name__}")
        checked_streams = {}
        for name, rows in (streams or {}).items():
            checked_streams[name] = self._check_stream_rows(name, rows)
            check_timestamps(f"streams[{name!r}]", checked_streams[name][0][TIMESTAMP_KEY], None)
        writer = self.begin_episode()
        with writer:
            writer._write_frames(data, n_new)
            for name, (rows, n) in checked_streams.items():
                writer._write_stream(name, rows, n)
            return writer.commit(provenance)

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
        _atomic_write_json(
            self.path / COMMIT_FILE,
            self._commit_doc(n_episodes, n_steps, stream_rows, self._generation),
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


def open_store(path: str | os.PathLike[str], mode: str = "r") -> EpisodeStore:
    """Open an existing episode store (see :meth:`EpisodeStore.open`)."""
    return EpisodeStore.open(path, mode=mode)
