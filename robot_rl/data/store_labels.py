"""Labelling a store's episodes: success labels and pairwise preferences.

The feedback lives in ``labels.json`` (:mod:`robot_rl.data.labels`), an append-only log
replaced atomically; labelling touches no data chunk.
"""

from __future__ import annotations

from robot_rl.data.atomic_fs import atomic_write_json
from robot_rl.data.labels import (
    LABELS_FILE,
    LabelLog,
    Preference,
    SuccessLabel,
    check_labeller,
    check_preferred,
    check_success,
)
from robot_rl.data.store_layout import StoreFormatError
from robot_rl.data.store_reading import StoreReading


class StoreLabels(StoreReading):
    """Human feedback on committed episodes (part of
    :class:`robot_rl.data.episode_store.EpisodeStore`)."""

    def labels(self) -> list[SuccessLabel]:
        """The success-label log, oldest first (the latest entry per episode wins)."""
        return list(self._labels.labels)

    def preferences(self) -> list[Preference]:
        """The pairwise preferences, oldest first."""
        return list(self._labels.preferences)

    def set_success_label(self, i: int, value: bool | None, labeller: str) -> None:
        """Label committed episode ``i`` a success (True), failure (False) or unknown
        (None), overriding earlier labels; the log keeps who said what, when.

        Atomic (``labels.json`` is replaced) and touches no data chunk.

        Args:
            i: committed episode index.
            value: True, False or None.
            labeller: pseudonym of who labels (never a real name).
        """
        self._check_writable("label")
        value = check_success(value)
        check_labeller(labeller)
        prov = self.recorded_provenance(i)
        self._write_labels(
            LabelLog(
                [*self._labels.labels, SuccessLabel(prov.episode_id, value, labeller)],
                list(self._labels.preferences),
            )
        )

    def add_preference(self, id_a: str, id_b: str, preferred: str, labeller: str) -> None:
        """Record that episode ``id_a`` is preferred to ``id_b`` (``"a"``), the reverse
        (``"b"``), or neither (``"equal"``). Episodes are named by ``episode_id``.

        Atomic (``labels.json`` is replaced) and touches no data chunk.
        """
        self._check_writable("label")
        check_preferred(preferred)
        check_labeller(labeller)
        for which, eid in (("id_a", id_a), ("id_b", id_b)):
            if eid not in self._id_map():
                raise KeyError(f"{which}: {self.path} has no committed episode {eid!r}")
        if id_a == id_b:
            raise ValueError(f"add_preference: id_a and id_b are the same episode ({id_a!r})")
        self._write_labels(
            LabelLog(
                list(self._labels.labels),
                [*self._labels.preferences, Preference(id_a, id_b, preferred, labeller)],
            )
        )

    def _write_labels(self, log: LabelLog) -> None:
        if self._labels_error is not None:
            raise StoreFormatError(
                f"{self._labels_error}; repair or remove {self.path / LABELS_FILE} before "
                "labelling (writing now would drop the damaged log)"
            )
        atomic_write_json(self.path / LABELS_FILE, log.to_doc())
        self._labels = log
        self._cache.clear()
