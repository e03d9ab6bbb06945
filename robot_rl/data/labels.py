"""Human feedback kept in an episode store: success labels and pairwise preferences.

Both live in one small document, ``labels.json`` at the store's root, replaced atomically
(see :func:`robot_rl.data.atomic_fs.atomic_write_json`), so labelling never rewrites a data
chunk and a reader sees the old or the new set of labels, never a torn one. The document
is an append-only log: a new label for an episode is a new entry and the latest entry (in
log order) wins; earlier entries stay as the audit trail of who said what, when. Entries
refer to episodes by ``episode_id``, which survives merges, filters and purges, never by
index. Labellers are pseudonyms (see :mod:`robot_rl.data.governance`), never real names.

Layout::

    {"format": "robot_rl.labels", "format_version": 1,
     "labels": [{"episode_id", "success": true|false|null, "labeller", "time_unix_s"}, ...],
     "preferences": [{"episode_a", "episode_b", "preferred": "a"|"b"|"equal",
                      "labeller", "time_unix_s"}, ...]}
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LABELS_FILE = "labels.json"
LABELS_FORMAT = "robot_rl.labels"
LABELS_FORMAT_VERSION = 1
PREFERRED_VALUES = ("a", "b", "equal")


@dataclass(frozen=True)
class SuccessLabel:
    """One success label entry.

    Attributes:
        episode_id: the labelled episode (``EpisodeProvenance.episode_id``).
        success: True, False, or None (label withdrawn: unknown).
        labeller: pseudonym of who labelled.
        time_unix_s: when (UTC seconds since the epoch).
    """

    episode_id: str
    success: bool | None
    labeller: str
    time_unix_s: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Preference:
    """One pairwise preference between two episodes.

    Attributes:
        episode_a: first episode's id.
        episode_b: second episode's id.
        preferred: ``"a"``, ``"b"`` or ``"equal"``.
        labeller: pseudonym of who judged.
        time_unix_s: when (UTC seconds since the epoch).
    """

    episode_a: str
    episode_b: str
    preferred: str
    labeller: str
    time_unix_s: float = field(default_factory=time.time)


def check_labeller(labeller: Any) -> str:
    """Raise ValueError unless ``labeller`` is a non-empty str."""
    if not isinstance(labeller, str) or not labeller.strip():
        raise ValueError(f"labeller: expected a non-empty pseudonym str, got {labeller!r}")
    return labeller


def check_success(value: Any) -> bool | None:
    """Normalize a success value (numpy bools included); raise ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"success: expected True, False or None, got {value!r}")


def check_preferred(preferred: Any) -> str:
    """Raise ValueError unless ``preferred`` is one of ``a``, ``b``, ``equal``."""
    if preferred not in PREFERRED_VALUES:
        raise ValueError(f"preferred: expected one of {list(PREFERRED_VALUES)}, got {preferred!r}")
    return preferred


@dataclass
class LabelLog:
    """The parsed ``labels.json``: both logs, in the order their entries were added."""

    labels: list[SuccessLabel] = field(default_factory=list)
    preferences: list[Preference] = field(default_factory=list)

    def latest_success(self) -> dict[str, bool | None]:
        """episode_id -> the success value of its latest label (only labelled episodes)."""
        return {entry.episode_id: entry.success for entry in self.labels}

    def restricted_to(self, episode_ids: set[str], *, drop_labeller: str | None = None) -> LabelLog:
        """Entries about the given episodes only (preferences need both), optionally
        without those entered by ``drop_labeller``."""
        return LabelLog(
            labels=[
                e
                for e in self.labels
                if e.episode_id in episode_ids and e.labeller != drop_labeller
            ],
            preferences=[
                p
                for p in self.preferences
                if p.episode_a in episode_ids
                and p.episode_b in episode_ids
                and p.labeller != drop_labeller
            ],
        )

    def to_doc(self) -> dict[str, Any]:
        """The JSON document stored as ``labels.json``."""
        return {
            "format": LABELS_FORMAT,
            "format_version": LABELS_FORMAT_VERSION,
            "labels": [asdict(e) for e in self.labels],
            "preferences": [asdict(p) for p in self.preferences],
        }

    @classmethod
    def from_doc(cls, doc: Any, where: str) -> LabelLog:
        """Parse and check a ``labels.json`` document; ValueError names ``where``."""
        if not isinstance(doc, dict) or doc.get("format") != LABELS_FORMAT:
            raise ValueError(f"{where}: not a labels document (format != {LABELS_FORMAT!r})")
        if not isinstance(doc.get("format_version"), int) or (
            doc["format_version"] > LABELS_FORMAT_VERSION
        ):
            raise ValueError(
                f"{where}: labels format_version {doc.get('format_version')!r} is newer than "
                f"this code reads ({LABELS_FORMAT_VERSION}); upgrade robot_rl"
            )
        try:
            labels = [SuccessLabel(**e) for e in doc.get("labels", [])]
            prefs = [Preference(**p) for p in doc.get("preferences", [])]
        except TypeError as e:
            raise ValueError(f"{where}: malformed entry ({e})") from None
        for n, e in enumerate(labels):
            try:
                check_success(e.success)
                check_labeller(e.labeller)
                _check_time(e.time_unix_s)
            except ValueError as err:
                raise ValueError(f"{where}: labels[{n}]: {err}") from None
        for n, p in enumerate(prefs):
            try:
                check_preferred(p.preferred)
                check_labeller(p.labeller)
                _check_time(p.time_unix_s)
            except ValueError as err:
                raise ValueError(f"{where}: preferences[{n}]: {err}") from None
        return cls(labels, prefs)

    def hash_items(self, episode_ids: list[str]) -> bytes:
        """Canonical bytes of what learning sees: each episode's latest label (in store
        order) and the multiset of preferences, without who or when."""
        latest = self.latest_success()
        doc = {
            "labels": [latest.get(i, "unlabelled") for i in episode_ids],
            "preferences": sorted(
                [p.episode_a, p.episode_b, p.preferred] for p in self.preferences
            ),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _check_time(t: Any) -> None:
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise ValueError(f"time_unix_s: expected a finite number, got {t!r}")


def read_label_log(store_dir: Path) -> LabelLog:
    """The store's label log; empty when no ``labels.json`` exists yet."""
    path = store_dir / LABELS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return LabelLog()
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path}: unreadable JSON ({e})") from None
    return LabelLog.from_doc(doc, str(path))
