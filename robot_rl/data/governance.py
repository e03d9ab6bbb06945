"""Data governance for episode stores: operator pseudonyms, purge, filter, split, merge.

Pseudonyms. Stores hold operator pseudonyms, never names: :func:`pseudonymize` is an
HMAC-SHA256 of the name keyed with a secret salt that lives outside every store, in the
file named by ``$ROBOT_RL_PSEUDONYM_SALT_FILE`` (default
``~/.config/robot_rl/pseudonym_salt``), created with 32 random bytes and mode 0600 when
missing (recording creates it, and says so; purging and labelling never do, since a new
salt matches no recorded pseudonym). Without the salt a pseudonym cannot be traced back to
a name by trying names; with it, the same name always gives the same pseudonym, so one
operator's episodes can be found (and purged) across stores recorded on machines that
share the salt file. Names are stripped, case-folded and NFC-normalized before hashing,
so ``"Ann"``, ``" ann "`` and ``"ANN"`` are one operator.

Rewrites. Every operation here writes a complete new store: episodes are copied through
the ordinary writer (so the copy is validated, checksummed and gets fresh statistics;
values, provenance and episode ids are kept bit for bit), labels and preferences that
concern kept episodes are carried over, and the new store is validated before it
becomes visible. It is built in a hidden sibling directory (same file system) and then
published with renames:

- ``filter_episodes``, ``split`` and ``merge`` write to new paths: one rename each.
- ``purge`` rewrites a store in place: under the store's writer lock (no recorder writes
  meanwhile), the new store is swapped with the old one by one atomic exchange of the two
  directories (see :func:`robot_rl.data.atomic_fs.swap_dirs`), then the old one is
  deleted. A crash at any point leaves at the store's path either the old store or the
  new one, complete. Readers that had the old store open must reopen it: their next read
  (or refresh) raises :class:`~robot_rl.data.episode_store.StoreRewrittenError`, since
  every new store gets a new generation in ``commit.json``. A purge does not wait for them.
"""

from __future__ import annotations

import hmac
import math
import os
import re
import secrets
import sys
import unicodedata
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.data.atomic_fs import fsync_path, publish_dir, remove_tree, swap_dirs
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore, StoreSchema
from robot_rl.data.episode_writer import EpisodeWriter
from robot_rl.data.labels import LabelLog

SALT_FILE_ENV = "ROBOT_RL_PSEUDONYM_SALT_FILE"
DEFAULT_SALT_FILE = "~/.config/robot_rl/pseudonym_salt"
SALT_BYTES = 32
# 64 bits of the HMAC: collisions among even a million operators are negligible.
PSEUDONYM_HEX_CHARS = 16
# Rows read per block when copying an episode (bounded memory for image episodes).
_COPY_BLOCK_BYTES = 64 << 20
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Predicate = Callable[[int, EpisodeProvenance], bool]

# ---------------------------------------------------------------------------- pseudonyms


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


# ---------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class EpisodeFilter:
    """Which episodes to keep; every given criterion must hold (None: any).

    Attributes:
        source: provenance source (``teleop``, ``policy``, ``scripted``, ``import``).
        success: the episode's latest success label (True or False).
        operator: operator pseudonym.
        robot_id: robot unit id.
        episodes: index range ``(start, stop)`` as a slice takes it (either may be None).
    """

    source: str | None = None
    success: bool | None = None
    operator: str | None = None
    robot_id: str | None = None
    episodes: tuple[int | None, int | None] | None = None

    def __call__(self, index: int, prov: EpisodeProvenance) -> bool:
        if self.source is not None and prov.source != self.source:
            return False
        if self.success is not None and prov.success is not self.success:
            return False
        if self.operator is not None and prov.operator != self.operator:
            return False
        return self.robot_id is None or prov.robot_id == self.robot_id

    def indices(self, store: EpisodeStore) -> list[int]:
        """Indices of the store's committed episodes that pass."""
        rng = range(store.n_episodes)
        if self.episodes is not None:
            rng = rng[slice(*self.episodes)]
        return [i for i in rng if self(i, store.provenance(i))]


# ---------------------------------------------------------------------------- rewriting


#: Per copied episode: rows to write instead of the source's (key -> rows, or None to
#: leave the key out) and the provenance to record.
EpisodeEdit = Callable[[EpisodeStore, int], tuple[dict[str, np.ndarray | None], EpisodeProvenance]]


def _append_rows(
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


def _build_store(
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
                    _append_rows(src, i, w, replace)
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


def _temp_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


def _write_new_store(
    dst: Path,
    tag: str,
    schema: StoreSchema,
    chunks: dict[str, int],
    episodes: Sequence[tuple[EpisodeStore, int]],
    labels: LabelLog,
    edit: EpisodeEdit | None = None,
) -> None:
    """Build a store next to the free path ``dst`` and rename it there."""
    _check_free(dst)
    tmp = _temp_sibling(dst, tag)
    try:
        _build_store(tmp, schema, chunks, episodes, labels, edit)
        publish_dir(tmp, dst)
    except BaseException:
        remove_tree(tmp)
        raise


def _check_free(dst: Path) -> None:
    if dst.exists() and not (dst.is_dir() and not any(dst.iterdir())):
        raise FileExistsError(f"{dst} already exists; choose a new output path")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"{dst.parent}: output directory does not exist")


def filter_episodes(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    predicate: EpisodeFilter | Predicate,
) -> int:
    """Write the episodes of ``src`` that pass ``predicate`` to a new store at ``dst``.

    Args:
        src: source store (opened read-only: a writer may keep appending to it; the
            episodes committed when it is opened are considered).
        dst: new store path (must not exist, or be an empty directory).
        predicate: an :class:`EpisodeFilter`, or any ``f(index, provenance) -> bool``
            (provenance with the latest success label).

    Returns:
        The number of episodes written.
    """
    dst = Path(dst)
    with EpisodeStore.open(src) as store:
        if isinstance(predicate, EpisodeFilter):
            keep = predicate.indices(store)
        else:
            keep = [i for i in range(store.n_episodes) if predicate(i, store.provenance(i))]
        ids = {store.recorded_provenance(i).episode_id for i in keep}
        _write_new_store(
            dst,
            "filter",
            store.schema,
            store.chunk_rows(),
            [(store, i) for i in keep],
            store._labels.restricted_to(ids),
        )
    return len(keep)


@dataclass(frozen=True)
class PurgeResult:
    """What :func:`purge` removed and kept."""

    episodes_removed: int
    episodes_kept: int
    labels_removed: int
    preferences_removed: int


def _swap_into_place(new: Path, path: Path) -> Path:
    # One function so tests can simulate a crash at the swap.
    return swap_dirs(new, path)


def purge(store_path: str | os.PathLike[str], operator: str) -> PurgeResult:
    """Remove every episode of ``operator`` from a store, rewriting it atomically.

    Also removed: labels and preferences about those episodes, and every label and
    preference the operator entered as labeller (the pseudonym then appears nowhere in
    the store). Other episodes are kept bit for bit, with their ids and provenance.

    Args:
        store_path: the store (its writer lock is taken for the whole rewrite).
        operator: the operator's pseudonym (see :func:`operator_pseudonym`).

    Returns:
        Counts of what was removed and kept; when nothing matches, the store is left
        untouched.

    Raises:
        RuntimeError: another writer holds the store, or the rewrite failed validation
            (the store is unchanged).
    """
    if not isinstance(operator, str) or not operator:
        raise ValueError(f"operator: expected a non-empty pseudonym str, got {operator!r}")
    path = Path(store_path)
    with EpisodeStore.open(path, mode="a") as store:
        # A purge that crashed after its swap left the old store (with the operator's
        # data) in a hidden sibling; finish deleting it.
        for stale in path.parent.glob(f".{path.name}.purge-*"):
            remove_tree(stale)
        keep = [
            i for i in range(store.n_episodes) if store.recorded_provenance(i).operator != operator
        ]
        ids = {store.recorded_provenance(i).episode_id for i in keep}
        labels = store._labels.restricted_to(ids, drop_labeller=operator)
        result = PurgeResult(
            episodes_removed=store.n_episodes - len(keep),
            episodes_kept=len(keep),
            labels_removed=len(store._labels.labels) - len(labels.labels),
            preferences_removed=len(store._labels.preferences) - len(labels.preferences),
        )
        if not (result.episodes_removed or result.labels_removed or result.preferences_removed):
            return result
        tmp = _temp_sibling(path, "purge")
        try:
            _build_store(tmp, store.schema, store.chunk_rows(), [(store, i) for i in keep], labels)
            old = _swap_into_place(tmp, path)
        except BaseException:
            remove_tree(tmp)
            raise
    remove_tree(old)
    fsync_path(path.parent)
    return result


def _check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    if not isinstance(fractions, dict) or not fractions:
        raise ValueError(
            f"fractions: expected a non-empty dict name -> fraction, got {fractions!r}"
        )
    for name, f in fractions.items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"fractions: split name {name!r}: expected letters, digits, '_', '.', '-'"
            )
        if isinstance(f, bool) or not isinstance(f, int | float) or not (0 < f <= 1):
            raise ValueError(f"fractions[{name!r}]: expected a number in (0, 1], got {f!r}")
    total = float(sum(fractions.values()))
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions: must sum to 1, got {total:g} ({fractions})")
    return {k: float(v) for k, v in fractions.items()}


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Episodes per split: floors of ``n * fraction``, the rest to the largest remainders
    (ties to the split named first)."""
    fractions = _check_fractions(fractions)
    exact = {k: n * f for k, f in fractions.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    order = sorted(fractions, key=lambda k: -(exact[k] - counts[k]))  # stable: first wins ties
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def split(
    src: str | os.PathLike[str],
    fractions: dict[str, float],
    seed: int,
    out_dir: str | os.PathLike[str],
) -> dict[str, Path]:
    """Split a store by episode into new stores ``<out_dir>/<name>.zarr``.

    Episodes are shuffled with ``numpy.random.default_rng(seed)`` and dealt out in
    :func:`split_counts` sizes; each output keeps its episodes in source order. The same
    store and seed always give the same split. Preferences between episodes that land in
    different splits are dropped.

    Args:
        src: source store.
        fractions: split name -> fraction of the episodes, summing to 1
            (e.g. ``{"train": 0.9, "val": 0.1}``).
        seed: shuffle seed.
        out_dir: directory for the outputs (created if missing); none may exist yet.

    Returns:
        split name -> path of its store.
    """
    fractions = _check_fractions(fractions)
    out = Path(out_dir)
    dsts = {name: out / f"{name}.zarr" for name in fractions}
    out.mkdir(parents=True, exist_ok=True)
    for dst in dsts.values():
        _check_free(dst)
    with EpisodeStore.open(src) as store:
        n = store.n_episodes
        perm = np.random.default_rng(seed).permutation(n)
        counts = split_counts(n, fractions)
        at = 0
        for name, count in counts.items():
            chosen = sorted(int(i) for i in perm[at : at + count])
            at += count
            ids = {store.recorded_provenance(i).episode_id for i in chosen}
            _write_new_store(
                dsts[name],
                "split",
                store.schema,
                store.chunk_rows(),
                [(store, i) for i in chosen],
                store._labels.restricted_to(ids),
            )
    return dsts


def _schema_mismatch(a: StoreSchema, b: StoreSchema) -> str | None:
    # Rewards of different origins (recorded, learned by different models, absent) do not
    # mean the same thing: one store must not mix them.
    fields = ("obs_spec", "action_dim", "control_hz", "robot", "task", "units", "streams",
              "reward_source")  # fmt: skip
    for name in fields:
        va, vb = getattr(a, name), getattr(b, name)
        if va != vb:
            return f"{name}: {va!r} vs {vb!r}"
    if a.timestamps != b.timestamps:
        return f"timestamps (data/timestamp): {a.timestamps!r} vs {b.timestamps!r}"
    return None


def merge(srcs: Sequence[str | os.PathLike[str]], dst: str | os.PathLike[str]) -> int:
    """Concatenate stores into a new store at ``dst``, in order.

    Provenance, episode ids, labels and preferences are carried over; the label logs are
    concatenated in store order (not re-sorted by wall-clock time, which may differ between
    machines), so the latest label of an episode stays the latest.

    Args:
        srcs: source stores; their schemas (observation spec, action_dim, control_hz,
            robot, task, units, streams, reward source, timestamps) must be equal.
        dst: new store path.

    Returns:
        The number of episodes written.

    Raises:
        ValueError: fewer than one source, a schema mismatch (naming the field, both
            values and the stores), or an episode id present twice.
    """
    if not srcs:
        raise ValueError("merge: expected at least one source store")
    dst = Path(dst)
    stores: list[EpisodeStore] = []
    try:
        for s in srcs:
            stores.append(EpisodeStore.open(s))
        first = stores[0]
        for other in stores[1:]:
            problem = _schema_mismatch(first.schema, other.schema)
            if problem:
                raise ValueError(
                    f"merge: {first.path} and {other.path} differ in {problem}; only stores "
                    "with the same schema can be merged"
                )
        seen: dict[str, Path] = {}
        for st in stores:
            for eid in st.episode_ids():
                if eid in seen:
                    raise ValueError(
                        f"merge: episode_id {eid!r} is in both {seen[eid]} and {st.path}; "
                        "an episode can be merged only once"
                    )
                seen[eid] = st.path
        # Store order, each log as it was: the latest entry of an episode is its last in
        # its own store's log (ids are unique across sources), whatever the wall clocks say.
        labels = LabelLog(
            [e for st in stores for e in st._labels.labels],
            [p for st in stores for p in st._labels.preferences],
        )
        episodes = [(st, i) for st in stores for i in range(st.n_episodes)]
        _write_new_store(dst, "merge", first.schema, first.chunk_rows(), episodes, labels)
        return len(episodes)
    finally:
        for st in stores:
            st.close()
