"""Per-world model parameters on the MuJoCo Warp backend (Warp's CPU device, and CUDA
where a GPU is present).

A world given its own ``MjModel`` (as domain randomization leaves it) must step like
float64 MuJoCo on that model, while the other worlds keep the template's parameters.
MuJoCo Warp's kernels compile for the CPU device in ~20-60 s the first time (cached on
disk after), so one module-scoped backend serves the rollout test.
"""

import copy
import functools

import mujoco
import numpy as np
import pytest

wp = pytest.importorskip("warp", reason="the warp extra (warp-lang) is not installed")
pytest.importorskip("mujoco_warp", reason="the warp extra (mujoco-warp) is not installed")

from mujoco import rollout  # noqa: E402

from robot_rl.config.schema import ParamRange, RandomizationConfig  # noqa: E402
from robot_rl.sim.backends.warp import (  # noqa: E402
    WORLD_MODEL_FIELDS,
    WarpBackend,
    full_state_offsets,
)
from robot_rl.sim.env import RobotEnv  # noqa: E402

pytestmark = pytest.mark.slow

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
N_WORLDS = 5  # 0: template (written), 1: masses/damping/kp, 2: timestep, 3: DR, 4: unwritten
N_CONTROL_STEPS = 20


def _state(env: RobotEnv) -> np.ndarray:
    s = np.empty(mujoco.mj_stateSize(env.model, _FULL))
    mujoco.mj_getState(env.model, env.data, s, _FULL)
    return s


def _field(obj, name: str):
    """``obj.opt.timestep`` for ``"opt.timestep"``: the names of WORLD_MODEL_FIELDS."""
    return functools.reduce(getattr, name.split("."), obj)


def _cpu_step(models, states, control):
    """One control step of float64 MuJoCo, as BatchedSim's CPU path: final states."""
    n = len(states)
    with rollout.Rollout(nthread=1) as r:
        st, _ = r.rollout(
            models,
            [mujoco.MjData(models[0])],
            states,
            control,
            nstep=control.shape[1],
            initial_warmstart=np.zeros((n, models[0].nv)),
        )
    return st[:, -1]


def _heavier_arm(env: RobotEnv) -> mujoco.MjModel:
    """3x the mass of the arm links and the cube, 3x arm damping, 1.5x servo kp."""
    m = copy.copy(env.model)
    s = env.scene
    links = np.unique(m.dof_bodyid[np.asarray(s.arm_dof_adr)])
    for b in (*links, s.cube_body):
        m.body_mass[b] *= 3.0
        m.body_inertia[b] *= 3.0
    m.dof_damping[s.arm_dof_adr] = 3.0 * m.dof_damping[s.arm_dof_adr] + 1.0
    m.actuator_gainprm[s.arm_actuators, 0] *= 1.5
    m.actuator_biasprm[s.arm_actuators, 1] *= 1.5
    mujoco.mj_setConst(m, mujoco.MjData(m))
    return m


def _longer_timestep(env: RobotEnv) -> mujoco.MjModel:
    m = copy.copy(env.model)
    m.opt.timestep *= 1.25
    return m


def _randomized(seed: int) -> mujoco.MjModel:
    """A model as the domain randomizer leaves it at a reset (all model parameters on)."""
    r = RandomizationConfig(
        name="test",
        link_mass_scale=ParamRange("uniform", 0.5, 1.5),
        object_mass_scale=ParamRange("loguniform", 0.5, 2.0),
        object_size_scale=ParamRange("uniform", 0.9, 1.1),
        friction_scale=ParamRange("uniform", 0.5, 1.5),
        joint_damping_scale=ParamRange("loguniform", 0.3, 3.0),
        joint_armature_scale=ParamRange("uniform", 0.8, 1.2),
        actuator_kp_scale=ParamRange("loguniform", 0.75, 1.5),
    )
    env = RobotEnv("reach", randomization=r)
    env.reset(seed=seed)
    return env.model


@pytest.fixture(scope="module")
def reach(warp_device):
    env = RobotEnv("reach")
    env.reset(seed=0)
    return env, WarpBackend(env.model, N_WORLDS, device=warp_device)


def test_worlds_step_with_their_own_model_like_cpu_mujoco(reach):
    env, backend = reach
    template = env.model
    models = [template, _heavier_arm(env), _longer_timestep(env), _randomized(3), template]
    backend.set_world_model(np.arange(4), models[:4])
    # Written values, those mj_setConst derived included, land in their world's row.
    for w in range(4):
        for name in WORLD_MODEL_FIELDS:
            got = backend.model_values(name)[w]
            want = np.asarray(_field(models[w], name), np.float32).reshape(got.shape)
            np.testing.assert_array_equal(got, want, err_msg=f"{name} of world {w}")

    off = full_state_offsets(template)
    qpos = slice(off["mjSTATE_QPOS"][0], sum(off["mjSTATE_QPOS"]))
    arm_q = qpos.start + np.asarray(env.scene.arm_qpos_adr)
    x0 = np.array([_state(env)] * N_WORLDS)
    ctrl0 = env.data.ctrl.copy()
    arm = np.asarray(env.scene.arm_actuators)
    amp = np.random.default_rng(0).uniform(-0.3, 0.3, 7)
    s_sub = env.n_substeps
    backend.set_state(np.arange(N_WORLDS), x0)
    cpu, cpu_template = x0.copy(), x0.copy()
    err = np.zeros(N_WORLDS)  # max |dq| of the arm joints, Warp against CPU
    effect = np.zeros(N_WORLDS)  # ... and CPU per-world model against CPU template
    for k in range(N_CONTROL_STEPS):
        # Joint targets sweep by up to 0.3 rad, so the servos' gains and the links'
        # inertia and damping all shape the motion.
        ramp = (k + np.linspace(1 / s_sub, 1, s_sub)) / N_CONTROL_STEPS
        control = np.repeat(ctrl0[None, None], N_WORLDS, 0).repeat(s_sub, 1)
        control[:, :, arm] += amp * np.sin(2 * np.pi * ramp)[None, :, None]
        cpu = _cpu_step(models, cpu, control)
        cpu_template = _cpu_step([template] * N_WORLDS, cpu_template, control)
        warp, _ = backend.step(None, control)
        err = np.maximum(err, np.abs(warp[:, arm_q] - cpu[:, arm_q]).max(axis=1))
        effect = np.maximum(effect, np.abs(cpu[:, arm_q] - cpu_template[:, arm_q]).max(1))
    # float32 against float64 over 500 substeps without contact on the arm: measured
    # 5e-7 rad in every world, with its own parameters or the template's.
    assert err.max() < 1e-5, err
    # ... which would not hold had a world kept the template: its parameters move the arm
    # by far more than that tolerance (measured 1.5e-2 to 2.5e-2 rad).
    assert effect[[1, 3]].min() > 1e-3, effect
    assert effect[2] > 1e-3, effect
    # The world never written steps as the template world does: bit for bit on the CPU;
    # on CUDA within float32 rounding (measured: up to 8e-7 on an H200; MuJoCo Warp's
    # kernels sum with atomic adds, whose order CUDA does not fix).
    atol = 0.0 if backend.device.is_cpu else 1e-5
    np.testing.assert_allclose(warp[4], warp[0], rtol=0, atol=atol)
    # Time advances by each world's own timestep (accumulated in float32 on the device).
    np.testing.assert_allclose(warp[:, 0], cpu[:, 0], rtol=0, atol=1e-4)
    assert warp[2, 0] == pytest.approx(1.25 * warp[0, 0], rel=1e-4)


def test_unwritten_worlds_and_unchanged_fields_stay_shared(warp_device):
    env = RobotEnv("reach")
    backend = WarpBackend(env.model, 3, device=warp_device)
    # The template itself changes nothing: every field keeps one row for all worlds.
    backend.set_world_model([0, 1, 2], [env.model] * 3)
    assert all(len(_field(backend.m, f)) == 1 for f in WORLD_MODEL_FIELDS)
    heavy = _heavier_arm(env)
    backend.set_world_model(np.array([1]), [heavy])
    mass = backend.model_values("body_mass")
    np.testing.assert_array_equal(mass[1], heavy.body_mass.astype(np.float32))
    for w in (0, 2):
        np.testing.assert_array_equal(mass[w], env.model.body_mass.astype(np.float32))
    # Only what the heavier arm changes gets a row per world.
    assert len(backend.m.body_mass) == 3 and len(backend.m.body_invweight0) == 3
    assert len(backend.m.geom_friction) == 1 and len(backend.m.opt.timestep) == 1
    # A timestep-only write (as control-period jitter needs) touches nothing else.
    short = copy.copy(heavy)
    short.opt.timestep = 0.5 * env.model.opt.timestep
    backend.set_world_model([2], [short], fields=("opt.timestep",))
    np.testing.assert_array_equal(backend.model_values("body_mass"), mass)
    dt = backend.model_values("opt.timestep")
    np.testing.assert_array_equal(dt, np.float32([1.0, 1.0, 0.5]) * np.float32(dt[0]))


def test_bad_worlds_and_models_are_refused(reach):
    env, backend = reach
    m = env.model
    with pytest.raises(ValueError, match=r"out of range, expected 0 <= world < 5"):
        backend.set_world_model([N_WORLDS], [m])
    with pytest.raises(ValueError, match="out of range"):
        backend.set_world_model([-1], [m])
    with pytest.raises(ValueError, match="2 world indices but 1 models"):
        backend.set_world_model([0, 1], [m])
    with pytest.raises(ValueError, match="repeated"):
        backend.set_world_model([1, 1], [m, m])
    with pytest.raises(ValueError, match="not per-world"):
        backend.set_world_model([0], [m], fields=("body_pos",))
    other = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><freejoint/><geom size='.1'/></body></worldbody></mujoco>"
    )
    with pytest.raises(ValueError, match=r"models\[0\] \(world 2\): nq=7, expected"):
        backend.set_world_model([2], [other])
    retyped = copy.copy(m)
    retyped.geom_type[0] = (
        mujoco.mjtGeom.mjGEOM_SPHERE
        if m.geom_type[0] != mujoco.mjtGeom.mjGEOM_SPHERE
        else mujoco.mjtGeom.mjGEOM_BOX
    )
    with pytest.raises(ValueError, match="geom_type differs"):
        backend.set_world_model([0], [retyped])
