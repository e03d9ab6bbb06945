"""Reading a store's streams: data at other rates, aligned to control rows by time.

Streams (1 kHz robot state, 30 Hz camera images, ...) live under ``streams/<name>/``, each
with its own ``timestamp`` and ``episode_ends``. :meth:`StoreStreams.align_stream` gives,
for each control row, the latest stream row at or before it.
"""

from __future__ import annotations

import numpy as np
import zarr

from robot_rl.data.store_layout import TIMESTAMP_KEY
from robot_rl.data.store_reading import StoreReading


class StoreStreams(StoreReading):
    """Reading committed stream rows (part of
    :class:`robot_rl.data.episode_store.EpisodeStore`)."""

    @property
    def stream_names(self) -> list[str]:
        """Names of the declared streams."""
        return list(self.stream_keys)

    def n_stream_rows(self, name: str) -> int:
        """Committed rows of stream ``name``, over all episodes."""
        self._check_stream(name)
        return self._stream_rows[name]

    def stream_bounds(self, name: str, episode: int) -> tuple[int, int]:
        """Row range ``[start, end)`` of stream ``name`` in committed episode ``episode``."""
        self._check_stream(name)
        i = self._episode_index(episode)
        ends = self._stream_ends[name]
        return (int(ends[i - 1]) if i > 0 else 0), int(ends[i])

    def stream(self, name: str, episode: int) -> dict[str, np.ndarray]:
        """Rows of stream ``name`` in committed episode ``episode``: ``timestamp`` and
        every declared key."""
        self._check_open()
        start, end = self.stream_bounds(name, episode)
        return {k: np.asarray(a[start:end]) for k, a in self._streams[name].items()}

    def stream_zarr_array(self, name: str, key: str) -> zarr.Array:
        """The underlying ``streams/<name>/<key>`` array; rows past
        :meth:`n_stream_rows` are uncommitted."""
        self._check_stream(name)
        try:
            return self._streams[name][key]
        except KeyError:
            raise KeyError(
                f"{self.path}: stream {name!r} has no key {key!r}; keys are "
                f"{list(self._streams[name])}"
            ) from None

    def align_stream(self, name: str, episode: int, key: str | None = None) -> np.ndarray:
        """Align stream ``name`` to the control rows of ``episode`` by time.

        For each control row, the latest stream row whose timestamp is at or before the
        control row's timestamp (no look-ahead).

        Args:
            name: a declared stream.
            episode: committed episode index.
            key: None to get indices; a stream key to get that key's aligned rows.

        Returns:
            key None: int64 (T,) indices into ``stream(name, episode)`` rows, -1 where
            the stream has no row yet at a control row's time. With ``key``: the key's
            rows at those indices, shape (T, *shape).

        Raises:
            ValueError: the store has no control-row timestamps; or ``key`` was given
                and some control row precedes the stream's first row (use the indices).
        """
        self._check_open()
        if not self.has_timestamps:
            raise ValueError(
                f"{self.path}: control rows have no timestamps (store created with "
                "timestamps=False); streams cannot be aligned"
            )
        c0, c1 = self.episode_bounds(episode)
        s0, s1 = self.stream_bounds(name, episode)
        control_t = np.asarray(self._data[TIMESTAMP_KEY][c0:c1])
        stream_t = np.asarray(self._streams[name][TIMESTAMP_KEY][s0:s1])
        idx = np.searchsorted(stream_t, control_t, side="right").astype(np.int64) - 1
        if key is None:
            return idx
        arr = self.stream_zarr_array(name, key)
        if idx.size and idx[0] < 0:
            first = int(np.argmax(idx >= 0)) if (idx >= 0).any() else len(idx)
            raise ValueError(
                f"align_stream({name!r}, episode={episode}, key={key!r}): control rows 0-"
                f"{first - 1} precede the stream's first row; take the indices (key=None) "
                "and handle -1"
            )
        return np.asarray(arr.oindex[s0 + idx]) if idx.size else np.asarray(arr[s0:s0])
