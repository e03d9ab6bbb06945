"""Durable, atomic operations on a local file system: fsync, document replace, directory swap.

The episode store's crash safety rests on three primitives:

- :func:`fsync_path`: make a file's bytes, or a directory's entries, durable.
- :func:`atomic_write_json`: replace a small JSON document so that a reader, or a process
  killed at any instant, sees the old or the new document, never a torn one.
- :func:`swap_dirs` / :func:`publish_dir`: put a complete new directory in place of an old
  one (or at a free path) with renames, so that a crash at any point leaves either the old
  or the new directory at the path, complete, never a mix. On Linux the swap is one
  ``renameat2(RENAME_EXCHANGE)``; elsewhere it is two renames guarded by a journal that
  :func:`finish_interrupted_swap` completes after a crash between them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def fsync_path(path: Path) -> None:
    """fsync a file (its data) or a directory (its entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, doc: dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` so readers see either the old or the new document.

    Temporary file in the same directory, fsync, ``os.replace``, fsync of the directory.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def fsync_tree(root: Path) -> None:
    """fsync every file and directory under ``root`` (and ``root``), deepest first."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux >= 3.15); False where the call is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # kernel or file system without RENAME_EXCHANGE: use the journal
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


def journal_path(path: Path) -> Path:
    """The journal file of a two-rename swap onto ``path``."""
    return path.with_name(f".{path.name}.swap.json")


def swap_dirs(new: Path, path: Path) -> Path:
    """Put the complete directory ``new`` at ``path``; the old one ends up at ``new``.

    Both must be on the same file system (siblings). Afterwards the old directory is at
    the returned path (the caller deletes it). A crash at any point leaves, at ``path``, either
    the old or the new directory, complete; with the journal fallback a crash between
    its two renames leaves ``path`` missing until :func:`finish_interrupted_swap` (which
    :meth:`EpisodeStore.open` calls) moves the new directory there.

    Returns:
        Where the old directory now is.
    """
    if _renameat2_exchange(new, path):
        fsync_path(path.parent)
        return new
    journal = journal_path(path)
    old = path.with_name(f"{new.name}.old")
    atomic_write_json(journal, {"new": new.name, "old": old.name})
    os.rename(path, old)
    try:
        _rename_second(new, path)
    except BaseException:
        os.rename(old, path)  # an error (not a crash): put the old directory back
        journal.unlink(missing_ok=True)
        fsync_path(path.parent)
        raise
    fsync_path(path.parent)
    journal.unlink(missing_ok=True)  # a concurrent open may have finished the swap for us
    fsync_path(path.parent)
    return old


def _rename_second(new: Path, path: Path) -> None:
    # Its own function so tests can simulate a crash between the journal's two renames.
    os.rename(new, path)


def finish_interrupted_swap(path: Path) -> bool:
    """Complete a journal swap that a crash interrupted between its renames.

    Returns:
        True if a swap was finished (``path`` now holds the new directory, or the old one
        when the new one is gone), False if there was nothing to do.
    """
    journal = journal_path(path)
    if not journal.is_file():
        return False
    try:
        doc = json.loads(journal.read_text(encoding="utf-8"))
        new, old = path.with_name(doc["new"]), path.with_name(doc["old"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not path.exists():
        if new.is_dir():
            os.rename(new, path)
        elif old.is_dir():
            os.rename(old, path)
        fsync_path(path.parent)
    journal.unlink(missing_ok=True)
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    return True


def publish_dir(new: Path, path: Path) -> None:
    """Move the complete directory ``new`` to the free ``path`` (absent or an empty dir)."""
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise FileExistsError(f"{path} already exists and is not empty; choose another path")
    os.rename(new, path)
    fsync_path(path.parent)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, ignoring a missing one."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
