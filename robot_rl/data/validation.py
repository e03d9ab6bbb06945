"""Validation of an episode store: read every committed chunk, check structure.

:func:`validate_store` (what :meth:`EpisodeStore.validate` runs) checks that every chunk
file covering committed rows exists and decodes (its crc32c matches), that episode ends
increase and match the commit document, that float data is finite, that timestamps do
not decrease within an episode, that provenance parses and episode ids are unique, and
that labels refer to committed episodes. Each problem names the episode(s) a damaged
chunk holds rows of, and the array.

A crc only proves a chunk is the one that was written to that file, so, in the same single
pass over the data, it also recomputes what the commit recorded: each episode's digest of
each data and stream key (``meta/digests``, format version 3 on; it catches chunk files
swapped between places and values rewritten with a valid crc) and each episode's moments
(``meta/stats/<key>``, compared with a relative tolerance of 1e-6 since block order
changes rounding). Every statistics array the schema implies must exist. Hidden siblings
a crashed rewrite left (perhaps holding purged data) are reported too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from robot_rl.data.chunk_io import chunk_file, digest_update, new_digest
from robot_rl.data.labels import LABELS_FILE
from robot_rl.data.provenance import EpisodeProvenance
from robot_rl.data.stats import Moments
from robot_rl.data.store_commit import CommittedStore
from robot_rl.data.store_layout import TIMESTAMP_KEY, persisted_stat_keys
from robot_rl.data.store_lock import stale_siblings


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


def validate_store(store: CommittedStore) -> ValidationReport:
    """Check the committed content of ``store``; see the module docstring."""
    report = ValidationReport()
    n_ep = store._n_episodes

    def rows_to_episodes(ends: np.ndarray):
        starts = np.concatenate([[0], ends[:-1]]) if len(ends) else ends

        def episodes(a: int, b: int) -> list[int]:
            # Episodes with at least one row in [a, b).
            first = int(np.searchsorted(ends, a, side="right"))
            last = min(int(np.searchsorted(ends, b - 1, side="right")), n_ep - 1)
            return [i for i in range(first, last + 1) if starts[i] < ends[i]]

        return episodes

    def per_episode(a: int, b: int) -> list[int]:
        return list(range(a, b))

    # Per-episode digests and moments recomputed from the data, for comparison with what
    # the commit recorded; episodes with an unreadable chunk are not compared.
    digests: dict[str, list] = {}
    moments: dict[str, list[Moments | None]] = {}
    unverified: dict[str, set[int]] = {}

    def feed(name: str, lo: int, block: np.ndarray, episode_ends: np.ndarray) -> None:
        hi = lo + len(block)
        r = lo
        while r < hi:
            i = int(np.searchsorted(episode_ends, r, side="right"))
            if i >= len(episode_ends):
                break
            stop = min(hi, int(episode_ends[i]))
            part = block[r - lo : stop - lo]
            if name in digests:
                digest_update(digests[name][i], part)
            if name in moments:
                m = Moments.from_rows(part)
                prev = moments[name][i]
                moments[name][i] = m if prev is None else prev.merge(m)
            r = stop

    def check_array(name, a, n_rows, row_episodes, ends=None, episode_ends=None) -> None:
        cs = a.chunks[0]
        array_dir = store.path / name
        # Timestamps: rows that start an episode may go back in time; no other row.
        starts = set(np.concatenate([[0], ends[:-1]]).tolist()) if ends is not None else set()
        prev = None
        for c in range(math.ceil(n_rows / cs)):
            lo, hi = c * cs, min((c + 1) * cs, n_rows)
            f = chunk_file(array_dir, a, c)
            problem = None
            if not f.is_file():
                problem = f"chunk file {f.relative_to(store.path)} is missing"
            else:
                try:
                    block = np.asarray(a[lo:hi])
                except Exception as e:  # zarr raises ValueError for a bad crc, others
                    problem = (
                        f"chunk {f.relative_to(store.path)} (rows {lo}-{hi - 1}) "
                        f"unreadable: {type(e).__name__}: {e}"
                    )
                else:
                    if episode_ends is not None and (name in digests or name in moments):
                        feed(name, lo, block, episode_ends)
                    if block.dtype.kind == "f" and not np.isfinite(block).all():
                        bad_rows = np.nonzero(
                            ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
                        )[0]
                        for r in bad_rows[:1]:
                            for ep in row_episodes(lo + int(r), lo + int(r) + 1):
                                report.problems.append(
                                    (ep, name, f"non-finite value at row {lo + int(r)}")
                                )
                    if ends is not None:
                        full = block if prev is None else np.concatenate([[prev], block])
                        off = lo - (0 if prev is None else 1)
                        for r in np.nonzero(np.diff(full) < 0)[0] + 1 + off:
                            if int(r) not in starts:
                                report.problems.append(
                                    (
                                        row_episodes(int(r), int(r) + 1)[0],
                                        name,
                                        f"timestamp decreases at row {int(r)}",
                                    )
                                )
                                break
                        prev = block[-1] if len(block) else prev
            if problem is not None:
                prev = None
                for ep in row_episodes(lo, hi):
                    report.problems.append((ep, name, problem))
                    unverified.setdefault(name, set()).add(ep)

    def check_ends(name: str, ends: np.ndarray, strict: bool) -> None:
        d = np.diff(ends, prepend=0)
        if ends.size and (np.any(d <= 0) if strict else np.any(d < 0)):
            how = "strictly increasing" if strict else "non-decreasing"
            report.problems.append((None, name, f"episode ends are not {how}"))

    check_ends("meta/episode_ends", store._ends, strict=True)
    data_episodes = rows_to_episodes(store._ends)
    check_array("meta/episode_ends", store._ends_arr, n_ep, per_episode)
    for key in persisted_stat_keys(store._spec, store.obs_spec):
        if key not in store._stats_arr:
            report.problems.append(
                (None, f"meta/stats/{key}", "statistics array is missing (the schema implies it)")
            )
    recorded_digests = _recorded_digests(store, report)
    if recorded_digests is not None:
        names = [f"data/{k}" for k in store._data]
        names += [f"streams/{s}/{k}" for s, arrays in store._streams.items() for k in arrays]
        digests.update({name: [new_digest() for _ in range(n_ep)] for name in names})
    for key in store._stats_arr:
        moments[f"data/{key}"] = [None] * n_ep
    for key, a in store._data.items():
        ts_ends = store._ends if key == TIMESTAMP_KEY else None
        check_array(f"data/{key}", a, store._n_steps, data_episodes, ts_ends, store._ends)
    for key, a in store._stats_arr.items():
        check_array(f"meta/stats/{key}", a, n_ep, per_episode)
    check_array("meta/provenance", store._prov_arr, n_ep, per_episode)
    if store._digest_arr is not None:
        check_array("meta/digests", store._digest_arr, n_ep, per_episode)
    for s, arrays in store._streams.items():
        ends = store._stream_ends[s]
        check_ends(f"streams/{s}/episode_ends", ends, strict=False)
        check_array(f"streams/{s}/episode_ends", store._stream_ends_arr[s], n_ep, per_episode)
        stream_episodes = rows_to_episodes(ends)
        for key, a in arrays.items():
            ts_ends = ends if key == TIMESTAMP_KEY else None
            check_array(
                f"streams/{s}/{key}", a, store._stream_rows[s], stream_episodes, ts_ends, ends
            )
    if recorded_digests is not None:
        for name, hashers in digests.items():
            bad = unverified.get(name, set())
            for i, h in enumerate(hashers):
                want = recorded_digests[i].get(name) if recorded_digests[i] is not None else None
                if i in bad or want is None:
                    continue
                if h.hexdigest() != want:
                    report.problems.append(
                        (
                            i,
                            name,
                            "content differs from the digest recorded at commit (rows "
                            "rewritten, or chunk files moved, after the episode was committed)",
                        )
                    )
    _compare_moments(store, moments, unverified, report)
    for sib in stale_siblings(store.path):
        report.problems.append(
            (
                None,
                sib.name,
                "stale temporary store left by an interrupted rewrite (it may hold purged "
                "data); open the store with mode='a' to delete it",
            )
        )
    ids: set[str] = set()
    for i in range(n_ep):
        try:
            prov = EpisodeProvenance.from_json(store._prov_arr[i].item())
            prov.check()
        except Exception as e:
            if not any(p[0] == i and p[1] == "meta/provenance" for p in report.problems):
                report.problems.append((i, "meta/provenance", f"bad provenance: {e}"))
            continue
        if prov.episode_id in ids:
            report.problems.append(
                (i, "meta/provenance", f"episode_id {prov.episode_id!r} is not unique")
            )
        ids.add(prov.episode_id)
    if store._labels_error is not None:
        report.problems.append((None, LABELS_FILE, f"damaged: {store._labels_error}"))
    for entry in store._labels.labels:
        if entry.episode_id not in ids:
            report.problems.append(
                (None, LABELS_FILE, f"label of unknown episode_id {entry.episode_id!r}")
            )
    for p in store._labels.preferences:
        for eid in (p.episode_a, p.episode_b):
            if eid not in ids:
                report.problems.append(
                    (None, LABELS_FILE, f"preference names unknown episode_id {eid!r}")
                )
    return report


def _recorded_digests(store: CommittedStore, report: ValidationReport) -> list[dict | None] | None:
    """Each episode's recorded digests (None for an unreadable row); None without digests."""
    if store._digest_arr is None:
        return None
    n_ep = store._n_episodes
    out: list[dict | None] = []
    for i in range(n_ep):
        try:
            doc = json.loads(str(store._digest_arr[i].item()))
            if not isinstance(doc, dict):
                raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        except Exception as e:
            report.problems.append((i, "meta/digests", f"unreadable digest row: {e}"))
            doc = None
        out.append(doc)
    names = {f"data/{k}" for k in store._data}
    names |= {f"streams/{s}/{k}" for s, arrays in store._streams.items() for k in arrays}
    for i, d in enumerate(out):
        if d is not None and set(d) != names:
            report.problems.append(
                (i, "meta/digests", f"digest row covers {sorted(d)}, not every data key")
            )
            out[i] = None
    return out


def _compare_moments(
    store: CommittedStore,
    moments: dict[str, list[Moments | None]],
    unverified: dict[str, set[int]],
    report: ValidationReport,
) -> None:
    n_ep = store._n_episodes
    for key, a in store._stats_arr.items():
        name = f"data/{key}"
        try:
            rows = np.asarray(a[:n_ep])
        except Exception:
            continue  # check_array reported the unreadable chunk
        bad = unverified.get(name, set()) | unverified.get(f"meta/stats/{key}", set())
        for i, m in enumerate(moments.get(name, [])):
            if m is None or i in bad:
                continue
            got = np.stack([m.mean, m.m2, m.min, m.max])
            scale = np.maximum(np.abs(got), np.abs(rows[i]))
            # m2 is a sum over rows: its rounding grows with the episode's length.
            tol = 1e-6 * scale + 1e-9 * max(1, m.count)
            if not np.all(np.abs(got - rows[i]) <= tol):
                report.problems.append(
                    (
                        i,
                        f"meta/stats/{key}",
                        "persisted per-episode moments differ from the episode's data",
                    )
                )
