"""The episode store's layout on disk and its schema: names, array specs and codecs.

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
``robot-rl-data relabel`` (:mod:`robot_rl.algos.rewards.relabel`): that writes a new store with
rewards from a learned reward model, ``reward_source="learned:<model id>"``. No
placeholder values (zeros, NaN) stand in for missing rewards, so every check of the data
(finite floats, digests, statistics) holds as for any store.

Only a local file system is supported for writing (recording, commits and purges stay
local; see DESIGN.md).

What is committed, and how a commit is made durable, is the commit record's concern
(:mod:`robot_rl.data.store_commit`); creating a store, :mod:`robot_rl.data.store_create`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec

from robot_rl.data.provenance import REWARD_NONE, REWARD_RECORDED

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
# Bumped whenever what content_hash() covers changes.
HASH_VERSION = 2

# Key of the float64 seconds column of control rows (optional) and of every stream.
TIMESTAMP_KEY = "timestamp"
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
# Fields of a persisted moments row, along axis 1 of ``meta/stats/<key>``.
STAT_FIELDS = ("mean", "m2", "min", "max")

# Names of keys and streams.
KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
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


def frame_spec(
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


def stream_spec(keys: Spec) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-row shape and dtype of every array of a stream: ``timestamp``, then its keys."""
    spec = {TIMESTAMP_KEY: ((), np.dtype(np.float64))}
    spec.update({k: (tuple(shape), np.dtype(dt)) for k, (shape, dt) in keys.items()})
    return spec


def row_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Uncompressed bytes of one row (at least 1)."""
    return max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)


def auto_chunk_rows(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Rows per chunk when none is asked for: about 1 MiB uncompressed, at most 4096."""
    return int(min(_MAX_CHUNK_ROWS, max(1, _TARGET_CHUNK_BYTES // row_bytes(shape, dtype))))


def compressors(dtype: np.dtype, bytes_per_row: int = 0) -> tuple[Any, ...]:
    """The codec pipeline of an array: Blosc zstd, then crc32c."""
    # crc32c comes last so the checksum covers the compressed bytes and is verified
    # before decompression is attempted.
    if bytes_per_row >= _FAST_CODEC_MIN_ROW_BYTES:
        # Images: recording several cameras must stay far faster than real time.
        return (BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"), Crc32cCodec())
    shuffle = "bitshuffle" if dtype.itemsize == 1 else "shuffle"
    return (BloscCodec(cname="zstd", clevel=3, shuffle=shuffle), Crc32cCodec())


def is_store_dir(path: Path) -> bool:
    """True when ``path`` holds a zarr group marked as an episode store."""
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return doc.get("attributes", {}).get("format") == FORMAT


def persisted_stat_keys(
    spec: dict[str, tuple[tuple[int, ...], np.dtype]], obs_spec: Spec
) -> list[str]:
    """Keys whose per-episode moments are persisted under ``meta/stats/`` (see
    ``PERSISTED_STATS_MAX_ELEMS``); ``spec`` is :func:`frame_spec`'s."""
    keys = [k for k in (*obs_spec, "action", "reward") if k in spec]  # no reward: none
    return [
        k for k in keys if int(np.prod(spec[k][0], dtype=np.int64)) <= PERSISTED_STATS_MAX_ELEMS
    ]


def commit_doc(
    n_episodes: int, n_steps: int, stream_rows: dict[str, int], generation: str | None
) -> dict[str, Any]:
    """The commit document (``commit.json``) for these committed counts."""
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
