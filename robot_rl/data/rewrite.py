"""Writing a complete new store from episodes of others: what every rewrite shares.

Episodes are copied through the ordinary writer (so the copy is validated, checksummed
and gets fresh statistics; values, provenance and episode ids are kept bit for bit), with
the labels and preferences given, and the new store is validated before it becomes
visible. It is built in a hidden sibling directory (same file system) and then published
with a rename (:func:`write_new_store`) or swapped in by the caller
(:func:`build_store` into :func:`temp_sibling`). The governance operations
(:mod:`robot_rl.data.governance`) and reward relabelling
(:mod:`robot_rl.algos.rewards.relabel`) are built on it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from robot_rl.data.atomic_fs import publish_dir, remove_tree
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore, StoreSchema
from robot_rl.data.episode_writer import EpisodeWriter
from robot_rl.data.labels import LabelLog

# Rows read per block when copying an episode (bounded memory for image episodes).
_COPY_BLOCK_BYTES = 64 << 20


#: Per copied episode: rows to write instead of the source's (key -> rows, or None to
#: leave the key out) and the provenance to record.
EpisodeEdit = Callable[[EpisodeStore, int], tuple[dict[str, np.ndarray | None], EpisodeProvenance]]


def append_rows(
    src: EpisodeStore, i: int, w: EpisodeWriter, replace: dict[str, np.ndarray | None]
) -> None:
    """Append episode ``i`` of ``src`` to the open writer, in blocks of bounded memory,
    with the rows of the keys in ``replace`` swapped (or left out)."""

    def block_rows(arrays) -> int:
        row = sum(int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize for a in arrays)
        return max(1, _COPY_BLOCK_BYTES // max(1, row))

    start, end = src.episode_bounds(i)
    arrays = {k: a for k, a in src._data.items() if k not in replace}
    new = {k: v for k, v in replace.items() if v is not None}
    step = block_rows([*arrays.values(), *new.values()])
    for lo in range(start, end, step):
        hi = min(lo + step, end)
        frames = {k: np.asarray(a[lo:hi]) for k, a in arrays.items()}
        frames.update({k: v[lo - start : hi - start] for k, v in new.items()})
        w.append(frames)
    for s, sarrays in src._streams.items():
        s0, s1 = src.stream_bounds(s, i)
        step = block_rows(sarrays.values())
        for lo in range(s0, s1, step):
            hi = min(lo + step, s1)
            w.append_stream(s, {k: np.asarray(a[lo:hi]) for k, a in sarrays.items()})


def build_store(
    tmp: Path,
    schema: StoreSchema,
    chunks: dict[str, int],
    episodes: Sequence[tuple[EpisodeStore, int]],
    labels: LabelLog,
    edit: EpisodeEdit | None = None,
) -> None:
    """Write a complete, validated store at ``tmp`` holding ``episodes`` (each changed by
    ``edit``, if given) and ``labels``.

    The store is not visible to anyone until it is published, so the episodes go through
    one writer and commit together at the end (:meth:`EpisodeWriter.end_episode`): one
    write per array for the whole store instead of a commit, with its fsyncs, per episode.
    """
    with EpisodeStore.create(tmp, **schema.create_kwargs(), chunks=chunks) as out:
        if episodes:
            with out.begin_episode() as w:
                for n, (src, i) in enumerate(episodes):
                    replace, prov = edit(src, i) if edit else ({}, src.recorded_provenance(i))
                    append_rows(src, i, w, replace)
                    if n + 1 < len(episodes):
                        w.end_episode(prov)
                    else:
                        w.commit(prov)
        if labels.labels or labels.preferences:
            out._write_labels(labels)
    with EpisodeStore.open(tmp) as check:
        report = check.validate()
        if not report.ok:
            raise RuntimeError(f"the rewritten store failed validation; nothing changed: {report}")


def temp_sibling(path: Path, tag: str) -> Path:
    """A free hidden sibling of ``path`` for a rewrite tagged ``tag`` (see
    ``robot_rl.data.store_layout.REWRITE_TAGS``)."""
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


def write_new_store(
    dst: Path,
    tag: str,
    schema: StoreSchema,
    chunks: dict[str, int],
    episodes: Sequence[tuple[EpisodeStore, int]],
    labels: LabelLog,
    edit: EpisodeEdit | None = None,
) -> None:
    """Build a store next to the free path ``dst`` and rename it there."""
    check_free(dst)
    tmp = temp_sibling(dst, tag)
    try:
        build_store(tmp, schema, chunks, episodes, labels, edit)
        publish_dir(tmp, dst)
    except BaseException:
        remove_tree(tmp)
        raise


def check_free(dst: Path) -> None:
    """Raise unless ``dst`` is free for a new store (absent, or an empty directory) and
    its parent exists."""
    if dst.exists() and not (dst.is_dir() and not any(dst.iterdir())):
        raise FileExistsError(f"{dst} already exists; choose a new output path")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"{dst.parent}: output directory does not exist")
