"""Uniform random batches from an episode store into torch: transitions and windows.

Transitions follow d3rlpy's episode semantics: within an episode, row t gives
(s_t, a_t, r_t, s_{t+1}, terminated_t). An episode's last row has no s_{t+1}: if it is
``terminated`` it still gives a transition, with next_obs = its own obs (the learner
masks the bootstrap with terminated = 1); otherwise (``truncated`` by a time limit or an
operator stop) it gives none.

Recording gaps: an episode's provenance may list ``gap_rows``, rows r after which rows
were lost (the recorder's queue overflowed), so row r + 1 does not follow row r. Row r
then gives no transition, and no window spans from r to r + 1: a window that reaches the
gap is edge-padded there (mask 0), as at an episode's end.

Rewards: a store without rewards (``reward_source`` ``"none"``) is refused with an error
that says to run ``robot-rl-data relabel``, unless the caller does not learn from rewards
(behaviour cloning) and passes ``require_rewards=False``: batches then hold NaN rewards
(in memory only), so any use of them shows at once.

Out of core (``in_memory=False``), both samplers gather from an uncompressed memory-mapped
copy of the store's committed rows, built once per store snapshot in a cache directory
(:mod:`robot_rl.data.sampler_cache`: where it lives, its disk cost, when it is rebuilt).
Batches are the same as in memory, for the same seed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from robot_rl.data.action_bounds import is_unit, to_unit
from robot_rl.data.batch import MCTransitionBatch, TransitionBatch
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.returns import discounted_returns, return_range_scale
from robot_rl.data.sampler_rows import (
    _gap_rows,
    _load_rows,
    _obs_dim,
    _to_device,
    resolve_obs_keys,
)
from robot_rl.data.window_sampler import WindowSampler

# These were defined here before they got modules of their own; they stay importable
# from here.
__all__ = [
    "PICK_BLOCK",
    "TransitionSampler",
    "WindowSampler",
    "discounted_returns",
    "resolve_obs_keys",
    "return_range_scale",
]


#: Batches whose row picks TransitionSampler draws at once: one numpy call (and on a GPU
#: one copy) per block instead of per batch, the same picks either way.
PICK_BLOCK = 64


def _all_finite(*arrays: np.ndarray | None) -> bool:
    return all(a is None or bool(np.isfinite(a).all()) for a in arrays)


class TransitionSampler:
    """Uniform batches of transitions over a whole store, reproducible by seed.

    Args:
        store: the episode store; only its committed episodes (at construction) are used.
        obs_keys: observation keys to concatenate into the flat obs, in this order;
            default all of the store's, in the store's order.
        batch_size: transitions per batch.
        device: torch device of the returned tensors. In memory on a CUDA GPU, the
            arrays themselves move to the device once (when they take at most half its
            free memory) as one table with a row per valid transition (about twice the
            observations' size), and a batch is one gather there: only row indices
            cross, once per ``PICK_BLOCK`` batches (drawn on the host, so the batches are
            the same as on the CPU), and the training loop never waits on a host gather.
            Otherwise batches are gathered on the host and copied.
        seed: seed of the index generator.
        in_memory: load the committed arrays into RAM once; False gathers from a
            memory-mapped uncompressed copy on disk (built on first use, then reused),
            for stores larger than RAM. Same batches either way.
        cache_dir: root directory of that copy when not ``in_memory``; default
            ``$ROBOT_RL_CACHE_DIR/sampler`` or ``~/.cache/robot_rl/sampler``. It needs
            about ``4 * (obs_dim + action_dim + 1) + 1`` bytes per committed row.
        require_rewards: refuse a store without rewards (NoRewardsError, naming
            ``robot-rl-data relabel``); False, for learners that ignore rewards (BC),
            gives NaN rewards instead (in memory only).
        reward_scale: factor on every reward the sampler hands out (and on the returns
            below), e.g. IQL's return-range normalization (:func:`return_range_scale`).
        mc_return_discount: when set (gamma in (0, 1]), batches are
            :class:`~robot_rl.data.batch.MCTransitionBatch` with each transition's
            discounted return-to-go to the end of its episode (Cal-QL needs it).
        action_bounds: per-dim ``(low, high)`` of the stored actions; batches then carry
            them mapped affinely to [-1, 1] (see
            :func:`robot_rl.data.action_bounds.store_action_bounds`). None hands them
            out as stored.

    Attributes:
        checked_finite: True when every value a batch can carry was checked finite once,
            here (in memory: obs, actions, rewards when present, returns); a trainer may
            then skip its per-batch NaN/inf check. False out of core.
    """

    def __init__(
        self,
        store: EpisodeStore,
        *,
        obs_keys: list[str] | None = None,
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        seed: int = 0,
        in_memory: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        require_rewards: bool = True,
        reward_scale: float = 1.0,
        mc_return_discount: float | None = None,
        action_bounds: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size}")
        if require_rewards:
            store.require_rewards()  # before any work: the error names the fix
        self.store = store
        self.obs_keys = resolve_obs_keys(store, obs_keys)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.in_memory = in_memory
        self._rng = np.random.default_rng(seed)
        self.obs_dim = _obs_dim(store, self.obs_keys)
        self.action_dim = store.action_dim
        self._n_steps = store.n_steps

        terminated = store.array("terminated")
        ends = store.episode_ends
        is_last = np.zeros(self._n_steps, dtype=bool)
        is_last[ends - 1] = True
        valid = ~is_last | terminated
        # Rows before a recording gap: their next stored row is not s_{t+1}.
        valid[_gap_rows(store)] = False
        self.valid_rows = np.flatnonzero(valid).astype(np.int64)
        self.valid_rows.setflags(write=False)
        # s' is the next row, except at a terminal last row, which has none: reuse s.
        self._next_row = np.arange(self._n_steps, dtype=np.int64) + (~is_last)

        self._terminated = terminated.astype(np.float32)
        self._obs, self._action, self._reward, self.cache = _load_rows(
            store, self.obs_keys, in_memory, cache_dir, require_rewards
        )
        if not (np.isfinite(reward_scale) and reward_scale > 0):
            raise ValueError(f"reward_scale: expected a finite factor > 0, got {reward_scale}")
        self.reward_scale = float(reward_scale)
        self._mc_return: np.ndarray | None = None
        if mc_return_discount is not None:
            if not 0 < mc_return_discount <= 1:
                raise ValueError(
                    f"mc_return_discount: expected a discount in (0, 1], got {mc_return_discount}"
                )
            store.require_rewards()
            gamma = float(mc_return_discount)
            self._mc_return = self.reward_scale * discounted_returns(self._reward, ends, gamma)
        #: The stored actions' bounds, mapped to [-1, 1] in batches; None: as stored.
        self._action_bounds: tuple[np.ndarray, np.ndarray] | None = None
        if action_bounds is not None:
            low, high = (np.asarray(b, np.float64).reshape(-1) for b in action_bounds)
            if not (len(low) == len(high) == self.action_dim and np.all(high > low)):
                raise ValueError(
                    f"action_bounds: expected low < high for each of the {self.action_dim} "
                    f"action dims, got low={low.tolist()} high={high.tolist()}"
                )
        if action_bounds is not None and not is_unit(low, high):
            self._action_bounds = (low, high)
        self.checked_finite = self.cache is None and _all_finite(
            self._obs, self._action, self._mc_return, self._reward if store.has_rewards else None
        )
        self._on_device = self._move_to_device() if self.device.type == "cuda" else None
        # Row picks are drawn a block of batches at a time (see sample()), at most
        # PICK_BLOCK batches and about a million picks.
        self._block_len = max(1, min(PICK_BLOCK, (1 << 20) // self.batch_size))
        self._block_start: dict[str, Any] | None = None
        self._block: np.ndarray | None = None
        self._block_on_device: torch.Tensor | None = None
        self._block_pos = self._block_len

    def _move_to_device(self) -> torch.Tensor | None:
        """One float32 table on ``self.device`` with a row per valid transition: s, s',
        the action mapped to [-1, 1], the scaled reward, the terminated flag (and the MC
        return), computed with the host path's float32 operations, so the same values;
        about twice the observations' size. A batch is then one gather of rows. Built in
        chunks of rows, so the host holds one chunk at a time beyond the arrays. None out
        of core, or when the table would take more than half the GPU's free memory
        (training needs it more: the host gathers then)."""
        if self.cache is not None:
            return None
        rows = self.valid_rows
        width = 2 * self.obs_dim + self.action_dim + 2 + (self._mc_return is not None)
        n_bytes = 4 * len(rows) * width
        if self.device.type == "cuda" and n_bytes > 0.5 * torch.cuda.mem_get_info(self.device)[0]:
            return None
        table = torch.empty((len(rows), width), dtype=torch.float32, device=self.device)
        chunk = max(1, (64 << 20) // (4 * width))  # rows per 64 MiB
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            action, reward = self._mapped(self._action[part], self._reward[part])
            columns = [
                self._obs[part],
                self._obs[self._next_row[part]],
                action,
                reward[:, None],
                self._terminated[part, None],
            ]
            if self._mc_return is not None:
                columns.append(self._mc_return[part, None])
            host = np.concatenate(columns, axis=1, dtype=np.float32)
            table[start : start + len(part)] = torch.from_numpy(host)  # blocking: host is freed
        return table

    @property
    def n_transitions(self) -> int:
        """Number of valid transitions (the population :meth:`sample` draws from)."""
        return len(self.valid_rows)

    def sample(self) -> TransitionBatch:
        """A batch of ``batch_size`` transitions drawn uniformly with replacement."""
        if self.n_transitions == 0:
            raise ValueError(f"{self.store.path}: no valid transitions to sample")
        if self._block_pos == self._block_len:
            self._draw_block()
        i = self._block_pos
        self._block_pos += 1
        if self._block_on_device is not None:
            return self._gather_on_device(self._block_on_device[i])
        return self._gather_rows(self.valid_rows[self._block[i]])

    def _draw_block(self) -> None:
        """Draws the picks of the next block of batches in one call (on a GPU, one copy
        too). numpy draws them as the same stream as one call per batch would."""
        self._block_start = self._rng.bit_generator.state
        self._block = self._rng.integers(
            0, self.n_transitions, size=(self._block_len, self.batch_size), dtype=np.int64
        )
        if self._on_device is not None:
            self._block_on_device = self._to_torch(self._block)
        self._block_pos = 0

    def state_dict(self) -> dict[str, Any]:
        """The index generator's state after the last batch handed out, so a resumed
        training run draws the same batches (also with another batch size or block)."""
        if self._block_start is None or self._block_pos == self._block_len:
            return {"rng": self._rng.bit_generator.state}
        # Inside a block: replay the block's draw up to the batches used.
        rng = np.random.Generator(type(self._rng.bit_generator)())
        rng.bit_generator.state = self._block_start
        rng.integers(0, self.n_transitions, size=(self._block_pos, self.batch_size), dtype=np.int64)
        return {"rng": rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._block_start, self._block_pos = None, self._block_len

    def gather(self, rows: np.ndarray) -> TransitionBatch:
        """The transitions starting at store rows ``rows``.

        Raises:
            ValueError: a row is not in ``valid_rows`` (it starts no transition: the
                last row of an episode cut by its time limit, a row before a recording
                gap, or no row of the store's committed episodes).
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        picks = np.searchsorted(self.valid_rows, rows)
        found = picks < self.n_transitions
        found[found] = self.valid_rows[picks[found]] == rows[found]
        if not found.all():
            raise ValueError(
                f"{self.store.path}: rows {rows[~found].tolist()[:10]} start no transition "
                f"(not in valid_rows, {self.n_transitions} rows)"
            )
        if self._on_device is not None:
            return self._gather_on_device(self._to_torch(picks))
        return self._gather_rows(rows)

    def _gather_rows(self, rows: np.ndarray) -> TransitionBatch:
        """The host path of :meth:`gather`, for rows known to be valid."""
        next_rows = self._next_row[rows]
        obs, next_obs = self._obs[rows], self._obs[next_rows]
        action, reward = self._mapped(self._action[rows], self._reward[rows])
        batch = TransitionBatch(
            obs=self._to_torch(obs),
            action=self._to_torch(action),
            reward=self._to_torch(reward),
            next_obs=self._to_torch(next_obs),
            terminated=self._to_torch(self._terminated[rows]),
        )
        if self._mc_return is None:
            return batch
        return MCTransitionBatch(*batch, mc_return=self._to_torch(self._mc_return[rows]))

    def _mapped(self, action: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored actions and rewards as batches carry them: actions mapped from their
        bounds to [-1, 1] (:func:`~robot_rl.data.action_bounds.to_unit`), rewards times
        ``reward_scale``; float32."""
        if self._action_bounds is not None:
            action = to_unit(action, *self._action_bounds)
        if self.reward_scale != 1.0:
            reward = reward * np.float32(self.reward_scale)
        return action, reward

    def _gather_on_device(self, picks: torch.Tensor) -> TransitionBatch:
        """Transitions ``valid_rows[picks]`` (``picks`` on the device) from the device
        table: one gather; the fields are column views of it."""
        table = self._on_device.index_select(0, picks)
        o, a = self.obs_dim, self.action_dim
        batch = TransitionBatch(
            obs=table[:, :o],
            action=table[:, 2 * o : 2 * o + a],
            reward=table[:, 2 * o + a],
            next_obs=table[:, o : 2 * o],
            terminated=table[:, 2 * o + a + 1],
        )
        if self._mc_return is None:
            return batch
        return MCTransitionBatch(*batch, mc_return=table[:, 2 * o + a + 2])

    def _to_torch(self, x: np.ndarray) -> torch.Tensor:
        return _to_device(x, self.device)
