"""Target policies as OPE sees them: deterministic actions for every row of a store, plus
optional Gaussian action noise.

A target policy gives its deterministic (mean) action for all rows at once, episode by
episode, so a policy with an internal phase (the scripted experts) can be replayed along
each logged episode: it is reset at every episode start and sees the logged observations
in order, which is the phase it would be in after that observation history. A policy
with noise ``noise_std = σ`` acts ``clip(mean + σ ε, -1, 1)``, ``ε ~ N(0, I)``, in the
normalized action space, exactly as the dataset recipes perturb the expert
(:class:`robot_rl.teleop.make_dataset.PerturbedPolicy`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from robot_rl.policies.loaded_policy import LoadedPolicy

#: Rows per forward pass when running a network policy over a store.
_CHUNK_ROWS = 65_536


@runtime_checkable
class TargetPolicy(Protocol):
    """A policy to evaluate.

    Attributes:
        noise_std: σ of the Gaussian noise on its normalized actions (0 = deterministic).
    """

    noise_std: float

    def check_store(
        self, obs_shapes: Mapping[str, Sequence[int]], action_dim: int, where: str
    ) -> None:
        """Raises ``ValueError`` (naming both sides) if the policy cannot act on the store."""
        ...

    def mean_actions(self, obs: Mapping[str, np.ndarray], episode_starts: np.ndarray) -> np.ndarray:
        """Deterministic actions ``(N, action_dim)`` in env units (what the policy sends the
        env; [-1, 1] for robot_rl's tasks) for rows ``obs`` (per-key arrays
        ``(N, *shape)``, episodes starting at rows ``episode_starts``). OPE maps them to
        the store's normalized actions (:meth:`~robot_rl.algos.ope.data.OPEData.to_unit`)."""
        ...


class ArtifactTarget:
    """A saved policy (:func:`robot_rl.policies.artifact.load_policy`), optionally noisy.

    It reads its manifest's ``obs_keys`` from the store, flattened in the manifest's order.
    """

    def __init__(self, policy: LoadedPolicy, noise_std: float = 0.0) -> None:
        _check_noise(noise_std)
        self.policy = policy
        self.noise_std = float(noise_std)

    def check_store(
        self, obs_shapes: Mapping[str, Sequence[int]], action_dim: int, where: str
    ) -> None:
        manifest = self.policy.manifest
        missing = [k for k in manifest.obs_keys if k not in obs_shapes]
        wrong = [
            f"{k}: policy {list(manifest.obs_shapes[k])}, store {list(obs_shapes[k])}"
            for k in manifest.obs_keys
            if k in obs_shapes and tuple(manifest.obs_shapes[k]) != tuple(obs_shapes[k])
        ]
        if missing or wrong:
            raise ValueError(
                f"observation keys of policy {self.policy.policy_id!r} do not match store "
                f"{where}: policy obs_keys {list(manifest.obs_keys)}, store obs_keys "
                f"{list(obs_shapes)}; missing in the store {missing}, wrong shapes {wrong}"
            )
        if manifest.action_dim != action_dim:
            raise ValueError(
                f"policy {self.policy.policy_id!r} outputs {manifest.action_dim} action dims; "
                f"store {where} has {action_dim}"
            )

    def mean_actions(self, obs: Mapping[str, np.ndarray], episode_starts: np.ndarray) -> np.ndarray:
        flat = np.concatenate(
            [obs[k].reshape(len(obs[k]), -1) for k in self.policy.obs_keys], axis=1
        ).astype(np.float32, copy=False)
        out = [
            np.asarray(self.policy.act_batch(flat[i : i + _CHUNK_ROWS]), np.float32)
            for i in range(0, len(flat), _CHUNK_ROWS)
        ]
        return np.concatenate(out, axis=0)


class ExpertTarget:
    """A task's scripted expert (:mod:`robot_rl.sim.experts`) with action noise σ.

    The expert keeps a phase; it is replayed along each logged episode (see the module
    docstring). Its actions are clipped to [-1, 1].

    Args:
        task: ``reach``, ``push`` or ``lift``.
        noise_std: σ of the Gaussian action noise.
        max_ee_step_m: The env's ``task.max_ee_step_m`` (the expert scales by it).
    """

    def __init__(self, task: str, noise_std: float = 0.0, max_ee_step_m: float = 0.02) -> None:
        from robot_rl.sim.experts import make_expert

        _check_noise(noise_std)
        self.task = task
        self.expert = make_expert(task, max_ee_step_m)
        self.noise_std = float(noise_std)

    def check_store(
        self, obs_shapes: Mapping[str, Sequence[int]], action_dim: int, where: str
    ) -> None:
        from robot_rl.sim.env import OBS_SPEC

        missing = [k for k in ("ee_pos", "object_pos", "goal") if k not in obs_shapes]
        if missing:
            raise ValueError(
                f"the scripted {self.task} expert reads obs keys {sorted(OBS_SPEC)}; store "
                f"{where} has {list(obs_shapes)} (missing {missing})"
            )
        if action_dim != 4:
            raise ValueError(
                f"the scripted expert acts in ee_delta mode (4 action dims); store {where} "
                f"has {action_dim}"
            )

    def mean_actions(self, obs: Mapping[str, np.ndarray], episode_starts: np.ndarray) -> np.ndarray:
        n = len(next(iter(obs.values())))
        out = np.empty((n, 4), np.float32)
        is_start = np.zeros(n, bool)
        is_start[episode_starts] = True
        for row in range(n):
            if is_start[row]:
                self.expert.reset()
            out[row] = self.expert.act({k: v[row] for k, v in obs.items()})
        return np.clip(out, -1.0, 1.0)


class FunctionTarget:
    """A plain function of flat observations (the store's keys in order) -> actions, in
    the units of the store's actions (OPE maps them to [-1, 1] as the logged ones)."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        obs_keys: Sequence[str],
        noise_std: float = 0.0,
    ) -> None:
        _check_noise(noise_std)
        self.fn = fn
        self.obs_keys = list(obs_keys)
        self.noise_std = float(noise_std)

    def check_store(
        self, obs_shapes: Mapping[str, Sequence[int]], action_dim: int, where: str
    ) -> None:
        missing = [k for k in self.obs_keys if k not in obs_shapes]
        if missing:
            raise ValueError(
                f"policy obs_keys {self.obs_keys} do not match store {where} obs_keys "
                f"{list(obs_shapes)} (missing {missing})"
            )

    def mean_actions(self, obs: Mapping[str, np.ndarray], episode_starts: np.ndarray) -> np.ndarray:
        flat = np.concatenate([obs[k].reshape(len(obs[k]), -1) for k in self.obs_keys], axis=1)
        return np.asarray(self.fn(flat), np.float32)  # env units; OPE maps and clips them


def as_target(policy: Any) -> TargetPolicy:
    """A ``LoadedPolicy`` becomes a deterministic :class:`ArtifactTarget`; a
    ``TargetPolicy`` passes through."""
    if isinstance(policy, LoadedPolicy):
        return ArtifactTarget(policy)
    if isinstance(policy, TargetPolicy):
        return policy
    raise TypeError(
        f"cannot evaluate a {type(policy).__name__}: expected a LoadedPolicy or a "
        "TargetPolicy (ArtifactTarget, ExpertTarget, FunctionTarget)"
    )


def _check_noise(noise_std: float) -> None:
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
