"""The one writer of a store directory, and what crashed rewrites leave beside it.

One process at a time appends to a store (mode ``"a"``): it holds an advisory ``flock`` on
``.writer.lock`` (without POSIX locks, on Windows, the rule is unchecked). Rewrites (create
with overwrite, purge, filter, merge, split, relabel, strip) build the new store in a
hidden sibling directory (``.<store name>.<tag>-<12 hex>``) and swap it in; a crash can
leave such a sibling, perhaps holding purged data, which the next writer deletes
(:func:`stale_siblings`) and ``validate`` reports. A swap interrupted between its two
renames is finished by the next writer (:func:`finish_swap_locked`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from robot_rl.data.atomic_fs import finish_interrupted_swap, journal_path
from robot_rl.data.store_layout import LOCK_FILE, REWRITE_TAGS

try:  # POSIX advisory locks; without them (Windows) the single-writer rule is unchecked.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_SIBLING_RE = re.compile(
    r"^\.(?P<name>.+)\.(?:" + "|".join(REWRITE_TAGS) + r")-[0-9a-f]{12}(\.old)?$"
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


def acquire_writer_lock(path: Path) -> int:
    """Take the writer lock of the store directory ``path``; return its descriptor (closing
    it releases the lock).

    Raises:
        RuntimeError: another writer holds the lock.
    """
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


def finish_swap_locked(path: Path) -> None:
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
        fd = acquire_writer_lock(target)
    try:
        finish_interrupted_swap(path)
    finally:
        if fd is not None:
            os.close(fd)
