"""Reading a store through a guard: a rewritten store or a missing chunk is an error.

A purge (or ``create(overwrite=True)``) swaps a new store directory in at the path. A store
object opened before holds the old counts but reads through the path, so every read first
checks the generation in ``commit.json`` (one ``stat`` per chunk read; the file is re-read
only when it changed) and raises :class:`StoreRewrittenError` ("reopen it") on a mismatch.
A chunk of committed rows that is missing raises :class:`MissingChunkError` instead of
reading as zeros. A purge does not wait for readers to close (no reader locks): they fail
on their next read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from zarr.storage import LocalStore

from robot_rl.data.store_layout import COMMIT_FILE, MissingChunkError, StoreRewrittenError


def read_generation(commit_file: Path) -> str | None:
    """The ``generation`` of a commit document (None for stores older than format 3)."""
    doc = json.loads(commit_file.read_text(encoding="utf-8"))
    gen = doc.get("generation")
    return str(gen) if gen is not None else None


class CheckedLocalStore(LocalStore):
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
        """Raise :class:`StoreRewrittenError` if the store at the path is no longer the
        generation this one was opened at."""
        if self.generation is None:
            return
        commit_file = Path(self.root) / COMMIT_FILE
        try:
            st = os.stat(commit_file)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if key == self._commit_stat:
                return
            gen = read_generation(commit_file)
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
