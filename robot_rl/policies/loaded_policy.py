"""A policy loaded from its artifact, ready to act: :class:`LoadedPolicy` flattens
observations in the manifest's order, runs the actor, and maps its [-1, 1] output onto the
manifest's action bounds. :func:`~robot_rl.policies.artifact.load_policy` builds it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from robot_rl.policies.manifest import PolicyManifest


class LoadedPolicy:
    """A policy loaded from an artifact; implements the ``Policy`` protocol.

    Attributes:
        manifest: The artifact's manifest.
        actor: The actor module, in eval mode, on ``device``.
        device: Where inference runs.
    """

    def __init__(self, manifest: PolicyManifest, actor: nn.Module, device: torch.device) -> None:
        self.manifest = manifest
        self.actor = actor.eval()
        self.device = device
        self.obs_keys: tuple[str, ...] = tuple(manifest.obs_keys)
        self._shapes = {k: tuple(manifest.obs_shapes[k]) for k in self.obs_keys}
        self.obs_dim = manifest.obs_dim
        self.action_dim = manifest.action_dim
        low = torch.tensor(manifest.action_low, dtype=torch.float32, device=device)
        high = torch.tensor(manifest.action_high, dtype=torch.float32, device=device)
        # [-1, 1] -> [low, high]; None where the bounds are [-1, 1] already.
        self._action_affine: tuple[torch.Tensor, torch.Tensor] | None = (
            None
            if bool(torch.all(low == -1.0) and torch.all(high == 1.0))
            else ((high + low) / 2.0, (high - low) / 2.0)
        )

    @property
    def policy_id(self) -> str:
        """The artifact's ``policy_id``."""
        return self.manifest.policy_id

    def reset(self) -> None:
        """No per-episode state: the actor is a plain function of the observation."""

    def flatten_obs(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenates ``obs`` in manifest order into a float32 vector.

        Each of the manifest's keys must have its manifest shape, or that shape with one
        leading batch dim (the same for all keys), giving ``(obs_dim,)`` or
        ``(B, obs_dim)``. Keys the policy does not use (an env gives every sensor; a
        policy may see a few) are ignored.

        Raises:
            ValueError: A missing key, or a key with the wrong shape.
        """
        missing = [k for k in self.obs_keys if k not in obs]
        if missing:
            raise ValueError(
                f"observation keys do not match policy {self.policy_id!r}: missing {missing} "
                f"(given {sorted(obs)}); the policy expects {list(self.obs_keys)}"
            )
        arrays = []
        batch: int | None = None
        for i, key in enumerate(self.obs_keys):
            arr = np.asarray(obs[key], dtype=np.float32)
            shape = self._shapes[key]
            if arr.shape == shape:
                lead = None
            elif arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
                lead = arr.shape[0]
            else:
                raise ValueError(
                    f"observation key {key!r} has shape {arr.shape}; policy "
                    f"{self.policy_id!r} expects {shape} (or (B, *{shape}) for a batch)"
                )
            if i == 0:
                batch = lead
            elif lead != batch:
                raise ValueError(
                    f"observation key {key!r} has batch dim {lead} but "
                    f"{self.obs_keys[0]!r} has {batch}; all keys must agree"
                )
            arrays.append(arr.reshape(-1) if lead is None else arr.reshape(lead, -1))
        return np.concatenate(arrays, axis=-1)

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Returns a float32 action ``(action_dim,)`` (or ``(B, action_dim)``) in the
        manifest's ``[action_low, action_high]`` (``[-1, 1]`` for robot_rl's envs).

        Raises:
            ValueError: ``obs`` keys or shapes do not match the manifest.
        """
        return self.act_batch(self.flatten_obs(obs))

    def act_batch(self, obs_flat: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Actions for flat observations ``(obs_dim,)`` or ``(B, obs_dim)``.

        Returns a float32 numpy array for numpy input, and a tensor on ``device`` for
        tensor input (no host round trip for GPU-batched simulation).

        Raises:
            ValueError: The last dim is not ``obs_dim``.
        """
        as_numpy = not isinstance(obs_flat, torch.Tensor)
        x = torch.as_tensor(np.asarray(obs_flat, np.float32) if as_numpy else obs_flat)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(
                f"flat observation has shape {tuple(x.shape)}; policy {self.policy_id!r} "
                f"expects ({self.obs_dim},) or (B, {self.obs_dim})"
            )
        with torch.inference_mode():
            action = self.actor(x.to(self.device, torch.float32))
            if self._action_affine is not None:
                mid, half = self._action_affine
                action = torch.addcmul(mid, half, action)
        if as_numpy:
            return action.cpu().numpy().astype(np.float32, copy=False)
        return action
