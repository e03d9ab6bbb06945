"""Domain randomization of the tabletop cell: sampling, applying to a model, and the
per-step parts (action latency, observation noise, control-period jitter).

One definition serves the single env and the batched sim: :class:`RobotEnv` samples and
applies at every reset, and :class:`~robot_rl.sim.batched.BatchedSim` resets each world
through its template env and copies the sample onto that world's own ``MjModel``.

Reproducibility: everything an episode draws comes from ``episode_rng(seed)``, a generator
seeded from the episode's reset seed alone (and independent of the task's own stream, so
the cube and goal are where they would be without randomization). Parameters are drawn
first, at reset; then, per control step, the physics-step scale (jitter) before the
physics and the observation noise after it.

Where each parameter goes:

- masses: ``body_mass`` and ``body_inertia`` of every robot link (one scale per link) and
  of the cube; the cube's inertia also follows its size, as a uniform solid cube.
- object size: the cube geom's ``size`` (with ``geom_rbound`` and ``geom_aabb``, which the
  broad phase uses); the task's start pose is lifted so the cube rests on the table.
- friction: sliding friction (``geom_friction[:, 0]``) of every geom, one scale per world.
- joint damping and armature: ``dof_damping`` / ``dof_armature`` of each arm joint.
- actuator kp: ``gainprm[0]`` and ``-biasprm[1]`` of each arm position servo (kv kept).
- joint offset (calibration error): the robot's encoders read ``q_true + offset``. The
  policy sees offset joint positions (and the end-effector pose computed from them), its
  joint targets are in that same frame, and the servos receive ``target - offset``; the
  task scores the true state.
- object pose: an extra xy displacement and yaw added to the task's start pose.
- action latency: the action applied at a control step is the one the policy gave
  ``k`` steps earlier (``k`` per episode); before that, a hold action (no motion,
  gripper open as at reset).
- observation noise: Gaussian, per entry, per control step, added to what the policy sees.
- control-period jitter: the physics step length ``dt`` is scaled per control step by
  ``1 + eps``, ``eps ~ N(0, std)`` truncated at 3 std, with the number of substeps fixed.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from robot_rl.arrays import array_namespace, device_of, is_numpy_array
from robot_rl.config.randomization import ParamRange, RandomizationConfig
from robot_rl.config.validation import ConfigError
from robot_rl.sim.scene import TabletopScene

#: Mixed into every episode seed, so the randomization stream never coincides with the
#: task's (which is seeded from the bare episode seed).
_STREAM = 0x5EED_D0A1


def episode_rng(seed: int) -> np.random.Generator:
    """The randomization stream of the episode reset with ``seed``."""
    return np.random.default_rng([int(seed) & 0xFFFF_FFFF_FFFF_FFFF, _STREAM])


def draw(r: ParamRange, rng: np.random.Generator, size: int, neutral: float) -> np.ndarray:
    """``size`` values from ``r`` (``neutral`` everywhere when it is disabled)."""
    if not r.enabled:
        return np.full(size, neutral)
    if r.dist == "loguniform":
        return np.exp(rng.uniform(np.log(r.low), np.log(r.high), size))
    return rng.uniform(r.low, r.high, size)


class DomainRandomizer:
    """Samples one episode's parameters and writes them into a model of the scene.

    Args:
        cfg: what to randomize and how (validated).
        scene: the scene whose model holds the nominal values (read once, here).
        obs_spec: observation key -> shape, in the order observations are built.

    Raises:
        ConfigError: ``obs_noise_std_by_key`` names a key the env does not observe.
    """

    def __init__(
        self,
        cfg: RandomizationConfig,
        scene: TabletopScene,
        obs_spec: dict[str, tuple[int, ...]],
    ) -> None:
        unknown = sorted(set(cfg.obs_noise_std_by_key) - set(obs_spec))
        if unknown:
            raise ConfigError(
                f"invalid config key randomization.obs_noise_std_by_key.{unknown[0]}: "
                f"expected one of {list(obs_spec)}"
            )
        self.cfg = cfg
        self.scene = scene
        m = scene.model
        root = m.body_rootid[m.jnt_bodyid[m.dof_jntid[scene.arm_dof_adr[0]]]]
        self.link_bodies = np.array(
            [b for b in range(1, m.nbody) if m.body_rootid[b] == root and b != root]
        )
        self.nominal = {
            "body_mass": m.body_mass.copy(),
            "body_inertia": m.body_inertia.copy(),
            "geom_friction": m.geom_friction.copy(),
            "geom_size": m.geom_size.copy(),
            "geom_rbound": m.geom_rbound.copy(),
            "geom_aabb": m.geom_aabb.copy(),
            "dof_damping": m.dof_damping.copy(),
            "dof_armature": m.dof_armature.copy(),
            "actuator_gainprm": m.actuator_gainprm.copy(),
            "actuator_biasprm": m.actuator_biasprm.copy(),
            "timestep": float(m.opt.timestep),
        }
        std = [
            np.full(int(np.prod(shape)), cfg.obs_noise_std_by_key.get(k, cfg.obs_noise_std))
            for k, shape in obs_spec.items()
        ]
        self.obs_noise_std = np.concatenate(std)
        self.obs_slices: dict[str, slice] = {}
        at = 0
        for k, shape in obs_spec.items():
            n = int(np.prod(shape))
            self.obs_slices[k] = slice(at, at + n)
            at += n
        self.has_obs_noise = bool(np.any(self.obs_noise_std > 0))
        self.has_jitter = cfg.control_period_jitter_std > 0
        self.max_latency_steps = cfg.action_latency_max_steps
        self.has_joint_offset = cfg.joint_offset_rad.enabled

    # --- per episode ---------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One episode's parameters (every key always present; neutral when disabled)."""
        c = self.cfg
        n_links, n_arm = len(self.link_bodies), len(self.scene.arm_dof_adr)
        return {
            "link_mass_scale": draw(c.link_mass_scale, rng, n_links, 1.0),
            "object_mass_scale": draw(c.object_mass_scale, rng, 1, 1.0),
            "object_size_scale": draw(c.object_size_scale, rng, 1, 1.0),
            "friction_scale": draw(c.friction_scale, rng, 1, 1.0),
            "joint_damping_scale": draw(c.joint_damping_scale, rng, n_arm, 1.0),
            "joint_armature_scale": draw(c.joint_armature_scale, rng, n_arm, 1.0),
            "actuator_kp_scale": draw(c.actuator_kp_scale, rng, n_arm, 1.0),
            "joint_offset_rad": draw(c.joint_offset_rad, rng, n_arm, 0.0),
            "object_xy_offset_m": draw(c.object_xy_offset_m, rng, 2, 0.0),
            "object_yaw_offset_rad": draw(c.object_yaw_offset_rad, rng, 1, 0.0),
            "action_latency_steps": np.array(
                [rng.integers(c.action_latency_min_steps, c.action_latency_max_steps + 1)]
            ),
        }

    def apply(self, model: mujoco.MjModel, p: dict[str, np.ndarray]) -> None:
        """Writes a sample into ``model`` (a copy of the scene's), from the nominal values."""
        nom, s = self.nominal, self.scene
        mass, inertia = nom["body_mass"].copy(), nom["body_inertia"].copy()
        links = self.link_bodies
        mass[links] *= p["link_mass_scale"]
        inertia[links] *= p["link_mass_scale"][:, None]
        size = float(p["object_size_scale"][0])
        mass[s.cube_body] *= p["object_mass_scale"][0]
        # A uniform solid cube: inertia ~ mass x edge^2.
        inertia[s.cube_body] *= p["object_mass_scale"][0] * size**2
        model.body_mass[:] = mass
        model.body_inertia[:] = inertia
        g = s.cube_geom
        model.geom_size[g] = nom["geom_size"][g] * size
        model.geom_rbound[g] = nom["geom_rbound"][g] * size
        model.geom_aabb[g] = nom["geom_aabb"][g] * size
        model.geom_friction[:, 0] = nom["geom_friction"][:, 0] * p["friction_scale"][0]
        dof = s.arm_dof_adr
        model.dof_damping[dof] = nom["dof_damping"][dof] * p["joint_damping_scale"]
        model.dof_armature[dof] = nom["dof_armature"][dof] * p["joint_armature_scale"]
        act = s.arm_actuators
        model.actuator_gainprm[act, 0] = nom["actuator_gainprm"][act, 0] * p["actuator_kp_scale"]
        model.actuator_biasprm[act, 1] = nom["actuator_biasprm"][act, 1] * p["actuator_kp_scale"]
        model.opt.timestep = nom["timestep"]
        # Constants derived from masses and armature at compile time (inverse weights that
        # scale contact softness, actuator_acc0, subtree masses) follow the new values.
        mujoco.mj_setConst(model, mujoco.MjData(model))

    def place_object(self, data: mujoco.MjData, p: dict[str, np.ndarray]) -> None:
        """Moves the cube from the task's start pose by the sampled offsets, resting on the
        table at its sampled size."""
        s = self.scene
        pos, quat = s.cube_pose(data)
        yaw = 2.0 * np.arctan2(quat[3], quat[0]) + p["object_yaw_offset_rad"][0]
        pos[:2] += p["object_xy_offset_m"]
        pos[2] *= p["object_size_scale"][0]
        s.set_cube_pose(data, pos, float(yaw))

    # --- per control step ----------------------------------------------------------------
    def timestep_scale(self, rng: np.random.Generator) -> float:
        """This control step's factor on the physics step (1.0 without jitter)."""
        std = self.cfg.control_period_jitter_std
        return 1.0 + std * float(np.clip(rng.standard_normal(), -3.0, 3.0))

    def obs_noise(self, rng: np.random.Generator) -> np.ndarray:
        """Noise for one observation, flattened in ``obs_spec`` order."""
        return self.obs_noise_std * rng.standard_normal(self.obs_noise_std.shape)

    def add_obs_noise(self, obs: dict[str, np.ndarray], noise: np.ndarray) -> None:
        """Adds flattened noise (``(..., D)``) to float64 observations, in place."""
        for k, sl in self.obs_slices.items():
            obs[k] = obs[k] + noise[..., sl].reshape(obs[k].shape)


class ActionDelay:
    """Per-world FIFO of actions: ``push`` returns, for each world, the action given
    ``latency[w]`` control steps ago. numpy by default; with ``like`` (a torch tensor) the
    buffer lives in its dtype on its device."""

    def __init__(
        self, n_worlds: int, max_latency_steps: int, hold: np.ndarray, like: Any = None
    ) -> None:
        hold = np.asarray(hold, dtype=np.float64)
        buf = np.tile(hold, (n_worlds, max_latency_steps + 1, 1))
        rows, latency = np.arange(n_worlds), np.zeros(n_worlds, dtype=np.int64)
        if like is not None and not is_numpy_array(like):
            xp, dev = array_namespace(like), device_of(like)
            hold, buf = (xp.asarray(x, dtype=like.dtype, device=dev) for x in (hold, buf))
            rows, latency = (xp.asarray(x, device=dev) for x in (rows, latency))
        self.hold, self.buf, self._rows, self.latency = hold, buf, rows, latency

    def reset_world(self, w: int, latency_steps: int) -> None:
        self.buf[w] = self.hold
        self.latency[w] = latency_steps

    def push(self, a: Any) -> Any:
        xp = array_namespace(a)
        self.buf = xp.concat([a[:, None], self.buf[:, :-1]], axis=1)
        return self.buf[self._rows, self.latency]


def stack_samples(samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-world samples -> one dict of arrays with a leading world axis."""
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
