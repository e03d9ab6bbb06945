"""Data governance for episode stores: purge, filter, split, merge (operator pseudonyms
are in :mod:`robot_rl.data.pseudonyms`, re-exported here).

Rewrites. Every operation here writes a complete new store (:mod:`robot_rl.data.rewrite`):
episodes are copied through the ordinary writer (so the copy is validated, checksummed and
gets fresh statistics; values, provenance and episode ids are kept bit for bit), labels and
preferences that concern kept episodes are carried over, and the new store is validated
before it becomes visible. It is built in a hidden sibling directory (same file system)
and then published with renames:

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

import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_rl.data.atomic_fs import fsync_path, remove_tree, swap_dirs
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore, StoreSchema
from robot_rl.data.labels import LabelLog
from robot_rl.data.pseudonyms import (
    DEFAULT_SALT_FILE,
    PSEUDONYM_HEX_CHARS,
    SALT_BYTES,
    SALT_FILE_ENV,
    load_salt,
    looks_like_pseudonym,
    operator_pseudonym,
    pseudonymize,
    salt_file_path,
)
from robot_rl.data.rewrite import (
    EpisodeEdit,
    build_store,
    check_free,
    temp_sibling,
    write_new_store,
)

__all__ = [
    "DEFAULT_SALT_FILE",
    "PSEUDONYM_HEX_CHARS",
    "SALT_BYTES",
    "SALT_FILE_ENV",
    "EpisodeEdit",
    "EpisodeFilter",
    "PurgeResult",
    "filter_episodes",
    "load_salt",
    "looks_like_pseudonym",
    "merge",
    "operator_pseudonym",
    "pseudonymize",
    "purge",
    "salt_file_path",
    "split",
    "split_counts",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

Predicate = Callable[[int, EpisodeProvenance], bool]


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
        write_new_store(
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
        tmp = temp_sibling(path, "purge")
        try:
            build_store(tmp, store.schema, store.chunk_rows(), [(store, i) for i in keep], labels)
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
        check_free(dst)
    with EpisodeStore.open(src) as store:
        n = store.n_episodes
        perm = np.random.default_rng(seed).permutation(n)
        counts = split_counts(n, fractions)
        at = 0
        for name, count in counts.items():
            chosen = sorted(int(i) for i in perm[at : at + count])
            at += count
            ids = {store.recorded_provenance(i).episode_id for i in chosen}
            write_new_store(
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
        write_new_store(dst, "merge", first.schema, first.chunk_rows(), episodes, labels)
        return len(episodes)
    finally:
        for st in stores:
            st.close()
