"""The episode store: robot episodes in Zarr (v3 format) with an atomic commit protocol.

The layout follows Diffusion Policy's replay buffer, so its users feel at home:
control-rate arrays concatenated along time under ``data/`` and cumulative
``meta/episode_ends``. On disk (a directory)::

    <store>/
      zarr.json                 root group; attributes: format ("robot_rl.episode_store"),
                                format_version (1), control_hz, robot, task, obs_keys, units
      commit.json               the commit document: {"format", "format_version",
                                "n_episodes", "n_steps"}; the only source of truth for
                                what is committed
      .writer.lock              advisory lock (flock) held by the one writer in mode "a"
      data/<obs key>            (S, *shape) one array per observation key, dtype as declared
      data/action               (S, action_dim) float32
      data/reward               (S,) float32
      data/terminated           (S,) bool   the episode ended in a terminal state
      data/truncated            (S,) bool   the episode was cut (time limit, operator stop)
      data/clipped              (S,) bool   the safety filter changed the action
      data/intervention         (S,) bool   an operator was in control
      meta/episode_ends         (N,) int64, cumulative: episode i is rows [ends[i-1], ends[i])
      meta/provenance           (N,) string, one JSON object per episode (EpisodeProvenance)
      meta/stats/<key>          (N, 4, *shape) float64: per-episode moments (mean, m2,
                                min, max along axis 1) of each obs key of at most 1024
                                elements per step, action and reward

Plain zarr reads it: ``zarr.open_group(path)["data/action"][:n_steps]`` and
``json.loads(group["meta/provenance"][i].item())``, where ``n_steps`` comes from
``commit.json``.

Commit protocol. Zarr appends write array metadata (the new shape) before the chunks,
so a grown ``episode_ends`` says nothing about whether an episode's chunks are all on
disk. An episode exists only once ``commit.json``, written after every chunk of the
episode has been written and fsynced, counts it; it is replaced atomically (temporary
file in the same directory, fsync, ``os.replace``, fsync of the directory). Readers use
only the first ``n_steps`` rows and ``n_episodes`` episodes, so arrays left longer by a
crash are ignored, and the next append deletes that uncommitted tail before writing.

Checksums. Every array's codec pipeline ends in crc32c (after Blosc/zstd), so a damaged
chunk fails to decode; :meth:`EpisodeStore.validate` reads every committed chunk and
names the episodes and keys a bad chunk touches. Chunks are written even when they hold
only the fill value (``write_empty_chunks``), so a missing chunk file is detected too.

Only a local file system is supported for writing (recording, commits and purges stay
local; see DESIGN.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.storage import LocalStore

from robot_rl.data.stats import Moments

try:  # POSIX advisory locks; without them (Windows) the single-writer rule is unchecked.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

FORMAT = "robot_rl.episode_store"
FORMAT_VERSION = 1
COMMIT_FILE = "commit.json"
LOCK_FILE = ".writer.lock"

SOURCES = ("teleop", "policy", "scripted", "import")

# Per-frame arrays every episode has, besides the observation keys.
REQUIRED_FRAME_KEYS = ("action", "reward", "terminated", "truncated")
# Per-frame flags an episode may omit (then all False).
OPTIONAL_FLAG_KEYS = ("clipped", "intervention")
RESERVED_KEYS = (*REQUIRED_FRAME_KEYS, *OPTIONAL_FLAG_KEYS)

# Keys up to this many elements per step get persisted per-episode moments; bigger ones
# (images) would add a float64 copy of a frame per episode per statistic, so their
# moments are computed on demand from the data instead.
PERSISTED_STATS_MAX_ELEMS = 1024

_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_STAT_FIELDS = ("mean", "m2", "min", "max")
# Uncompressed bytes per data chunk the automatic chunk size aims at.
_TARGET_CHUNK_BYTES = 1 << 20
_MAX_CHUNK_ROWS = 4096


class StoreFormatError(ValueError):
    """A path is not an episode store, or its metadata contradicts itself."""


@dataclass
class EpisodeProvenance:
    """Where an episode came from; stored as one JSON object per episode.

    Attributes:
        source: how the actions were produced: one of ``teleop``, ``policy``,
            ``scripted``, ``import``.
        operator: operator pseudonym (never a real name).
        robot_id: the physical unit (or sim twin) that ran the episode, e.g. a serial.
        policy_id: the policy that acted, when ``source`` is ``policy``.
        checkpoint_hash: hash of the policy weights that acted.
        config_hash: hash of the resolved config of the run that recorded the episode.
        code_version: ``robot_rl.paths.code_version()`` of the recording code.
        safety_filter_version: version of the safety filter that vetted the actions.
        success: success label: True, False, or None for unknown.
        start_time_unix_s: wall-clock time of the episode's first step (UTC seconds since
            the epoch); defaults to when this object was created, so create it at the
            episode's start. None for imports with no known time.
        episode_id: globally unique id (hex UUID4). Episode indices change when stores
            are merged or purged; labels and reports refer to episodes by this id.
    """

    source: str
    operator: str = ""
    robot_id: str = ""
    policy_id: str = ""
    checkpoint_hash: str = ""
    config_hash: str = ""
    code_version: str = ""
    safety_filter_version: str = ""
    success: bool | None = None
    start_time_unix_s: float | None = field(default_factory=time.time)
    episode_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        """The canonical JSON form stored in ``meta/provenance`` (sorted keys)."""
        doc = asdict(self)
        if doc["success"] is not None:  # a numpy bool is not JSON-serializable
            doc["success"] = bool(doc["success"])
        if doc["start_time_unix_s"] is not None:
            doc["start_time_unix_s"] = float(doc["start_time_unix_s"])
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> EpisodeProvenance:
        """Parse the stored JSON form; fields unknown to this version are ignored."""
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def check(self) -> None:
        """Raise ValueError naming the field if any value is malformed."""
        if self.source not in SOURCES:
            raise ValueError(
                f"provenance.source: expected one of {list(SOURCES)}, got {self.source!r}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("source", "success", "start_time_unix_s"):
                continue
            if not isinstance(value, str):
                raise ValueError(f"provenance.{f.name}: expected a str, got {type(value).__name__}")
        if not self.episode_id:
            raise ValueError("provenance.episode_id: expected a non-empty str, got ''")
        if not (self.success is None or isinstance(self.success, bool | np.bool_)):
            raise ValueError(
                f"provenance.success: expected True, False or None, got {self.success!r}"
            )
        t = self.start_time_unix_s
        if t is not None and (
            isinstance(t, bool)
            or not isinstance(t, int | float | np.integer | np.floating)
            or not math.isfinite(t)
        ):
            raise ValueError(
                f"provenance.start_time_unix_s: expected a finite float or None, got {t!r}"
            )


@dataclass
class ValidationReport:
    """Result of :meth:`EpisodeStore.validate`.

    Attributes:
        problems: one ``(episode_index, key, message)`` per problem found; the episode
            index is None where a problem cannot be tied to an episode.
    """

    problems: list[tuple[int | None, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    @property
    def bad_episodes(self) -> list[int]:
        """Sorted indices of the episodes with at least one problem."""
        return sorted({ep for ep, _, _ in self.problems if ep is not None})

    def __str__(self) -> str:
        if self.ok:
            return "episode store OK"
        lines = [f"{len(self.problems)} problem(s):"]
        for ep, key, msg in self.problems:
            where = f"episode {ep}" if ep is not None else "store"
            lines.append(f"  {where}, {key}: {msg}")
        return "\n".join(lines)


def _frame_spec(
    obs_spec: dict[str, tuple[tuple[int, ...], str]], action_dim: int
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-step shape and dtype of every ``data/`` array, observation keys first."""
    spec = {k: (tuple(shape), np.dtype(dt)) for k, (shape, dt) in obs_spec.items()}
    spec["action"] = ((action_dim,), np.dtype(np.float32))
    spec["reward"] = ((), np.dtype(np.float32))
    for k in ("terminated", "truncated", *OPTIONAL_FLAG_KEYS):
        spec[k] = ((), np.dtype(bool))
    return spec


def _auto_chunk_rows(shape: tuple[int, ...], dtype: np.dtype) -> int:
    step_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    return int(min(_MAX_CHUNK_ROWS, max(1, _TARGET_CHUNK_BYTES // step_bytes)))


def _compressors(dtype: np.dtype) -> tuple[Any, ...]:
    # crc32c comes last so the checksum covers the compressed bytes and is verified
    # before decompression is attempted.
    shuffle = "bitshuffle" if dtype.itemsize == 1 else "shuffle"
    return (BloscCodec(cname="zstd", clevel=3, shuffle=shuffle), Crc32cCodec())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_json(path: Path, doc: dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` so readers see either the old or the new document."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def _is_store_dir(path: Path) -> bool:
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return doc.get("attributes", {}).get("format") == FORMAT


class EpisodeStore:
    """Episodes of robot data in a Zarr (v3 format) directory; see the module docstring.

    Open with :meth:`create`, :meth:`open` or :func:`open_store`. A store opened with
    mode ``"r"`` shows the episodes committed when it was opened (or last
    :meth:`refresh`-ed); one opened with ``"a"`` (only one writer at a time) appends
    episodes with :meth:`append_episode`.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str, _lock_fd: int | None = None):
        # Use create/open; this constructor expects an existing, committed store.
        self.path = Path(path)
        self.mode = mode
        self._lock_fd = _lock_fd
        self._closed = False
        self._zstore = LocalStore(self.path, read_only=(mode == "r"))
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
        self._cache: dict[Any, Any] = {}
        self._load_commit()
        self.obs_spec: dict[str, tuple[tuple[int, ...], str]] = {
            k: (tuple(self._data[k].shape[1:]), str(self._data[k].dtype)) for k in self.obs_keys
        }
        self.action_dim: int = int(self._data["action"].shape[1])
        self._spec = _frame_spec(self.obs_spec, self.action_dim)

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        obs_spec: dict[str, tuple[tuple[int, ...], str]],
        action_dim: int,
        control_hz: float,
        robot: str,
        task: str,
        units: dict[str, str] | None = None,
        chunk_steps: int | None = None,
        overwrite: bool = False,
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
            chunk_steps: rows per chunk for every ``data/`` array; None picks per key
                (about 1 MiB uncompressed, at most 4096 rows).
            overwrite: replace an existing episode store at ``path``. A directory that
                is not an episode store is never deleted.

        Returns:
            The new store, opened in mode ``"a"``.

        Raises:
            ValueError: a malformed argument (the message names it).
            FileExistsError: ``path`` exists and ``overwrite`` does not allow replacing it.
        """
        path = Path(path)
        cls._check_create_args(obs_spec, action_dim, control_hz, robot, task, units, chunk_steps)
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
                shutil.rmtree(path)
        path.mkdir(parents=False, exist_ok=True)

        store = LocalStore(path)
        root = zarr.create_group(store=store, zarr_format=3)
        spec = _frame_spec(obs_spec, action_dim)
        for key, (shape, dtype) in spec.items():
            rows = chunk_steps or _auto_chunk_rows(shape, dtype)
            root.create_array(
                f"data/{key}",
                shape=(0, *shape),
                chunks=(rows, *shape) if shape else (rows,),
                dtype=dtype,
                compressors=_compressors(dtype),
                fill_value=0,
            )
        root.create_array(
            "meta/episode_ends",
            shape=(0,),
            chunks=(1024,),
            dtype="int64",
            compressors=_compressors(np.dtype(np.int64)),
            fill_value=0,
        )
        root.create_array(
            "meta/provenance", shape=(0,), chunks=(256,), dtype=str, compressors=(Crc32cCodec(),)
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
            }
        )
        for meta in path.rglob("zarr.json"):
            _fsync_path(meta)
        # The commit document comes last: a crash before it leaves no store, not a bad one.
        _atomic_write_json(path / COMMIT_FILE, cls._commit_doc(0, 0))
        return cls.open(path, mode="a")

    @staticmethod
    def _check_create_args(obs_spec, action_dim, control_hz, robot, task, units, chunk_steps):
        if not isinstance(obs_spec, dict) or not obs_spec:
            raise ValueError("obs_spec: expected a non-empty dict key -> (shape, dtype)")
        for key, entry in obs_spec.items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise ValueError(
                    f"obs_spec key {key!r}: expected a name starting with a letter, made of "
                    "letters, digits, '_', '.', '-'"
                )
            if key in RESERVED_KEYS:
                raise ValueError(
                    f"obs_spec key {key!r} is reserved for per-frame data {list(RESERVED_KEYS)}"
                )
            try:
                shape, dtype = entry
                shape = tuple(int(s) for s in shape)
                dt = np.dtype(dtype)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"obs_spec[{key!r}]: expected (per-step shape tuple, dtype str), got "
                    f"{entry!r} ({e})"
                ) from None
            if any(s <= 0 for s in shape):
                raise ValueError(f"obs_spec[{key!r}]: shape {shape} has a non-positive size")
            if dt.kind not in "fiub":
                raise ValueError(
                    f"obs_spec[{key!r}]: dtype {dt} not supported (float, int, uint or bool)"
                )
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

    @staticmethod
    def _persisted_stat_keys(spec, obs_spec) -> list[str]:
        keys = [*obs_spec, "action", "reward"]
        return [
            k for k in keys if int(np.prod(spec[k][0], dtype=np.int64)) <= PERSISTED_STATS_MAX_ELEMS
        ]

    @classmethod
    def open(cls, path: str | os.PathLike[str], mode: str = "r") -> EpisodeStore:
        """Open an existing store.

        Args:
            path: the store's directory.
            mode: ``"r"`` read-only, or ``"a"`` to append (takes the writer lock).

        Raises:
            FileNotFoundError: nothing at ``path``.
            StoreFormatError: ``path`` is not an episode store, or its metadata is damaged.
            RuntimeError: mode ``"a"`` while another writer holds the store.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode: expected 'r' or 'a', got {mode!r}")
        path = Path(path)
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
            return cls(path, mode, _lock_fd=lock_fd)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise

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

        keys = [*self.obs_keys, *RESERVED_KEYS]
        self._data: dict[str, zarr.Array] = {k: arr(f"data/{k}") for k in keys}
        self._ends_arr = arr("meta/episode_ends")
        self._prov_arr = arr("meta/provenance")
        self._stats_arr: dict[str, zarr.Array] = {}
        stats_dir = self.path / "meta" / "stats"
        for key in [*self.obs_keys, "action", "reward"]:
            if (stats_dir / key).is_dir():
                self._stats_arr[key] = arr(f"meta/stats/{key}")

    def _load_commit(self) -> None:
        # Commit document first, arrays second: array metadata is written before the
        # chunks and the commit after them, so arrays opened now cover every committed
        # row. Opening the arrays first could see shapes older than the commit.
        try:
            doc = json.loads((self.path / COMMIT_FILE).read_text(encoding="utf-8"))
            n_ep, n_steps = int(doc["n_episodes"]), int(doc["n_steps"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreFormatError(f"{self.path}/{COMMIT_FILE}: unreadable ({e})") from None
        self._open_arrays()
        try:
            ends = np.asarray(self._ends_arr[:n_ep], dtype=np.int64)
        except Exception as e:  # a failed checksum surfaces as ValueError, I/O as OSError
            raise StoreFormatError(
                f"{self.path}: meta/episode_ends unreadable ({type(e).__name__}: {e}); "
                "without it no episode can be located"
            ) from None
        if len(ends) != n_ep or (n_ep and int(ends[-1]) != n_steps) or (not n_ep and n_steps):
            raise StoreFormatError(
                f"{self.path}: {COMMIT_FILE} says {n_ep} episodes / {n_steps} steps but "
                f"meta/episode_ends has {len(ends)} committed entries ending at "
                f"{int(ends[-1]) if len(ends) else 0}"
            )
        expected_rows = [(f"data/{k}", a, n_steps) for k, a in self._data.items()]
        expected_rows.append(("meta/provenance", self._prov_arr, n_ep))
        expected_rows += [(f"meta/stats/{k}", a, n_ep) for k, a in self._stats_arr.items()]
        for name, a, n in expected_rows:
            if a.shape[0] < n:
                raise StoreFormatError(
                    f"{self.path}: {name} has {a.shape[0]} rows, fewer than the {n} committed"
                )
        self._n_episodes = n_ep
        self._n_steps = n_steps
        self._ends = ends
        self._ends.setflags(write=False)
        self._cache.clear()

    @staticmethod
    def _commit_doc(n_episodes: int, n_steps: int) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_episodes": n_episodes,
            "n_steps": n_steps,
        }

    def refresh(self) -> None:
        """Pick up episodes committed by a writer since this store was opened."""
        self._check_open()
        self._load_commit()

    def close(self) -> None:
        """Release the writer lock (mode ``"a"``); the object is unusable afterwards."""
        if self._closed:
            return
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
    def data_keys(self) -> list[str]:
        """Keys of the ``data/`` arrays: observation keys first, then the frame keys."""
        return list(self._data)

    def episode_bounds(self, i: int) -> tuple[int, int]:
        """Row range ``[start, end)`` of committed episode ``i`` (negative counts back)."""
        n = self._n_episodes
        if not isinstance(i, int | np.integer) or not -n <= i < n:
            raise IndexError(
                f"episode index {i!r} out of range: {self.path} has {n} committed episode(s)"
            )
        i = int(i) % n
        start = int(self._ends[i - 1]) if i > 0 else 0
        return start, int(self._ends[i])

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """All ``data/`` arrays of committed episode ``i``, keyed like ``append_episode``."""
        self._check_open()
        start, end = self.episode_bounds(i)
        return {k: np.asarray(a[start:end]) for k, a in self._data.items()}

    def provenance(self, i: int) -> EpisodeProvenance:
        """Provenance of committed episode ``i``."""
        self._check_open()
        self.episode_bounds(i)
        return EpisodeProvenance.from_json(self._prov_arr[int(i) % self._n_episodes].item())

    def array(self, key: str) -> np.ndarray:
        """All committed rows of ``data/<key>``."""
        self._check_open()
        return np.asarray(self._data_array(key)[: self._n_steps])

    def zarr_array(self, key: str) -> zarr.Array:
        """The underlying ``data/<key>`` zarr array; rows past ``n_steps`` are uncommitted."""
        return self._data_array(key)

    def _data_array(self, key: str) -> zarr.Array:
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

    def stats(self, key: str) -> dict[str, Any]:
        """Per-dimension statistics of ``data/<key>`` over the committed rows.

        Mean, std (population), min and max come from the per-episode moments persisted
        at append time (or, for keys too large to persist, one pass over the data);
        q01 and q99 are exact (linear interpolation, as ``np.quantile``) and read the
        key's committed rows once per commit.

        Returns:
            dict with ``count`` (int) and ``mean``, ``std``, ``min``, ``max``, ``q01``,
            ``q99`` as float64 arrays of the key's per-step shape.
        """
        self._check_open()
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
            data = self.array(key)
        else:
            data = self.array(key)
            m = Moments.from_rows(data)
        q01, q99 = np.quantile(data.astype(np.float64, copy=False), [0.01, 0.99], axis=0)
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

    def content_hash(self) -> str:
        """SHA-256 (hex) of the committed content: schema, data, episode ends, provenance.

        Reads every committed row, so it detects any change of a committed value, and
        depends only on the committed content (not on chunking, compression or an
        uncommitted tail), so it is stable across reopening.
        """
        self._check_open()
        cache_key = ("hash", self._n_steps, self._n_episodes)
        if cache_key in self._cache:
            return self._cache[cache_key]
        h = hashlib.sha256()
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "control_hz": self.control_hz,
            "robot": self.attrs.get("robot"),
            "task": self.attrs.get("task"),
            "obs_keys": self.obs_keys,
            "units": self.attrs.get("units", {}),
            "spec": {k: [list(s), str(d)] for k, (s, d) in self._spec.items()},
            "n_episodes": self._n_episodes,
            "n_steps": self._n_steps,
        }
        h.update(json.dumps(header, sort_keys=True).encode())
        for key in sorted(self._data):
            a = self._data[key]
            step = a.chunks[0] * max(1, 4096 // a.chunks[0])
            h.update(f"\0data/{key}\0".encode())
            for s in range(0, self._n_steps, step):
                block = np.asarray(a[s : min(s + step, self._n_steps)])
                h.update(np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).data)
        h.update(b"\0meta/episode_ends\0")
        h.update(np.ascontiguousarray(self._ends, dtype="<i8").data)
        h.update(b"\0meta/provenance\0")
        if self._n_episodes:
            for text in self._prov_arr[: self._n_episodes]:
                b = str(text).encode()
                h.update(len(b).to_bytes(8, "little") + b)
        digest = h.hexdigest()
        self._cache[cache_key] = digest
        return digest

    # ------------------------------------------------------------------ validation

    def validate(self) -> ValidationReport:
        """Read every committed chunk and check checksums and consistency.

        Checks: every chunk file covering committed rows exists and decodes (crc32c),
        episode ends increase and match the commit document, float data is finite, and
        provenance parses. Each problem names the episode(s) a damaged chunk holds rows
        of, and the key.
        """
        self._check_open()
        report = ValidationReport()
        ends = self._ends
        n_ep, n_steps = self._n_episodes, self._n_steps

        def episodes_of_rows(a: int, b: int) -> list[int]:
            # Episodes with at least one row in [a, b).
            first = int(np.searchsorted(ends, a, side="right"))
            last = int(np.searchsorted(ends, b - 1, side="right"))
            return list(range(first, min(last, n_ep - 1) + 1))

        def check_array(name: str, a: zarr.Array, n_rows: int, row_episodes) -> None:
            cs = a.chunks[0]
            array_dir = self.path / name
            for c in range(math.ceil(n_rows / cs)):
                lo, hi = c * cs, min((c + 1) * cs, n_rows)
                chunk_file = array_dir / "c" / str(c) / Path(*(["0"] * (a.ndim - 1)))
                problem = None
                if not chunk_file.is_file():
                    problem = f"chunk file {chunk_file.relative_to(self.path)} is missing"
                else:
                    try:
                        block = np.asarray(a[lo:hi])
                    except Exception as e:  # zarr raises ValueError for a bad crc, others
                        problem = (
                            f"chunk {chunk_file.relative_to(self.path)} (rows {lo}-{hi - 1}) "
                            f"unreadable: {type(e).__name__}: {e}"
                        )
                    else:
                        if block.dtype.kind == "f" and not np.isfinite(block).all():
                            bad_rows = np.nonzero(
                                ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
                            )[0]
                            for r in bad_rows[:1]:
                                for ep in row_episodes(lo + int(r), lo + int(r) + 1):
                                    report.problems.append(
                                        (ep, name, f"non-finite value at row {lo + int(r)}")
                                    )
                if problem is not None:
                    for ep in row_episodes(lo, hi):
                        report.problems.append((ep, name, problem))

        if ends.size and (np.any(np.diff(ends) <= 0) or ends[0] <= 0):
            report.problems.append(
                (None, "meta/episode_ends", "episode ends are not strictly increasing")
            )

        def per_episode(a: int, b: int) -> list[int]:
            return list(range(a, b))

        check_array("meta/episode_ends", self._ends_arr, n_ep, per_episode)
        for key, a in self._data.items():
            check_array(f"data/{key}", a, n_steps, episodes_of_rows)
        for key, a in self._stats_arr.items():
            check_array(f"meta/stats/{key}", a, n_ep, per_episode)
        check_array("meta/provenance", self._prov_arr, n_ep, per_episode)
        for i in range(n_ep):
            try:
                EpisodeProvenance.from_json(self._prov_arr[i].item()).check()
            except Exception as e:
                if not any(p[0] == i and p[1] == "meta/provenance" for p in report.problems):
                    report.problems.append((i, "meta/provenance", f"bad provenance: {e}"))
        return report

    # ------------------------------------------------------------------ writing

    def _check_frames(self, frames: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """Check and cast one episode's frames; raise ValueError before anything is written."""
        if not isinstance(frames, dict):
            raise ValueError(f"frames: expected a dict key -> array, got {type(frames).__name__}")
        spec = self._spec
        unknown = sorted(set(frames) - set(spec))
        if unknown:
            raise ValueError(
                f"frames: unknown key(s) {unknown}; expected {list(spec)} ({self.path})"
            )
        required = [*self.obs_keys, *REQUIRED_FRAME_KEYS]
        missing = [k for k in required if k not in frames]
        if missing:
            raise ValueError(f"frames: missing key(s) {missing}; every episode needs {required}")
        n_steps = None
        out: dict[str, np.ndarray] = {}
        for key in spec:
            shape, dtype = spec[key]
            if key not in frames:
                continue
            x = np.asarray(frames[key])
            if x.ndim != 1 + len(shape) or tuple(x.shape[1:]) != shape:
                raise ValueError(
                    f"frames[{key!r}]: expected shape (T, {', '.join(map(str, shape))}) "
                    f"(per-step shape {shape}), got {x.shape}".replace(", )", ")")
                )
            if n_steps is None:
                n_steps = x.shape[0]
                first_key = key
                if n_steps == 0:
                    raise ValueError(f"frames[{key!r}]: episode has 0 steps; expected T >= 1")
            elif x.shape[0] != n_steps:
                raise ValueError(
                    f"frames[{key!r}]: has {x.shape[0]} steps, but frames[{first_key!r}] has "
                    f"{n_steps}; every key needs the same T"
                )
            out[key] = self._cast(key, x, dtype)
        for key in OPTIONAL_FLAG_KEYS:
            out.setdefault(key, np.zeros(n_steps, dtype=bool))
        return out, int(n_steps)

    @staticmethod
    def _cast(key: str, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        src = x.dtype
        ok = (
            src.kind == dtype.kind
            or (dtype.kind in "iu" and src.kind in "iu")
            or (dtype.kind == "b" and src.kind in "iu")
        )
        if not ok:
            raise ValueError(
                f"frames[{key!r}]: expected dtype {dtype} (kind {dtype.kind!r}), got {src}"
            )
        if dtype.kind == "b":
            if src.kind != "b" and not np.isin(x, (0, 1)).all():
                raise ValueError(
                    f"frames[{key!r}]: expected bool (or 0/1) values, got {src} with other values"
                )
            return x.astype(bool)
        if dtype.kind in "iu" and x.size:
            info = np.iinfo(dtype)
            lo, hi = x.min(), x.max()
            if lo < info.min or hi > info.max:
                raise ValueError(
                    f"frames[{key!r}]: values in [{lo}, {hi}] do not fit dtype {dtype} "
                    f"([{info.min}, {info.max}])"
                )
        if dtype.kind == "f":
            finite = np.isfinite(x)
            if not finite.all():
                step = int(np.argwhere(~finite)[0][0])
                raise ValueError(f"frames[{key!r}]: NaN or inf at step {step}; expected finite")
            with np.errstate(over="ignore"):
                y = x.astype(dtype)
            if not np.isfinite(y).all():
                raise ValueError(
                    f"frames[{key!r}]: values overflow {dtype} (max |x| = {np.abs(x).max()})"
                )
            return y
        return x.astype(dtype)

    def append_episode(self, frames: dict[str, np.ndarray], provenance: EpisodeProvenance) -> int:
        """Append one episode and commit it.

        Args:
            frames: every observation key, ``action`` (T, action_dim), ``reward`` (T,),
                ``terminated`` (T,), ``truncated`` (T,), and optionally ``clipped`` and
                ``intervention`` (T,) bool (default all False). Float keys must be finite;
                values are cast to the stored dtype within the same kind.
            provenance: where the episode came from.

        Returns:
            The new episode's index.

        Raises:
            ValueError: malformed frames or provenance (the message names the key, what
                was expected and what was given); nothing is written.
            RuntimeError: the store is not open for appending.
        """
        self._check_open()
        if self.mode != "a":
            raise RuntimeError(f"{self.path}: opened read-only; open with mode='a' to append")
        if not isinstance(provenance, EpisodeProvenance):
            raise ValueError(
                f"provenance: expected an EpisodeProvenance, got {type(provenance).__name__}"
            )
        provenance.check()
        data, n_new = self._check_frames(frames)
        moments = {
            k: Moments.from_rows(data[k])
            for k in self._stats_arr  # before any write
        }

        n0, e0 = self._n_steps, self._n_episodes
        touched: list[tuple[str, zarr.Array, int, int]] = []
        for key, a in self._data.items():
            self._write_rows(f"data/{key}", a, n0, data[key])
            touched.append((f"data/{key}", a, n0, n0 + n_new))
        self._write_rows("meta/episode_ends", self._ends_arr, e0, np.array([n0 + n_new]))
        self._write_rows(
            "meta/provenance",
            self._prov_arr,
            e0,
            np.array([provenance.to_json()], dtype=np.dtypes.StringDType()),
        )
        touched.append(("meta/episode_ends", self._ends_arr, e0, e0 + 1))
        touched.append(("meta/provenance", self._prov_arr, e0, e0 + 1))
        for key, a in self._stats_arr.items():
            m = moments[key]
            row = np.stack([getattr(m, name) for name in _STAT_FIELDS])[None]
            self._write_rows(f"meta/stats/{key}", a, e0, row)
            touched.append((f"meta/stats/{key}", a, e0, e0 + 1))
        for name, a, lo, hi in touched:
            self._fsync_chunks(name, a, lo, hi)
        # Only now, with every chunk durable, does the episode exist.
        self._commit(e0 + 1, n0 + n_new)
        return e0

    def _write_rows(self, name: str, a: zarr.Array, committed: int, rows: np.ndarray) -> None:
        """Write ``rows`` at ``committed``, discarding any uncommitted tail left by a crash."""
        if a.shape[0] > committed:
            # Whole chunks past the committed rows hold only uncommitted data, perhaps torn
            # by the crash that left them; zarr's resize does not delete them, so do it
            # here and no stale chunk outlives the crash.
            first_dead = math.ceil(committed / a.chunks[0])
            chunk_root = self.path / name / "c"
            if chunk_root.is_dir():
                for child in chunk_root.iterdir():
                    if child.name.isdigit() and int(child.name) >= first_dead:
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
        a.resize((committed + len(rows), *a.shape[1:]))
        a[committed : committed + len(rows)] = rows

    def _fsync_chunks(self, name: str, a: zarr.Array, lo: int, hi: int) -> None:
        # zarr writes files atomically (rename) but never fsyncs them; the commit
        # document must not reach the disk before the chunks it covers.
        cs = a.chunks[0]
        array_dir = self.path / name
        dirs = {array_dir, array_dir / "c"}
        for c in range(lo // cs, (hi - 1) // cs + 1):
            f = array_dir / "c" / str(c) / Path(*(["0"] * (a.ndim - 1)))
            if f.is_file():
                _fsync_path(f)
            d = f.parent
            while d != array_dir:
                dirs.add(d)
                d = d.parent
        _fsync_path(array_dir / "zarr.json")
        for d in dirs:
            if d.is_dir():
                _fsync_path(d)

    def _commit(self, n_episodes: int, n_steps: int) -> None:
        _atomic_write_json(self.path / COMMIT_FILE, self._commit_doc(n_episodes, n_steps))
        self._n_episodes, self._n_steps = n_episodes, n_steps
        ends = np.append(self._ends, np.int64(n_steps))
        ends.setflags(write=False)
        self._ends = ends
        self._cache.clear()


def open_store(path: str | os.PathLike[str], mode: str = "r") -> EpisodeStore:
    """Open an existing episode store (see :meth:`EpisodeStore.open`)."""
    return EpisodeStore.open(path, mode=mode)
