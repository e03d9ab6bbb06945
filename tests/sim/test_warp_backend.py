"""MuJoCo Warp backend (on Warp's CPU device, and on CUDA where a GPU is present) against
the float64 CPU path.

The CPU path is what ``BatchedSim`` runs: ``mujoco.rollout`` once per control step with
``nstep`` = the substeps, per-substep controls and a zero initial warm start. Compiling
MuJoCo Warp's kernels for the CPU device takes ~20-60 s the first time (Warp caches them
on disk), so each module-scoped fixture builds one backend and reuses it.
"""

import mujoco
import numpy as np
import pytest
import torch

wp = pytest.importorskip("warp", reason="the warp extra (warp-lang) is not installed")
pytest.importorskip("mujoco_warp", reason="the warp extra (mujoco-warp) is not installed")

from mujoco import rollout  # noqa: E402

from robot_rl.sim.backends.warp import WarpBackend, full_state_offsets  # noqa: E402
from robot_rl.sim.env import RobotEnv  # noqa: E402
from robot_rl.sim.experts import make_expert  # noqa: E402

pytestmark = pytest.mark.slow

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS
N_WORLDS = 4


def _state(env: RobotEnv) -> np.ndarray:
    s = np.empty(mujoco.mj_stateSize(env.model, _FULL))
    mujoco.mj_getState(env.model, env.data, s, _FULL)
    return s


@pytest.fixture(scope="module")
def reach(warp_device):
    env = RobotEnv("reach")
    env.reset(seed=0)
    return env, WarpBackend(env.model, N_WORLDS, device=warp_device)


def _cpu_step(model, states, control):
    """BatchedSim's CPU path for one control step: final states and sensor data."""
    n = len(states)
    with rollout.Rollout(nthread=1) as r:
        st, sd = r.rollout(
            [model] * n,
            [mujoco.MjData(model)],
            states,
            control,
            nstep=control.shape[1],
            initial_warmstart=np.zeros((n, model.nv)),
        )
    return st[:, -1], sd[:, -1]


def test_reach_matches_cpu_rollout_over_100_control_steps(reach):
    env, backend = reach
    m, s_sub = env.model, env.n_substeps
    off = full_state_offsets(m)
    qpos = slice(off["mjSTATE_QPOS"][0], sum(off["mjSTATE_QPOS"]))
    qvel = slice(off["mjSTATE_QVEL"][0], sum(off["mjSTATE_QVEL"]))
    arm_q = qpos.start + np.asarray(env.scene.arm_qpos_adr)
    arm_v = qvel.start + np.asarray(env.scene.arm_dof_adr)
    x0 = []
    for w in range(N_WORLDS):
        env.reset(seed=w)
        x0.append(_state(env))
    x0 = np.array(x0)
    ctrl0 = env.data.ctrl.copy()
    arm = np.asarray(env.scene.arm_actuators)
    amp = np.random.default_rng(0).uniform(-0.3, 0.3, (N_WORLDS, 7))

    backend.set_state(np.arange(N_WORLDS), x0)
    np.testing.assert_allclose(backend.get_state(), x0, rtol=0, atol=1e-6)
    cpu = x0.copy()
    err_q = err_arm_q = err_arm_v = 0.0
    for k in range(100):
        # Joint targets sweep by up to 0.3 rad, ramped over the substeps as in BatchedSim.
        control = np.repeat(ctrl0[None, None], N_WORLDS, 0).repeat(s_sub, 1)
        ramp = (k + np.linspace(1 / s_sub, 1, s_sub)) / 100
        control[:, :, arm] += amp[:, None] * np.sin(2 * np.pi * ramp)[None, :, None]
        cpu, sd_cpu = _cpu_step(m, cpu, control)
        gpu, sd_gpu = backend.step(None, control)
        assert gpu.dtype == np.float64 and gpu.shape == cpu.shape
        assert sd_gpu.shape == (N_WORLDS, m.nsensordata)
        np.testing.assert_array_equal(sd_gpu, sd_cpu)  # pad contact flags: no pad contact
        err_q = max(err_q, np.abs(gpu[:, qpos] - cpu[:, qpos]).max())
        err_arm_q = max(err_arm_q, np.abs(gpu[:, arm_q] - cpu[:, arm_q]).max())
        err_arm_v = max(err_arm_v, np.abs(gpu[:, arm_v] - cpu[:, arm_v]).max())
    # float32 physics against float64, 2500 substeps: measured max |dq| ~1e-6 rad on the
    # arm, ~1e-4 on the free cube while it settles on the table in the first step (and
    # 2e-3 m/s in its velocity then); the tolerances leave ~10x headroom, far below the
    # 1e-3 rad anything downstream (IK, observations in float32) could notice.
    assert err_arm_q < 1e-5, err_arm_q
    assert err_arm_v < 1e-3, err_arm_v
    assert err_q < 1e-3, err_q
    # time accumulates in float32 on the device: ~1e-4 s after 5 s.
    assert abs(backend.get_state()[0, 0] - cpu[0, 0]) < 1e-3


def test_set_state_touches_only_the_given_worlds(reach):
    env, backend = reach
    before = backend.get_state()
    env.reset(seed=123)
    new = _state(env)
    backend.set_state(np.array([2]), new[None])
    after = backend.get_state()
    np.testing.assert_allclose(after[2], new, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.delete(after, 2, 0), np.delete(before, 2, 0))


def test_control_shape_is_checked(reach):
    env, backend = reach
    with pytest.raises(ValueError, match="control has shape"):
        backend.step(None, np.zeros((N_WORLDS + 1, env.n_substeps, env.model.nu)))


def test_lift_grasp_one_control_step_at_a_time(warp_device):
    """Contacts (pads on the cube, cube on the table) and the pad contact sensors.

    Contacts make float32 and float64 trajectories diverge over many steps, so each
    control step starts both from the CPU trajectory of the scripted lift expert
    (teacher forcing) and compares where one control step takes them.
    """
    env = RobotEnv("lift")
    m = env.model
    recorded: list[np.ndarray] = []
    mujoco.set_mjcb_control(lambda _m, d: recorded.append(d.ctrl.copy()))
    try:
        obs, _ = env.reset(seed=0)
        expert = make_expert("lift")
        expert.reset()
        states, controls = [], []
        for _ in range(60):
            states.append(_state(env))
            recorded.clear()
            obs, *_ = env.step(expert.act(obs))
            controls.append(np.array(recorded))
    finally:
        mujoco.set_mjcb_control(None)
    states.append(_state(env))
    states, controls = np.array(states), np.array(controls)
    assert controls.shape[1:] == (env.n_substeps, m.nu)
    backend = WarpBackend(m, len(controls), device=warp_device)  # one world per control step
    out, sd = backend.step(states[:-1], controls)
    cpu_next, sd_cpu = _cpu_step(m, states[:-1], controls)
    # The recorded controls reproduce the single env exactly on the CPU path.
    np.testing.assert_allclose(cpu_next, states[1:], rtol=0, atol=1e-9)
    # data="found": the sensors count the pad-cube contacts (0, 1, 2, ...).
    touching, touching_cpu = sd > 0, sd_cpu > 0
    assert touching_cpu.all(axis=1).any(), "the expert never closed both pads on the cube"
    # Touching or not agrees at every step (measured: all 60); the contact counts can
    # differ while the jaws close (measured: 95% equal).
    np.testing.assert_array_equal(touching, touching_cpu)
    err = np.abs(out[:, 1:] - states[1:, 1:])  # qpos, qvel of the next state
    q = np.arange(m.nq)
    arm = q[np.asarray(env.scene.arm_qpos_adr)]
    fingers = q[np.asarray(env.scene.finger_qpos_adr)]
    cube = env.scene.cube_qpos_adr
    # One 50 ms control step from the same state, float32 against float64: measured max
    # |dq| 1e-6 rad away from contact, and while the jaws close on the cube 2.5e-3 rad
    # (arm), 1.1e-3 m (fingers), 5.5e-3 m (cube position), 0.035 (cube quaternion
    # components): contact onset amplifies float32 rounding; trajectories then diverge,
    # which is why push/lift are compared by success rates, not states.
    assert err[:, arm].max() < 1e-2, err[:, arm].max()
    assert err[:, fingers].max() < 5e-3, err[:, fingers].max()
    assert err[:, cube : cube + 3].max() < 2e-2, err[:, cube : cube + 3].max()
    assert err[:, cube + 3 : cube + 7].max() < 0.1, err[:, cube + 3 : cube + 7].max()
    # Away from contact onset the agreement is as tight as in reach.
    assert np.median(err[:, : m.nq].max(axis=1)) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("randomized", [False, True], ids=["none", "heavy"])
def test_batched_sim_on_warp_follows_the_cpu_backend_on_reach(randomized, warp_device):
    """BatchedSim with sim.backend=warp (on ``warp_device``) against sim.backend=cpu:
    100 control steps of reach with the same random actions, across auto-resets. Warp
    runs in float32, so states agree to float32 accuracy, not bit for bit: arm joints
    within 1e-3 rad, the same episode ends (success and time limits) in every world.
    With heavy randomization every per-world parameter (masses, damping, gains, the
    physics step under jitter), the latency, joint offsets and observation noise must
    reach the device, or the arm would move differently."""
    from robot_rl.config.schema import SimConfig, TaskConfig
    from robot_rl.sim.batched import BatchedSim
    from tests.sim.test_randomization import HEAVY

    sims = {
        backend: BatchedSim(
            4,
            TaskConfig(name="reach"),
            # The physics and the per-step code, compared without the safety filter: its
            # discrete choices (a command passed as is or changed, a grid point of its
            # search) turn float32 rounding into different commands. Its torch path is
            # compared with its numpy path in float64 (tests/safety/test_filter_fuzz.py).
            sim_config=SimConfig(backend=backend, warp_device=warp_device, safety_filter=False),
            seed=7,
            randomization=HEAVY if randomized else None,
        )
        for backend in ("cpu", "warp")
    }
    for s in sims.values():
        s.reset()
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(100):
        actions = rng.uniform(-1, 1, (4, 4))
        out = {b: s.step(actions) for b, s in sims.items()}
        (o_c, _, te_c, tr_c, _), (o_w, _, te_w, tr_w, _) = out["cpu"], out["warp"]
        assert torch.equal(te_c, te_w) and torch.equal(tr_c, tr_w)
        ends += int((te_c | tr_c).sum())
        np.testing.assert_allclose(o_w["joint_pos"], o_c["joint_pos"], atol=1e-3, rtol=0)
        np.testing.assert_allclose(o_w["ee_pos"], o_c["ee_pos"], atol=1e-3, rtol=0)
    assert ends >= 4  # every world went through auto-reset at least once (horizon 50)
    for s in sims.values():
        s.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["push", "lift"])
def test_scripted_expert_succeeds_alike_on_warp_and_cpu(task, warp_device):
    """Contacts make float32 and float64 trajectories part ways, so push and lift are
    compared by the expert's success over the same seeded first episodes: the two
    success rates' 95% Wilson intervals must overlap."""
    from robot_rl.config.schema import SimConfig, TaskConfig
    from robot_rl.eval.metrics import wilson_interval
    from robot_rl.sim.batched import BatchedSim

    n = 16
    results, rates = {}, {}
    for backend in ("cpu", "warp"):
        config = SimConfig(backend=backend, warp_device=warp_device)
        sim = BatchedSim(n, TaskConfig(name=task), sim_config=config, seed=11)
        obs = sim.reset()
        experts = [make_expert(task) for _ in range(n)]
        finished = np.zeros(n, dtype=bool)
        success = np.zeros(n, dtype=bool)
        while not finished.all():
            actions = np.stack(
                [experts[w].act({k: v[w].numpy() for k, v in obs.items()}) for w in range(n)]
            )
            obs, _, terminated, truncated, info = sim.step(actions)
            ended = (terminated | truncated).numpy()
            for w in np.flatnonzero(ended & ~finished):
                success[w], finished[w] = bool(info["is_success"][w]), True
            for w in np.flatnonzero(ended):
                experts[w].reset()
        sim.close()
        results[backend] = wilson_interval(int(success.sum()), n)
        rates[backend] = success.mean()
    (lo_c, hi_c), (lo_w, hi_w) = results["cpu"], results["warp"]
    assert lo_c <= hi_w and lo_w <= hi_c, results
    assert rates["warp"] >= 0.9, rates  # and the expert still works on Warp at all


@pytest.mark.slow
def test_batched_warp_step_reads_the_device_once_and_still_checks_its_health(warp_device):
    """A control step on MuJoCo Warp waits for the device only at the action check and at
    its one flag read, where it finds the ended episodes, non-finite physics and buffer
    overflows together. No check may sit between (each would make the host wait for the
    physics mid-step), and none of the three may be lost in the merge."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from robot_rl.config.schema import SimConfig, TaskConfig
    from robot_rl.sim.batched import BatchedSim

    sim = BatchedSim(
        3, TaskConfig(name="reach"), sim_config=SimConfig(backend="warp", warp_device=warp_device)
    )
    sim.reset()
    waits = []

    class CountWaits(TorchDispatchMode):  # a scalar read, or an error check that needs one
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.__name__.split(".")[0] in ("_local_scalar_dense", "_linalg_check_errors"):
                waits.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with CountWaits():
        sim.step(np.zeros((3, 4)))
    assert waits == ["_local_scalar_dense.default"], waits  # the action check alone

    sim._physics.qpos[1, 0] = float("nan")
    with pytest.raises(RuntimeError, match=r"physics diverged in worlds \[1\]"):
        sim.step(np.zeros((3, 4)))
    sim.reset()
    real = sim._physics.overflow
    sim._physics.overflow = torch.tensor([0, 0, 4], dtype=torch.int32, device=real.device)
    with pytest.raises(
        RuntimeError, match=r"buffer overflow \(OverflowType bits 0x4\) in worlds \[2\]"
    ):
        sim.step(np.zeros((3, 4)))
    sim._physics.overflow = real
    sim.reset()
    sim.step(np.zeros((3, 4)))  # healthy again
    sim.close()
