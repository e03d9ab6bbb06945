"""Devices without an operator: any policy (the scripted experts, a learned policy) and
the replay of a stored episode's actions."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from robot_rl.policies.base import Policy
from robot_rl.teleop.devices.base import Device
from robot_rl.teleop.events import Control


class PolicyDevice(Device):
    """Drives the recording loop with a :class:`~robot_rl.policies.base.Policy`.

    Args:
        policy: the actor.
        source: provenance source: ``scripted`` for experts, ``policy`` for learned ones.
        policy_id: what acted, for provenance.
        action_noise_std: std of Gaussian noise added to the normalized actions, then
            clipped to [-1, 1]; the noisy action is what is recorded (dataset recipes).
        rng: noise generator (required when ``action_noise_std > 0``).
    """

    operator_driven = False

    def __init__(
        self,
        policy: Policy,
        *,
        source: str = "scripted",
        policy_id: str = "",
        action_noise_std: float = 0.0,
        rng: np.random.Generator | None = None,
    ):
        if action_noise_std < 0:
            raise ValueError(f"action_noise_std: expected >= 0, got {action_noise_std}")
        if action_noise_std > 0 and rng is None:
            raise ValueError("PolicyDevice: action_noise_std > 0 needs an rng")
        self.policy = policy
        self.source = source
        self.policy_id = policy_id
        self.action_noise_std = float(action_noise_std)
        self.rng = rng

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        action = np.asarray(self.policy.act(dict(obs)), dtype=np.float32)
        if self.action_noise_std > 0:
            action = action + self.action_noise_std * self.rng.standard_normal(action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def scripted_device(
    task: str,
    max_ee_step_m: float = 0.02,
    *,
    action_noise_std: float = 0.0,
    seed: int | None = None,
) -> PolicyDevice:
    """The task's scripted expert (:mod:`robot_rl.sim.experts`) as a device."""
    from robot_rl.sim.experts import make_expert

    return PolicyDevice(
        make_expert(task, max_ee_step_m),
        source="scripted",
        policy_id=f"scripted-expert:{task}",
        action_noise_std=action_noise_std,
        rng=np.random.default_rng(seed),
    )


class ReplayDevice(Device):
    """Plays back the actions of one stored episode, then stops the episode.

    Reset the env with the seed the episode was recorded with (:attr:`reset_seed`, from
    its provenance) to reproduce it; the recorded actions are replayed either way. The
    new episode keeps the original's provenance source (``policy`` for an imported one:
    the actions are played back, not imported) and names the original in ``policy_id``
    (``replay:<episode_id>``).

    Args:
        store_path: the episode store to read.
        episode: index of the episode (negative counts from the end).
    """

    operator_driven = False

    def __init__(self, store_path: str | os.PathLike[str], episode: int = 0):
        from robot_rl.data.episode_store import EpisodeStore

        with EpisodeStore.open(store_path, mode="r") as store:
            if not -store.n_episodes <= episode < store.n_episodes:
                raise ValueError(
                    f"replay: episode {episode} out of range: {store_path} has "
                    f"{store.n_episodes} committed episode(s) (teleop.episode)"
                )
            start, end = store.episode_bounds(episode)
            self.actions = np.asarray(store.zarr_array("action")[start:end], dtype=np.float32)
            prov = store.provenance(episode)
        self.source = prov.source if prov.source != "import" else "policy"
        self.policy_id = f"replay:{prov.episode_id}"
        #: The env reset seed the episode was recorded from (None: not stored).
        self.reset_seed: int | None = prov.reset_seed
        self._t = 0
        self._stopped = False

    def reset(self) -> None:
        self._t = 0
        self._stopped = False

    def act(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self._t >= len(self.actions):
            raise RuntimeError(
                f"replay: all {len(self.actions)} recorded actions played; the episode "
                "should have stopped"
            )
        action = self.actions[self._t]
        self._t += 1
        return action.copy()

    def poll_events(self) -> list[Control]:
        if self._t >= len(self.actions) and not self._stopped:
            self._stopped = True
            return [Control.STOP]
        return []
