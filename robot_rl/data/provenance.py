"""Per-episode provenance: where an episode came from, stored as one JSON object each."""

from __future__ import annotations

import itertools
import json
import math
import time
import uuid
from dataclasses import asdict, dataclass, field, fields

import numpy as np

SOURCES = ("teleop", "policy", "scripted", "import")
# Where a store's rewards (``data/reward``) came from, at store level (the root attribute
# ``reward_source``) and per episode (``EpisodeProvenance.reward_source``):
REWARD_RECORDED = "recorded"  # recorded with the episode (env or importer); the default
REWARD_NONE = "none"  # no rewards: the store has no data/reward array
REWARD_LEARNED_PREFIX = "learned:"  # "learned:<reward model id>", written by relabel
_NON_STR_FIELDS = (
    "safety_interventions",
    "source",
    "success",
    "start_time_unix_s",
    "dropped_rows",
    "gap_rows",
    "reset_seed",
)


def check_reward_source(value: object, where: str = "reward_source") -> str:
    """Return ``value`` if it is a reward source (``"recorded"``, ``"none"`` or
    ``"learned:<model id>"``); raise ValueError naming ``where`` otherwise."""
    if isinstance(value, str) and (
        value in (REWARD_RECORDED, REWARD_NONE)
        or (value.startswith(REWARD_LEARNED_PREFIX) and len(value) > len(REWARD_LEARNED_PREFIX))
    ):
        return value
    raise ValueError(
        f"{where}: expected {REWARD_RECORDED!r}, {REWARD_NONE!r} or "
        f"'{REWARD_LEARNED_PREFIX}<reward model id>', got {value!r}"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


@dataclass
class EpisodeProvenance:
    """Where an episode came from; stored as one JSON object per episode.

    Attributes:
        source: how the actions were produced: one of ``teleop``, ``policy``,
            ``scripted``, ``import``.
        operator: operator pseudonym (never a real name; see
            :func:`robot_rl.data.governance.pseudonymize`).
        robot_id: the physical unit (or sim twin) that ran the episode, e.g. a serial.
        policy_id: the policy that acted, when ``source`` is ``policy``.
        checkpoint_hash: hash of the policy weights that acted.
        config_hash: hash of the resolved config of the run that recorded the episode.
        code_version: ``robot_rl.paths.code_version()`` of the recording code.
        safety_filter_version: version of the safety filter that vetted the actions.
        success: success label: True, False, or None for unknown. The value recorded at
            commit; :meth:`EpisodeStore.provenance` shows the latest human label instead
            where one exists.
        start_time_unix_s: wall-clock time of the episode's first step (UTC seconds since
            the epoch); defaults to when this object was created, so create it at the
            episode's start. None for imports with no known time.
        episode_id: globally unique id (hex UUID4). Episode indices change when stores
            are merged or purged; labels and reports refer to episodes by this id.
        dropped_rows: control rows the recorder could not store (its writer queue was
            full). 0 for a complete episode.
        gap_rows: row indices ``r`` (within the episode, ascending) such that rows were
            lost between stored rows ``r`` and ``r + 1``: the transition ``r -> r + 1``
            is invalid, and samplers skip it. Rows lost before the first stored row count
            in ``dropped_rows`` only (no stored transition spans them, but the episode
            then does not start at its reset state).
        reset_seed: the env reset seed the episode started from (None: unknown), so a
            replay of its actions can reproduce it.
        reward_source: where the episode's rewards came from when not as recorded:
            ``"none"`` (removed), ``"learned:<reward model id>"`` (written by
            :func:`robot_rl.algos.rewards.relabel.relabel`); ``""`` (the default) means recorded
            with the episode. Left out of the stored JSON when empty, so provenance of
            recorded episodes reads as before.
        safety_interventions: control steps on which each safety-filter constraint
            acted (constraint name -> count; see :data:`robot_rl.safety.CONSTRAINTS`).
            Left out of the stored JSON when empty (no filter acted, or none ran: then
            ``safety_filter_version`` says ``"off"``).
    """

    source: str
    operator: str = ""
    robot_id: str = ""
    policy_id: str = ""
    checkpoint_hash: str = ""
    config_hash: str = ""
    code_version: str = ""
    safety_filter_version: str = ""
    success: bool | None = None
    start_time_unix_s: float | None = field(default_factory=time.time)
    episode_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    dropped_rows: int = 0
    gap_rows: list[int] = field(default_factory=list)
    reset_seed: int | None = None
    reward_source: str = ""
    safety_interventions: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The canonical JSON form stored in ``meta/provenance`` (sorted keys)."""
        doc = asdict(self)
        if doc["success"] is not None:  # a numpy bool is not JSON-serializable
            doc["success"] = bool(doc["success"])
        if doc["start_time_unix_s"] is not None:
            doc["start_time_unix_s"] = float(doc["start_time_unix_s"])
        doc["dropped_rows"] = int(doc["dropped_rows"])  # numpy ints are not JSON either
        doc["gap_rows"] = [int(r) for r in doc["gap_rows"]]
        if doc["reset_seed"] is not None:
            doc["reset_seed"] = int(doc["reset_seed"])
        if not doc["reward_source"]:
            del doc["reward_source"]
        counts = {k: int(v) for k, v in doc["safety_interventions"].items() if v}
        if counts:
            doc["safety_interventions"] = counts
        else:
            del doc["safety_interventions"]
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> EpisodeProvenance:
        """Parse the stored JSON form; fields unknown to this version are ignored."""
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def check(self) -> None:
        """Raise ValueError naming the field if any value is malformed."""
        if self.source not in SOURCES:
            raise ValueError(
                f"provenance.source: expected one of {list(SOURCES)}, got {self.source!r}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _NON_STR_FIELDS:
                continue
            if not isinstance(value, str):
                raise ValueError(f"provenance.{f.name}: expected a str, got {type(value).__name__}")
        if not self.episode_id:
            raise ValueError("provenance.episode_id: expected a non-empty str, got ''")
        if not (self.success is None or isinstance(self.success, bool | np.bool_)):
            raise ValueError(
                f"provenance.success: expected True, False or None, got {self.success!r}"
            )
        t = self.start_time_unix_s
        if t is not None and (
            isinstance(t, bool)
            or not isinstance(t, int | float | np.integer | np.floating)
            or not math.isfinite(t)
        ):
            raise ValueError(
                f"provenance.start_time_unix_s: expected a finite float or None, got {t!r}"
            )
        if not _is_int(self.dropped_rows) or self.dropped_rows < 0:
            raise ValueError(
                f"provenance.dropped_rows: expected an int >= 0, got {self.dropped_rows!r}"
            )
        gaps = self.gap_rows
        if not isinstance(gaps, list | tuple) or not all(_is_int(r) and r >= 0 for r in gaps):
            raise ValueError(
                f"provenance.gap_rows: expected a list of row indices >= 0, got {gaps!r}"
            )
        if any(b <= a for a, b in itertools.pairwise(gaps)):
            raise ValueError(f"provenance.gap_rows: expected strictly ascending, got {gaps!r}")
        if gaps and not self.dropped_rows:
            raise ValueError(
                f"provenance.gap_rows: {gaps!r} but dropped_rows is 0; a gap loses rows"
            )
        if self.reset_seed is not None and not _is_int(self.reset_seed):
            raise ValueError(
                f"provenance.reset_seed: expected an int or None, got {self.reset_seed!r}"
            )
        if self.reward_source:
            check_reward_source(self.reward_source, "provenance.reward_source")
        counts = self.safety_interventions
        if not isinstance(counts, dict) or not all(
            isinstance(k, str) and _is_int(v) and v >= 0 for k, v in counts.items()
        ):
            raise ValueError(
                "provenance.safety_interventions: expected {constraint name: count >= 0}, "
                f"got {counts!r}"
            )
