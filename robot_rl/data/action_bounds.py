"""The range of a store's actions, and the map between it and the [-1, 1] learners use.

robot_rl's own stores (the simulated arm, teleoperation, the benchmark datasets) hold
actions already normalized to [-1, 1]. An imported store may not: the importers keep a
source's actions in its own units and record the action space's bounds in the store's
``units["action"]`` as text (:func:`action_unit`; the store has no attribute for them).
Learners see every action mapped to [-1, 1] through :func:`store_action_bounds`, and the
policy artifact records the same bounds, so a loaded policy acts in the store's units
again (``PolicyManifest.action_low``/``action_high``), as SB3 rescales a squashed
policy's output to its ``Box``.
"""

from __future__ import annotations

import re

import numpy as np

from robot_rl.data.episode_store import EpisodeStore

#: How the bounds read inside ``units["action"]``; written by :func:`action_unit`.
_UNIT_PATTERN = re.compile(r"bounds low=\[([^\]]*)\] high=\[([^\]]*)\]")


def action_unit(bounds: tuple[list[float], list[float]] | None) -> str | None:
    """The ``units["action"]`` entry recording raw action bounds (None for [-1, 1])."""
    if bounds is None:
        return None
    low, high = bounds
    return f"raw source units; bounds low={low} high={high}"


def recorded_action_bounds(
    store: EpisodeStore,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The bounds an importer wrote into ``store``'s ``units["action"]``, float64
    ``(low, high)`` with one entry per action dim (possibly infinite), or None.

    Raises:
        ValueError: The entry names bounds that cannot be read, or of the wrong size.
    """
    text = (store.attrs.get("units") or {}).get("action")
    match = _UNIT_PATTERN.search(text) if isinstance(text, str) else None
    if match is None:
        return None
    try:
        low, high = (
            np.array([float(v) for v in part.split(",") if v.strip()], dtype=np.float64)
            for part in match.groups()
        )
    except ValueError:
        raise ValueError(
            f"{store.path}: units['action'] = {text!r} names action bounds that are not numbers"
        ) from None
    if not (len(low) == len(high) == store.action_dim) or np.any(low >= high):
        raise ValueError(
            f"{store.path}: units['action'] = {text!r} does not give low < high for each "
            f"of the {store.action_dim} action dims"
        )
    return low, high


def store_action_bounds(store: EpisodeStore) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim ``(low, high)`` (float64) that learners on ``store`` map to [-1, 1].

    In this order: the bounds recorded in ``units["action"]`` where they are finite;
    [-1, 1] when every stored action lies inside it (robot_rl's own stores, and most
    datasets); otherwise the stored actions' minimum and maximum per dim (d3rlpy's
    min-max action scaling), widened to +-1 around a dim that never varies.

    Raises:
        ValueError: A stored action lies outside the recorded bounds (names the dim,
            value and bounds), or the recorded bounds cannot be read.
    """
    dim = store.action_dim
    recorded = recorded_action_bounds(store)
    if store.n_steps == 0:  # nothing to check: the recorded bounds, else [-1, 1]
        if recorded is None:
            return -np.ones(dim), np.ones(dim)
        low, high = recorded
        return np.where(np.isfinite(low), low, -1.0), np.where(np.isfinite(high), high, 1.0)
    # Exact min/max from the moments persisted at commit (the call also reads a bounded
    # sample for quantiles, once per store snapshot: it is cached).
    stats = store.stats("action")
    data_low = np.asarray(stats["min"], np.float64).reshape(dim)
    data_high = np.asarray(stats["max"], np.float64).reshape(dim)
    if recorded is None and np.all(data_low >= -1.0) and np.all(data_high <= 1.0):
        return -np.ones(dim), np.ones(dim)
    if recorded is None:
        low, high = data_low, data_high
    else:
        low, high = recorded
        tol = 1e-6 * np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
        finite = np.isfinite(low) & np.isfinite(high)
        outside = finite & ((data_low < low - tol) | (data_high > high + tol))
        if np.any(outside):
            d = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"{store.path}: stored actions of dim {d} span [{data_low[d]:g}, "
                f"{data_high[d]:g}], outside the bounds [{low[d]:g}, {high[d]:g}] recorded "
                "in units['action']; the store's actions do not match its action space"
            )
        low = np.where(np.isfinite(low), low, data_low)
        high = np.where(np.isfinite(high), high, data_high)
    flat = high - low <= 0
    low, high = np.where(flat, low - 1.0, low), np.where(flat, high + 1.0, high)
    return low, high


def is_unit(low: np.ndarray, high: np.ndarray) -> bool:
    """Whether ``(low, high)`` is [-1, 1] in every dim (no rescaling needed)."""
    return bool(np.all(np.asarray(low) == -1.0) and np.all(np.asarray(high) == 1.0))


def to_unit(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``action`` (..., action_dim) in the units of the bounds ``(low, high)``, mapped
    affinely to [-1, 1] and clipped there; float32 (computed in float64)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    half = (high - low) / 2.0
    unit = (np.asarray(action, np.float64) - (low + half)) / half
    return np.clip(unit, -1.0, 1.0).astype(np.float32)
