"""The batched simulator behind the two vector-env APIs users already have code for.

:class:`SB3VecEnv` is a Stable-Baselines3 ``VecEnv`` and :class:`GymVectorEnv` a
Gymnasium 1.x ``VectorEnv``; both wrap one :class:`~robot_rl.sim.batched.BatchedSim`
and turn its torch tensors into numpy arrays, nothing more: observations, rewards and
episode ends are the simulator's own.

Auto-reset: :class:`BatchedSim` resets an ended world inside the same ``step``, so the
observation returned for it is the first of its next episode and the one the episode
ended on travels in the info: SB3's ``infos[i]["terminal_observation"]`` (with
``"TimeLimit.truncated"`` for episodes cut by the horizon), Gymnasium's
``info["final_obs"]`` with its ``"_final_obs"`` mask (``AutoresetMode.SAME_STEP``).

Seeding follows the simulator's rule (:meth:`BatchedSim.episode_seed`: world ``w`` of a
batch seeded ``s`` plays its ``k``-th episode from a seed derived from ``(s, w, k)``):
SB3's ``seed(s)`` and Gymnasium's ``reset(seed=s)`` set the batch seed ``s`` and start
every world at its episode 0; an unseeded reset moves every world on to its next episode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from robot_rl.sim.batched import BatchedSim


def _numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in obs.items()}


def _world(obs: dict[str, np.ndarray], w: int) -> dict[str, np.ndarray]:
    return {k: v[w].copy() for k, v in obs.items()}


def _actions(actions: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(actions, torch.Tensor):
        return actions.detach().cpu().numpy()
    return np.asarray(actions)


class SB3VecEnv(VecEnv):
    """A Stable-Baselines3 ``VecEnv`` over the worlds of a :class:`BatchedSim`.

    ``dones`` are ``terminated | truncated``; for each ended world, ``infos[w]`` holds
    ``terminal_observation`` and ``TimeLimit.truncated`` (truncated and not terminated), as
    SB3's replay buffers expect. Every ``infos[w]`` holds ``is_success`` and
    ``episode_seed`` (the seed of the episode the world is now in).

    The worlds share one task, so ``get_attr`` and ``env_method`` answer from the
    simulator (or, failing that, its template single env) once per requested index;
    ``set_attr`` sets an attribute of the simulator, which applies to every world.

    Args:
        sim: the simulator; the adapter owns it from now on and closes it in ``close``.
    """

    def __init__(self, sim: BatchedSim) -> None:
        self.sim = sim
        super().__init__(sim.n_worlds, sim.observation_space, sim.action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> dict[str, np.ndarray]:
        seed = self._seeds[0]
        obs = _numpy(self.sim.reset(seed=None if seed is None else int(seed)))
        seeds = self.sim.current_episode_seeds()
        self.reset_infos = [{"is_success": False, "episode_seed": s} for s in seeds]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = _actions(actions)

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict]]:
        if self._actions is None:
            raise RuntimeError("step_wait() called without a pending step_async(actions)")
        obs, reward, terminated, truncated, info = self.sim.step(self._actions)
        self._actions = None
        terminated = terminated.cpu().numpy()
        truncated = truncated.cpu().numpy()
        dones = terminated | truncated
        success = info["is_success"].cpu().numpy()
        seeds = info["episode_seed"].cpu().numpy()
        infos: list[dict[str, Any]] = [
            {"is_success": bool(success[w]), "episode_seed": int(seeds[w])}
            for w in range(self.num_envs)
        ]
        ended = np.flatnonzero(dones)
        if ended.size:
            final = _numpy(info["final_obs"])
            for w in ended:
                infos[w]["terminal_observation"] = _world(final, w)
                infos[w]["TimeLimit.truncated"] = bool(truncated[w] and not terminated[w])
        return _numpy(obs), reward.cpu().numpy(), dones, infos

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Sets the batch seed used at the next ``reset``."""
        return super().seed(seed)

    def close(self) -> None:
        self.sim.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self._owner(attr_name), attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        worlds = list(self._get_indices(indices))
        if sorted(worlds) != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}) for worlds {worlds}: the worlds share one simulator, "
                "so attributes can only be set for all of them (indices=None)"
            )
        setattr(self.sim, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self._owner(method_name), method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None):
        return [False for _ in self._get_indices(indices)]

    def _owner(self, name: str) -> Any:
        if hasattr(self.sim, name):
            return self.sim
        if hasattr(self.sim.proto, name):
            return self.sim.proto
        raise AttributeError(f"neither BatchedSim nor its template env has attribute {name!r}")


class GymVectorEnv(VectorEnv):
    """A Gymnasium ``VectorEnv`` over the worlds of a :class:`BatchedSim`.

    Autoreset mode ``SAME_STEP``, with the info layout of Gymnasium's own
    ``SyncVectorEnv`` over the single env: ``info["is_success"]`` is what each world's
    latest ``step`` or ``reset`` reported (``False`` for a world that was just reset),
    and for ended worlds ``info["final_obs"]`` (an object array holding each ended
    world's last observation, ``None`` elsewhere) and ``info["final_info"]`` (their
    ``is_success``), each with its ``_``-prefixed mask. ``info["episode_seed"]`` is
    the seed of the episode each world is now in.

    Args:
        sim: the simulator; the adapter owns it from now on and closes it in ``close``.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_modes": [],
    }

    def __init__(self, sim: BatchedSim) -> None:
        self.sim = sim
        self.num_envs = sim.n_worlds
        self.single_observation_space = sim.observation_space
        self.single_action_space = sim.action_space
        self.observation_space = batch_space(sim.observation_space, sim.n_worlds)
        self.action_space = batch_space(sim.action_space, sim.n_worlds)
        self.render_mode = None
        self.spec = None

    def reset(
        self,
        *,
        seed: int | Iterable[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Resets every world; ``seed`` is the batch seed (one int: the worlds' seeds are
        derived from it, see :meth:`BatchedSim.episode_seed`)."""
        if seed is not None and not isinstance(seed, int | np.integer):
            raise ValueError(
                f"reset(seed={seed!r}): the worlds' seeds are derived from one batch seed; "
                "pass an int"
            )
        super().reset(seed=None if seed is None else int(seed))
        obs = _numpy(self.sim.reset(seed=None if seed is None else int(seed)))
        all_worlds = np.ones(self.num_envs, dtype=bool)
        info = {
            "is_success": np.zeros(self.num_envs, dtype=bool),
            "_is_success": all_worlds,
            "episode_seed": np.array(self.sim.current_episode_seeds()),
            "_episode_seed": all_worlds.copy(),
        }
        return obs, info

    def step(
        self, actions: np.ndarray | torch.Tensor
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, sim_info = self.sim.step(_actions(actions))
        terminated = terminated.cpu().numpy()
        truncated = truncated.cpu().numpy()
        success = sim_info["is_success"].cpu().numpy()
        ended = terminated | truncated
        all_worlds = np.ones(self.num_envs, dtype=bool)
        info: dict[str, Any] = {
            "is_success": success & ~ended,
            "_is_success": all_worlds,
            "episode_seed": sim_info["episode_seed"].cpu().numpy(),
            "_episode_seed": all_worlds.copy(),
        }
        if ended.any():
            final = _numpy(sim_info["final_obs"])
            final_obs = np.full(self.num_envs, None, dtype=object)
            for w in np.flatnonzero(ended):
                final_obs[w] = _world(final, w)
            info["final_obs"], info["_final_obs"] = final_obs, ended
            info["final_info"] = {"is_success": success & ended, "_is_success": ended.copy()}
            info["_final_info"] = ended.copy()
        return _numpy(obs), reward.cpu().numpy(), terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self.sim.close()
