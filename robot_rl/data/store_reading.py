"""Reading a store's committed episodes: control rows, provenance, ids, the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import zarr

from robot_rl.data.provenance import EpisodeProvenance
from robot_rl.data.store_commit import CommittedStore
from robot_rl.data.store_layout import DIGESTS_ARRAY, StoreSchema


class StoreReading(CommittedStore):
    """Reading committed control rows and provenance (part of
    :class:`robot_rl.data.episode_store.EpisodeStore`)."""

    @property
    def schema(self) -> StoreSchema:
        """What the store holds per row (see :class:`StoreSchema`)."""
        return StoreSchema(
            obs_spec=dict(self.obs_spec),
            action_dim=self.action_dim,
            control_hz=self.control_hz,
            robot=str(self.attrs.get("robot")),
            task=str(self.attrs.get("task")),
            units=dict(self.attrs.get("units") or {}),
            streams={s: dict(spec) for s, spec in self.stream_spec.items()},
            timestamps=self.has_timestamps,
            reward_source=self.reward_source,
        )

    def chunk_rows(self) -> dict[str, int]:
        """Rows per chunk of every row-appended array except ``meta/provenance`` and
        ``meta/stats``, by name (what :meth:`create`'s ``chunks`` takes)."""
        return {
            name: int(a.chunks[0])
            for name, a, _ in self._all_arrays()
            if not name.startswith(("meta/provenance", "meta/stats/", DIGESTS_ARRAY))
        }

    def episode(self, i: int) -> dict[str, np.ndarray]:
        """All ``data/`` arrays of committed episode ``i``, keyed like ``append_episode``."""
        self._check_open()
        start, end = self.episode_bounds(i)
        return {k: np.asarray(a[start:end]) for k, a in self._data.items()}

    def recorded_provenance(self, i: int) -> EpisodeProvenance:
        """Provenance of committed episode ``i`` as committed (before any later label)."""
        self._check_open()
        i = self._episode_index(i)
        return EpisodeProvenance.from_json(self._prov_arr[i].item())

    def provenance(self, i: int) -> EpisodeProvenance:
        """Provenance of committed episode ``i``; ``success`` is its latest label, if any."""
        prov = self.recorded_provenance(i)
        latest = self._labels.latest_success()
        if prov.episode_id in latest:
            prov.success = latest[prov.episode_id]
        return prov

    def episode_ids(self) -> list[str]:
        """``episode_id`` of every committed episode, in index order."""
        return list(self._id_map())

    def episode_index(self, episode_id: str) -> int:
        """Index of the committed episode with this ``episode_id``."""
        try:
            return self._id_map()[episode_id]
        except KeyError:
            raise KeyError(
                f"{self.path}: no committed episode has episode_id {episode_id!r}"
            ) from None

    def array(self, key: str) -> np.ndarray:
        """All committed rows of ``data/<key>``."""
        self._check_open()
        return np.asarray(self._data_array(key)[: self._n_steps])

    def zarr_array(self, key: str) -> zarr.Array:
        """The underlying ``data/<key>`` zarr array; rows past ``n_steps`` are uncommitted."""
        return self._data_array(key)

    def _data_array(self, key: str) -> zarr.Array:
        if key == "reward":
            self.require_rewards()
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(
                f"{self.path}: no data key {key!r}; keys are {list(self._data)}"
            ) from None

    def iter_episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Committed episodes in order (each as :meth:`episode` returns it)."""
        for i in range(self._n_episodes):
            yield self.episode(i)

    def mismatches(self, wanted: dict[str, Any], *, theirs: str = "expected") -> list[str]:
        """What differs between this store and what a run needs, one line per key, e.g.
        ``"task: store has 'reach', config has 'push'"`` with ``theirs="config has"``.

        Keys: ``robot``, ``task``, ``control_hz``, ``action_dim`` and ``obs_spec``
        (key -> (shape tuple, dtype string)).
        """
        have = {
            "robot": self.attrs.get("robot"),
            "task": self.attrs.get("task"),
            "control_hz": self.control_hz,
            "action_dim": self.action_dim,
            "obs_spec": {k: (tuple(sh), str(d)) for k, (sh, d) in self.obs_spec.items()},
        }
        unknown = sorted(set(wanted) - set(have))
        if unknown:
            raise KeyError(f"mismatches: no store property {unknown}; known: {sorted(have)}")
        return [
            f"{k}: store has {have[k]!r}, {theirs} {v!r}" for k, v in wanted.items() if have[k] != v
        ]
