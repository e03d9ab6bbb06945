"""An episode store's rows laid out for offline policy evaluation, and batches from them.

OPE reads a store once into memory (flat float32 observations in the store's key order,
actions, rewards, episode index and time step of every row) and works on these arrays;
every estimator resamples *episodes*, so per-row episode indices are kept.

**Horizon.** A sim return is a finite sum ``sum_{t<H} gamma^t r_t`` over an episode of at
most ``H`` control steps. With ``horizon_steps = H > 0`` evaluation matches it exactly:
rows past ``H`` are dropped, FQE's Q-function is given the steps left ``H - t`` as an
input (a time-limited MDP is not stationary; Pardo et al., "Time Limits in Reinforcement
Learning", ICML 2018) and the last step before the limit does not bootstrap. With
``horizon_steps = 0`` the MDP is treated as stationary: the value is the infinite-horizon
discounted return, and an episode cut by a time limit gives no last transition (as in
:class:`~robot_rl.data.sampler.TransitionSampler`).

**Actions.** Every estimator works in the normalized [-1, 1] action space, the one the
learners use: logged actions are mapped there from the store's action bounds
(:func:`~robot_rl.data.action_bounds.store_action_bounds`; the identity for robot_rl's own
stores), and so are a target policy's actions (:meth:`OPEData.to_unit`: a policy acts in
env units, whatever its training store's bounds). A logged behaviour log-density changes
by the map's log-Jacobian on the dims off the bounds; a probability mass on a bound (the
clipped-Gaussian convention of :mod:`robot_rl.algos.ope.importance`) does not. Logged
log-densities need the bounds the actions were clipped to (recorded, or [-1, 1]); a store
whose bounds come from its data's min/max is refused with them.

**Transitions.** Row ``t`` gives ``(s_t, a_t, r_t, s_{t+1})``. A terminated row has no
successor (no bootstrap). A row before a recording gap (provenance ``gap_rows``) or the
last row of an episode stopped before the horizon has an unknown successor and gives no
transition, though its reward still counts in the importance-sampling returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from robot_rl.data.action_bounds import (
    is_unit,
    recorded_action_bounds,
    store_action_bounds,
    to_unit,
)
from robot_rl.data.episode_store import EpisodeStore

#: Optional per-row store key (an observation key of shape ``()``): log-density of the
#: logged action under the policy that chose it, as written by a stochastic behaviour
#: policy. When present, importance sampling uses it instead of an estimated behaviour.
BEHAVIOUR_LOGPROB_KEY = "behaviour_logprob"

#: A normalized action within this of -1 or 1 counts as sitting on the bound (clipped):
#: a probability mass, not a density, in importance sampling and in logged log-densities.
BOUND_TOL = 1e-6


@dataclass
class OPEData:
    """A store's committed rows (first ``horizon_steps`` of each episode) in memory.

    Attributes:
        path: The store's path (for messages).
        task: The store's task attribute (``reach``, ``push``, ...).
        obs_keys: Observation keys of ``obs``, in the store's order
            (``behaviour_logprob`` excluded).
        obs_shapes: Per-step shape of each key.
        obs: ``(N, obs_dim)`` float32 flat observations.
        action: ``(N, action_dim)`` float32 logged actions, mapped from the store's action
            bounds to [-1, 1].
        reward: ``(N,)`` float64 rewards.
        terminated: ``(N,)`` bool.
        episode: ``(N,)`` int64 episode index of each row (0-based, store order).
        t: ``(N,)`` int64 time step of each row within its episode.
        episode_starts: ``(n_episodes,)`` int64 row of each episode's first step.
        next_row: ``(N,)`` int64 row of ``s_{t+1}`` (the row itself where there is none).
        has_transition: ``(N,)`` bool, the row gives an FQE transition.
        bootstrap: ``(N,)`` float32, 1 where the target bootstraps from ``s_{t+1}``.
        horizon_steps: ``H`` (0 = stationary, infinite horizon).
        behaviour_logprob: ``(N,)`` float64 logged behaviour log-densities (of the mapped
            actions), or ``None``.
        action_low, action_high: ``(action_dim,)`` float64 bounds of the store's actions,
            the ones mapped to -1 and 1.
    """

    path: str
    task: str
    obs_keys: list[str]
    obs_shapes: dict[str, tuple[int, ...]]
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    episode: np.ndarray
    t: np.ndarray
    episode_starts: np.ndarray
    next_row: np.ndarray
    has_transition: np.ndarray
    bootstrap: np.ndarray
    horizon_steps: int
    behaviour_logprob: np.ndarray | None = None
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None

    def to_unit(self, action: np.ndarray) -> np.ndarray:
        """Actions in the store's units (what a policy sends the env), ``(N, action_dim)``,
        mapped to [-1, 1] as the logged ones were, float32; clipped at the bounds."""
        if self.action_low is None or self.action_high is None:
            return np.clip(np.asarray(action, np.float64), -1.0, 1.0).astype(np.float32)
        return to_unit(action, self.action_low, self.action_high)

    @property
    def n_rows(self) -> int:
        return len(self.reward)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_starts)

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[1]

    @property
    def action_dim(self) -> int:
        return self.action.shape[1]

    def steps_left(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``H - t`` per row as float32 (zeros for an infinite horizon)."""
        t = self.t if rows is None else self.t[rows]
        if self.horizon_steps == 0:
            return np.zeros(len(t), np.float32)
        return (self.horizon_steps - t).astype(np.float32)

    def obs_dict(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per-key observations ``{key: (N, *shape)}`` (views of ``obs`` when ``rows`` is None)."""
        flat = self.obs if rows is None else self.obs[rows]
        out, start = {}, 0
        for key in self.obs_keys:
            shape = self.obs_shapes[key]
            size = int(np.prod(shape, dtype=np.int64))
            out[key] = flat[:, start : start + size].reshape(len(flat), *shape)
            start += size
        return out

    def episode_rows(self, i: int) -> slice:
        """Row range of episode ``i``."""
        stop = self.episode_starts[i + 1] if i + 1 < self.n_episodes else self.n_rows
        return slice(int(self.episode_starts[i]), int(stop))

    def discounted_returns(self, gamma: float) -> np.ndarray:
        """``sum_t gamma^t r_t`` of every logged episode (within the horizon)."""
        return np.bincount(self.episode, self.reward * gamma ** self.t.astype(np.float64))


def _check_clipping_bounds(store: EpisodeStore, low: np.ndarray, high: np.ndarray) -> None:
    """Logged log-densities follow the clipped-Gaussian convention: a mass on a bound of
    the action space. That needs the bounds the actions were clipped to: recorded in
    ``units["action"]``, or [-1, 1] for a store whose actions fit it. Bounds taken from
    the data's min/max are not those, and the rows at the extremes would be misread."""
    recorded = recorded_action_bounds(store)
    if recorded is None:
        known = np.full(len(low), is_unit(low, high))
    else:
        known = np.isfinite(recorded[0]) & np.isfinite(recorded[1])
    if not known.all():
        dims = np.flatnonzero(~known).tolist()
        raise ValueError(
            f"{store.path}: data/{BEHAVIOUR_LOGPROB_KEY} holds logged log-densities, but the "
            f"bounds of action dims {dims} come from the data's min/max, not from a recorded "
            "action space, so the densities cannot be mapped to [-1, 1]. Record the bounds "
            "in the store's units['action'] ('bounds low=[...] high=[...]'), or drop "
            f"{BEHAVIOUR_LOGPROB_KEY} to let OPE estimate the behaviour policy"
        )


def load_ope_data(
    store: EpisodeStore, *, horizon_steps: int | None = None, episodes: slice | None = None
) -> OPEData:
    """Reads a store's committed rows for OPE.

    Args:
        store: The episode store (open for reading).
        horizon_steps: ``H`` in control steps; ``None`` = the longest episode in the store
            (the time limit, when any episode reached it); 0 = infinite horizon.
        episodes: Only these episodes (default all).

    Raises:
        ValueError: The store has no episodes, a reward is missing (NaN/inf; the
            message names the store and the first episode concerned), or its action
            bounds cannot be read or do not hold its actions.
    """
    if store.n_episodes == 0:
        raise ValueError(f"episode store {store.path} has no committed episodes to evaluate on")
    # The noise models, behaviour fits and target noise all live in [-1, 1].
    low, high = store_action_bounds(store)
    ends_all = np.asarray(store.episode_ends, dtype=np.int64)
    starts_all = np.concatenate([[0], ends_all[:-1]])
    ep_ids = np.arange(store.n_episodes)[episodes if episodes is not None else slice(None)]
    if len(ep_ids) == 0:
        raise ValueError(f"no episodes of {store.path} selected by {episodes}")
    # A store recorded without rewards (reward_source "none") says how to relabel it.
    require_rewards = getattr(store, "require_rewards", None)
    if require_rewards is not None:
        require_rewards()
    reward_all = store.array("reward").astype(np.float64)
    bad = ~np.isfinite(reward_all)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        ep = int(np.searchsorted(ends_all, row, side="right"))
        raise ValueError(
            f"episode store {store.path} has no rewards for {int(bad.sum())} of "
            f"{len(bad)} rows (NaN/inf), first in episode {ep} (row {row}); OPE needs a "
            "reward on every row: relabel the store with a reward model first"
        )
    lengths_all = ends_all - starts_all
    if horizon_steps is None:
        horizon_steps = int(lengths_all[ep_ids].max())
    if horizon_steps < 0:
        raise ValueError(f"horizon_steps must be >= 0 (0 = infinite), got {horizon_steps}")

    # Rows kept: the first H of each selected episode.
    keep_len = (
        lengths_all[ep_ids]
        if horizon_steps == 0
        else np.minimum(lengths_all[ep_ids], horizon_steps)
    )
    rows = np.concatenate(
        [np.arange(s, s + n) for s, n in zip(starts_all[ep_ids], keep_len, strict=True)]
    )
    episode = np.repeat(np.arange(len(ep_ids)), keep_len)
    t = rows - np.repeat(starts_all[ep_ids], keep_len)
    new_starts = np.concatenate([[0], np.cumsum(keep_len)[:-1]]).astype(np.int64)
    last = np.zeros(len(rows), bool)
    last[np.cumsum(keep_len) - 1] = True

    keys = [k for k in store.obs_keys if k != BEHAVIOUR_LOGPROB_KEY]
    shapes = {k: tuple(int(s) for s in store.obs_spec[k][0]) for k in keys}
    obs = np.concatenate(
        [np.asarray(store.array(k)[rows], np.float32).reshape(len(rows), -1) for k in keys], axis=1
    )
    action = to_unit(store.array("action")[rows], low, high)
    terminated = np.asarray(store.array("terminated")[rows], bool)
    gap = np.zeros(len(rows), bool)
    for j, i in enumerate(ep_ids):
        gaps = getattr(store.recorded_provenance(int(i)), "gap_rows", None) or []
        for r in gaps:
            if 0 <= int(r) < keep_len[j]:
                gap[new_starts[j] + int(r)] = True

    limit = (horizon_steps - t == 1) if horizon_steps > 0 else np.zeros(len(rows), bool)
    # A terminated row or the last row before the limit ends the sum: no bootstrap needed.
    closed = terminated | limit
    has_transition = closed | (~last & ~gap)
    bootstrap = (~closed).astype(np.float32)
    next_row = np.arange(len(rows), dtype=np.int64) + (~last)

    logprob = None
    if BEHAVIOUR_LOGPROB_KEY in store.obs_keys:
        logprob = np.asarray(store.array(BEHAVIOUR_LOGPROB_KEY)[rows], np.float64).reshape(-1)
        if len(logprob) != len(rows) or not np.all(np.isfinite(logprob)):
            raise ValueError(
                f"{store.path}: data/{BEHAVIOUR_LOGPROB_KEY} must be one finite log-density per row"
            )
        _check_clipping_bounds(store, low, high)
        # The density of u = (a - mid) / half is half times that of a, per dim off the
        # bounds (zero for robot_rl's own stores: half = 1). "On a bound" is decided on u,
        # with importance sampling's own rule: a float32 action clipped to a bound that
        # float32 cannot represent (0.7, say) sits just inside it in raw units.
        inside = np.abs(action) < 1.0 - BOUND_TOL
        logprob = logprob + (inside * np.log((high - low) / 2.0)).sum(axis=1)
    return OPEData(
        path=str(store.path),
        task=str(store.attrs.get("task")),
        obs_keys=keys,
        obs_shapes=shapes,
        obs=obs,
        action=action,
        reward=reward_all[rows],
        terminated=terminated,
        episode=episode.astype(np.int64),
        t=t.astype(np.int64),
        episode_starts=new_starts,
        next_row=next_row,
        has_transition=has_transition,
        bootstrap=bootstrap,
        horizon_steps=int(horizon_steps),
        behaviour_logprob=logprob,
        action_low=np.asarray(low, np.float64),
        action_high=np.asarray(high, np.float64),
    )


class FQEBatch(NamedTuple):
    """A batch of FQE transitions, float32 tensors.

    ``next_action`` is the target policy's deterministic action at ``s'`` (noise, if the
    policy has any, is added by FQE); ``steps_left`` is ``H - t`` (0 for an infinite
    horizon) and ``bootstrap`` is 1 where the target uses ``Q(s', .)``.
    """

    obs: torch.Tensor  # (B, obs_dim)
    action: torch.Tensor  # (B, action_dim)
    reward: torch.Tensor  # (B,)
    next_obs: torch.Tensor  # (B, obs_dim)
    next_action: torch.Tensor  # (B, action_dim)
    bootstrap: torch.Tensor  # (B,)
    steps_left: torch.Tensor  # (B,)


class RowSource:
    """Uniform batches of rows of in-memory arrays, optionally weighted per row.

    A ``BatchSource`` for the shared trainer. Bootstrap refits pass per-row weights (the
    number of times the row's episode was drawn), which is sampling from the resampled
    dataset without copying it.

    Args:
        fields: ``{field name: (N, ...) array}``, one per field of ``batch_type``.
        batch_type: NamedTuple class the batches are made of.
        rows: Row indices to draw from.
        weights: Optional non-negative weight per entry of ``rows``.
        batch_size: Rows per batch.
        seed: Seed of the row generator.
    """

    def __init__(
        self,
        fields: Mapping[str, np.ndarray],
        batch_type: type[NamedTuple],
        rows: np.ndarray,
        *,
        weights: np.ndarray | None = None,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        self.fields = {k: np.ascontiguousarray(fields[k]) for k in batch_type._fields}
        self.batch_type = batch_type
        self.rows = np.asarray(rows, np.int64)
        self.batch_size = int(batch_size)
        self._rng = np.random.default_rng(seed)
        self._cdf = None
        if weights is not None:
            w = np.asarray(weights, np.float64)
            if w.shape != self.rows.shape or (w < 0).any() or w.sum() <= 0:
                raise ValueError("RowSource: weights must be >= 0, one per row, not all 0")
            self._cdf = np.cumsum(w) / w.sum()
        if len(self.rows) == 0:
            raise ValueError("RowSource: no rows to sample from")

    def sample(self) -> Any:
        if self._cdf is None:
            pick = self._rng.integers(0, len(self.rows), size=self.batch_size)
        else:
            u = self._rng.random(self.batch_size)
            pick = np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self.rows) - 1)
        rows = self.rows[pick]
        return self.batch_type(
            *(torch.from_numpy(self.fields[k][rows]) for k in self.batch_type._fields)
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]


def transition_fields(data: OPEData) -> dict[str, np.ndarray]:
    """Per-row arrays of a ``TransitionBatch`` (for behaviour fitting: only obs/action
    matter, every row qualifies)."""
    return {
        "obs": data.obs,
        "action": data.action,
        "reward": data.reward.astype(np.float32),
        "next_obs": data.obs[data.next_row],
        "terminated": data.terminated.astype(np.float32),
    }
