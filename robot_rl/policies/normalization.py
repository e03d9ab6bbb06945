"""Observation normalization saved with every policy: ``(obs - mean) / std`` per flat dim.

The statistics come from the training dataset (the episode store's per-key stats) and
travel inside the policy (as torch buffers, hence in ``weights.safetensors``), so the
robot normalizes exactly as training did, as LeRobot does.

Zero or near-zero variance dims (a goal coordinate that never varied in the data, a
gripper that was never used) would divide by ~0. Their std is floored at ``std_floor``
(default 1e-3, in the observation's own units) so normalized values stay finite. The
floor alone still maps an unseen deviation of 0.1 on such a dim to 100, which a network
never trained on that input would turn into an arbitrary action, so normalized values are
also clipped to ``[-clip, clip]`` (default 10, as SB3's ``VecNormalize``). Dims with
real variance are almost never clipped at 10 standard deviations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

DEFAULT_STD_FLOOR = 1e-3
DEFAULT_CLIP = 10.0


class Normalizer(nn.Module):
    """Per-dim affine normalization of flat observations, with a std floor and a clip.

    ``mean``, ``std`` (already floored) and ``clip`` are buffers, so they are part of the
    module's ``state_dict`` and are saved and loaded with the weights.

    Args:
        mean: Per-dim mean, shape ``(obs_dim,)``.
        std: Per-dim standard deviation, shape ``(obs_dim,)``; floored at ``std_floor``.
        std_floor: Smallest std used, in the observation's units; must be > 0.
        clip: Normalized values are clipped to ``[-clip, clip]``; ``None`` disables it.
    """

    mean: torch.Tensor
    std: torch.Tensor
    clip: torch.Tensor

    def __init__(
        self,
        mean: torch.Tensor | np.ndarray | Sequence[float],
        std: torch.Tensor | np.ndarray | Sequence[float],
        std_floor: float = DEFAULT_STD_FLOOR,
        clip: float | None = DEFAULT_CLIP,
    ) -> None:
        super().__init__()
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(-1)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(-1)
        if mean_t.shape != std_t.shape:
            raise ValueError(
                f"Normalizer: mean has {mean_t.numel()} dims but std has {std_t.numel()}; "
                "expected one mean and one std per observation dim"
            )
        if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all()):
            bad = (~(torch.isfinite(mean_t) & torch.isfinite(std_t))).nonzero().flatten()
            raise ValueError(f"Normalizer: non-finite mean or std at flat dims {bad.tolist()}")
        if std_floor <= 0:
            raise ValueError(f"Normalizer: std_floor must be > 0, got {std_floor}")
        if clip is not None and clip <= 0:
            raise ValueError(f"Normalizer: clip must be > 0 or None, got {clip}")
        self.std_floor = float(std_floor)
        self.register_buffer("mean", mean_t.clone())
        self.register_buffer("std", torch.clamp(std_t, min=std_floor))
        # Stored as a tensor (inf when disabled) so it round-trips through safetensors and
        # forward() stays branch-free for torch.compile.
        self.register_buffer("clip", torch.tensor(float("inf") if clip is None else float(clip)))

    @property
    def dim(self) -> int:
        """Number of flat observation dims."""
        return int(self.mean.numel())

    @classmethod
    def identity(cls, dim: int) -> Normalizer:
        """A normalizer that passes ``dim`` dims through unchanged (mean 0, std 1, no clip)."""
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32), clip=None)

    @classmethod
    def from_stats(
        cls,
        stats: Mapping[str, Mapping[str, np.ndarray | Sequence[float]]],
        obs_keys: Sequence[str],
        shapes: Mapping[str, Sequence[int]] | None = None,
        std_floor: float = DEFAULT_STD_FLOOR,
        clip: float | None = DEFAULT_CLIP,
    ) -> Normalizer:
        """Builds the normalizer from per-key stats, concatenated in ``obs_keys`` order.

        Args:
            stats: ``{key: {"mean": array, "std": array, ...}}``, e.g.
                ``{k: store.stats(k) for k in obs_keys}``; arrays have the key's shape (or
                its flattened size). Other entries ("min", "max", ...) are ignored.
            obs_keys: The order in which keys are flattened into the policy's input.
            shapes: Optional ``{key: shape}``; when given, each key's stats must have
                ``prod(shape)`` elements.
            std_floor: See the class docstring.
            clip: See the class docstring.

        Returns:
            A ``Normalizer`` over ``sum(prod(shape))`` flat dims.

        Raises:
            ValueError: A key is missing from ``stats``, lacks "mean"/"std", or its sizes
                do not match each other or ``shapes``.
        """
        means, stds = [], []
        for key in obs_keys:
            if key not in stats:
                raise ValueError(
                    f"Normalizer.from_stats: no stats for observation key {key!r}; "
                    f"stats has keys {sorted(stats)}"
                )
            entry = stats[key]
            missing = [f for f in ("mean", "std") if f not in entry]
            if missing:
                raise ValueError(
                    f"Normalizer.from_stats: stats for {key!r} lack {missing}; "
                    f"got fields {sorted(entry)}"
                )
            mean = np.asarray(entry["mean"], dtype=np.float32).reshape(-1)
            std = np.asarray(entry["std"], dtype=np.float32).reshape(-1)
            expected = mean.size if shapes is None else int(np.prod(shapes[key], dtype=np.int64))
            if mean.size != expected or std.size != expected:
                raise ValueError(
                    f"Normalizer.from_stats: stats for {key!r} have {mean.size} means and "
                    f"{std.size} stds; expected {expected} each"
                )
            means.append(mean)
            stds.append(std)
        mean_all = np.concatenate(means) if means else np.zeros(0, np.float32)
        std_all = np.concatenate(stds) if stds else np.zeros(0, np.float32)
        return cls(mean_all, std_all, std_floor=std_floor, clip=clip)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalizes ``obs`` of shape ``(..., obs_dim)``."""
        return torch.clamp((obs - self.mean) / self.std, -self.clip, self.clip)

    def unnormalize(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """Maps normalized values back to observation units (clipping is not undone)."""
        return obs_norm * self.std + self.mean

    def extra_repr(self) -> str:
        return f"dim={self.dim}, std_floor={self.std_floor}, clip={float(self.clip)}"


def normalizer_for(owner: str, obs_dim: int, normalizer: Normalizer | None) -> Normalizer:
    """``normalizer`` (identity when None), checked to have ``obs_dim`` dims; ``owner``
    names the caller in the error."""
    normalizer = normalizer if normalizer is not None else Normalizer.identity(obs_dim)
    if normalizer.dim != obs_dim:
        raise ValueError(f"{owner}: normalizer has {normalizer.dim} dims; obs_dim is {obs_dim}")
    return normalizer
