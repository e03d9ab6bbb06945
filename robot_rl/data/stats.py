"""Per-dimension running moments that merge exactly across episodes and chunks.

The episode store keeps one row of moments per episode (count, mean, sum of squared
deviations, min, max), so the statistics of any set of committed episodes are a merge
of rows, with no pass over the data. Merging uses the pairwise update of Chan, Golub and
LeVeque (1979), which stays accurate where a naive sum of squares would cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Moments:
    """Moments of a set of rows, per dimension (arrays have the per-step shape).

    Attributes:
        count: number of rows.
        mean: per-dimension mean, float64.
        m2: per-dimension sum of squared deviations from the mean, float64.
        min: per-dimension minimum, float64.
        max: per-dimension maximum, float64.
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> Moments:
        """Moments of ``rows`` (shape ``(N, *per_step_shape)``, N >= 1)."""
        x = np.asarray(rows, dtype=np.float64)
        if x.shape[0] == 0:
            raise ValueError("Moments.from_rows needs at least one row")
        mean = x.mean(axis=0)
        return cls(
            count=int(x.shape[0]),
            mean=mean,
            m2=((x - mean) ** 2).sum(axis=0),
            min=x.min(axis=0),
            max=x.max(axis=0),
        )

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of the two row sets."""
        n = self.count + other.count
        delta = other.mean - self.mean
        return Moments(
            count=n,
            mean=self.mean + delta * (other.count / n),
            m2=self.m2 + other.m2 + delta**2 * (self.count * other.count / n),
            min=np.minimum(self.min, other.min),
            max=np.maximum(self.max, other.max),
        )

    @classmethod
    def merge_rows(
        cls,
        counts: np.ndarray,
        means: np.ndarray,
        m2s: np.ndarray,
        mins: np.ndarray,
        maxs: np.ndarray,
    ) -> Moments:
        """Merge per-group moments stacked along axis 0 (one row per group, e.g. episode).

        Vectorized form of repeated :meth:`merge`: the grand mean first, then each
        group's m2 plus its squared offset from the grand mean, weighted by its count.
        """
        counts = np.asarray(counts, dtype=np.float64)
        if counts.size == 0 or counts.sum() == 0:
            raise ValueError("Moments.merge_rows needs at least one non-empty group")
        w = counts.reshape((-1,) + (1,) * (np.ndim(means) - 1))
        n = counts.sum()
        mean = (w * means).sum(axis=0) / n
        m2 = m2s.sum(axis=0) + (w * (means - mean) ** 2).sum(axis=0)
        return cls(
            count=int(n),
            mean=mean,
            m2=m2,
            min=np.min(mins, axis=0),
            max=np.max(maxs, axis=0),
        )

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ddof=0, as ``np.std``)."""
        return np.sqrt(np.maximum(self.m2 / self.count, 0.0))
