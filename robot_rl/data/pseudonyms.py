"""Operator pseudonyms: stores hold pseudonyms, never names.

:func:`pseudonymize` is an HMAC-SHA256 of the name keyed with a secret salt that lives
outside every store, in the file named by ``$ROBOT_RL_PSEUDONYM_SALT_FILE`` (default
``~/.config/robot_rl/pseudonym_salt``), created with 32 random bytes and mode 0600 when
missing (recording creates it, and says so; purging and labelling never do, since a new
salt matches no recorded pseudonym). Without the salt a pseudonym cannot be traced back to
a name by trying names; with it, the same name always gives the same pseudonym, so one
operator's episodes can be found (and purged) across stores recorded on machines that
share the salt file. Names are stripped, case-folded and NFC-normalized before hashing,
so ``"Ann"``, ``" ann "`` and ``"ANN"`` are one operator.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import sys
import unicodedata
import uuid
import warnings
from pathlib import Path

from robot_rl.data.atomic_fs import fsync_path

SALT_FILE_ENV = "ROBOT_RL_PSEUDONYM_SALT_FILE"
DEFAULT_SALT_FILE = "~/.config/robot_rl/pseudonym_salt"
SALT_BYTES = 32
# 64 bits of the HMAC: collisions among even a million operators are negligible.
PSEUDONYM_HEX_CHARS = 16


def salt_file_path() -> Path:
    """Where the pseudonym salt lives: ``$ROBOT_RL_PSEUDONYM_SALT_FILE`` or the default."""
    return Path(os.environ.get(SALT_FILE_ENV) or DEFAULT_SALT_FILE).expanduser()


def load_salt(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> bytes:
    """The pseudonym salt, creating the salt file (random bytes, mode 0600) if missing.

    Args:
        path: the salt file; default :func:`salt_file_path`. Keep it outside every store
            (and out of version control): whoever holds it can test guessed names.
        create: create a missing salt file (and say so on stderr); False raises instead,
            for lookups of existing pseudonyms (purge, label), which a new salt cannot match.

    Raises:
        ValueError: the file is shorter than 16 bytes.
        FileNotFoundError: the file is missing and ``create`` is False (names the path).
    """
    p = Path(path).expanduser() if path is not None else salt_file_path()
    if not p.exists() and not create:
        raise FileNotFoundError(
            f"{p}: no pseudonym salt file. Pseudonyms of recorded operators can only be "
            f"computed with the salt they were recorded with: copy that salt file here or "
            f"point ${SALT_FILE_ENV} at it (or give the pseudonym itself)"
        )
    if not p.exists():
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, secrets.token_bytes(SALT_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        created = False
        try:
            os.link(tmp, p)  # atomic create-if-absent: concurrent creators agree on one salt
            created = True
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        fsync_path(p.parent)
        if created:
            print(
                f"created a new pseudonym salt file {p}; pseudonyms made with it match no "
                "other salt's, so share this file with every machine that records or purges",
                file=sys.stderr,
            )
    salt = p.read_bytes()
    if len(salt) < 16:
        raise ValueError(f"{p}: pseudonym salt file holds {len(salt)} bytes; expected >= 16")
    if p.stat().st_mode & 0o077:
        warnings.warn(
            f"{p}: pseudonym salt file is readable by others (mode "
            f"{p.stat().st_mode & 0o777:o}); chmod 600 it",
            stacklevel=2,
        )
    return salt


def pseudonymize(operator_name: str, salt: bytes) -> str:
    """Pseudonym of an operator: the first 16 hex digits of HMAC-SHA256(salt, name).

    The name is stripped, case-folded and NFC-normalized first, so the same name typed
    twice (in any case) maps to the same pseudonym.

    Raises:
        ValueError: an empty name or salt.
    """
    if not isinstance(operator_name, str) or not operator_name.strip():
        raise ValueError(f"operator_name: expected a non-empty str, got {operator_name!r}")
    if not isinstance(salt, bytes | bytearray) or not salt:
        raise ValueError("salt: expected non-empty bytes (see load_salt)")
    name = unicodedata.normalize("NFC", operator_name.strip().casefold()).encode("utf-8")
    return hmac.new(bytes(salt), name, "sha256").hexdigest()[:PSEUDONYM_HEX_CHARS]


def operator_pseudonym(
    operator_name: str,
    salt_file: str | os.PathLike[str] | None = None,
    *,
    create_salt: bool = True,
) -> str:
    """:func:`pseudonymize` with the salt from :func:`load_salt` (``create_salt`` is its
    ``create``: pass False to look up an existing operator)."""
    return pseudonymize(operator_name, load_salt(salt_file, create=create_salt))


def looks_like_pseudonym(text: str) -> bool:
    """True for what :func:`pseudonymize` returns: 16 lowercase hex digits."""
    return bool(re.fullmatch(f"[0-9a-f]{{{PSEUDONYM_HEX_CHARS}}}", text))
