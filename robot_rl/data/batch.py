"""Batch types handed from the data layer to learning code (NamedTuples, as in SB3)."""

from typing import NamedTuple

import torch


class TransitionBatch(NamedTuple):
    """A batch of transitions (s, a, r, s', terminated), all float32 on one device.

    Observations are flat: the store's observation keys concatenated in the order of
    ``obs_keys`` (each key flattened), which is the order the policy artifact records.
    """

    obs: torch.Tensor  # (B, obs_dim)
    action: torch.Tensor  # (B, action_dim)
    reward: torch.Tensor  # (B,)
    next_obs: torch.Tensor  # (B, obs_dim)
    terminated: torch.Tensor  # (B,) 1.0 where s' is terminal (not a time-limit cut)


class MCTransitionBatch(NamedTuple):
    """A :class:`TransitionBatch` (same fields, same order) plus each transition's
    Monte-Carlo return-to-go ``mc_return``: ``G_t = sum_{k>=t} gamma^(k-t) r_k`` to the end
    of its recorded episode (a time-limit cut ends the sum). Cal-QL's calibration bound."""

    obs: torch.Tensor  # (B, obs_dim)
    action: torch.Tensor  # (B, action_dim)
    reward: torch.Tensor  # (B,)
    next_obs: torch.Tensor  # (B, obs_dim)
    terminated: torch.Tensor  # (B,)
    mc_return: torch.Tensor  # (B,)


class WindowBatch(NamedTuple):
    """A batch of windows of H consecutive control steps from within one episode."""

    obs: torch.Tensor  # (B, H, obs_dim)
    action: torch.Tensor  # (B, H, action_dim)
    reward: torch.Tensor  # (B, H)
    mask: torch.Tensor  # (B, H) 1.0 for real steps, 0.0 for padding past an episode's end
