"""Domain randomization: values reach each world's model, stay in range, are reproducible
by seed, leave `none` untouched, and latency delays actions by the sampled steps."""

import mujoco
import numpy as np
import pytest

from robot_rl.config.schema import ConfigError, ParamRange, RandomizationConfig, TaskConfig
from robot_rl.sim.batched import BatchedSim
from robot_rl.sim.env import OBS_SPEC, RobotEnv
from robot_rl.sim.randomization import DomainRandomizer, episode_rng

HEAVY = RandomizationConfig(
    name="heavy",
    link_mass_scale=ParamRange("uniform", 0.5, 1.5),
    object_mass_scale=ParamRange("loguniform", 0.5, 2.0),
    object_size_scale=ParamRange("uniform", 0.9, 1.1),
    friction_scale=ParamRange("uniform", 0.5, 1.5),
    joint_damping_scale=ParamRange("loguniform", 0.3, 3.0),
    joint_armature_scale=ParamRange("uniform", 0.8, 1.2),
    actuator_kp_scale=ParamRange("loguniform", 0.75, 1.5),
    joint_offset_rad=ParamRange("uniform", -0.02, 0.02),
    object_xy_offset_m=ParamRange("uniform", -0.02, 0.02),
    object_yaw_offset_rad=ParamRange("uniform", -0.15, 0.15),
    action_latency_max_steps=2,
    obs_noise_std_by_key={"joint_pos": 0.003, "object_pos": 0.005},
    control_period_jitter_std=0.03,
)
_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def test_each_world_reproduces_a_single_env_with_the_same_randomization():
    # The strongest check that sampling, applying and the per-step parts are one
    # definition: every world equals a single env built with the same config, bit for bit.
    n = 3
    task = TaskConfig(name="push", horizon_steps=15)
    sim = BatchedSim(n, task, seed=7, n_threads=2, randomization=HEAVY)
    obs = sim.reset()
    envs = [RobotEnv(task_config=task, randomization=HEAVY) for _ in range(n)]
    episode = [0] * n
    for w, env in enumerate(envs):
        o, _ = env.reset(seed=sim.episode_seed(w, 0))
        for k in OBS_SPEC:
            np.testing.assert_array_equal(o[k], obs[k][w].numpy())
    rng = np.random.default_rng(1)
    state = np.empty(mujoco.mj_stateSize(sim.model, _FULL))
    resets = 0
    for _ in range(40):
        a = rng.uniform(-1, 1, (n, 4))
        obs, _, _, _, info = sim.step(a)
        for w, env in enumerate(envs):
            o, _, te, tr, _ = env.step(a[w])
            if te or tr:
                episode[w] += 1
                resets += 1
                o, _ = env.reset(seed=sim.episode_seed(w, episode[w]))
                assert w in info["randomization"]["worlds"]
                for k, v in env.randomization_params.items():
                    row = list(info["randomization"]["worlds"]).index(w)
                    np.testing.assert_array_equal(info["randomization"][k][row], v)
            mujoco.mj_getState(env.model, env.data, state, _FULL)
            np.testing.assert_array_equal(state, sim.world_state(w))
            for k in OBS_SPEC:
                np.testing.assert_array_equal(o[k], obs[k][w].numpy())
    assert resets >= n


def test_sampled_values_reach_each_worlds_own_model():
    sim = BatchedSim(4, TaskConfig(name="push"), seed=3, n_threads=2, randomization=HEAVY)
    sim.reset()
    log, s = sim.randomization_log, sim.scene
    nominal = sim.randomizer.nominal
    assert len({id(m) for m in sim.models}) == 4
    for w, m in enumerate(sim.models):
        assert m.body_mass[s.cube_body] == pytest.approx(
            nominal["body_mass"][s.cube_body] * log["object_mass_scale"][w, 0]
        )
        np.testing.assert_allclose(
            m.actuator_gainprm[s.arm_actuators, 0], -m.actuator_biasprm[s.arm_actuators, 1]
        )
        np.testing.assert_allclose(
            m.actuator_gainprm[s.arm_actuators, 0],
            nominal["actuator_gainprm"][s.arm_actuators, 0] * log["actuator_kp_scale"][w],
        )
        np.testing.assert_allclose(
            m.dof_damping[s.arm_dof_adr],
            nominal["dof_damping"][s.arm_dof_adr] * log["joint_damping_scale"][w],
        )
        half = 0.02 * log["object_size_scale"][w, 0]
        np.testing.assert_allclose(m.geom_size[s.cube_geom], [half] * 3)
        # The cube starts resting on the table at its own size.
        cube_z = sim.world_state(w)[1 + s.cube_qpos_adr + 2]
        assert cube_z == pytest.approx(half)
    # Different worlds, different values.
    assert len(set(log["object_mass_scale"][:, 0])) == 4


def test_a_heavier_cube_moves_less_under_the_same_push():
    # Measured in each world's own model: the same 2 N horizontal force for 50 ms on
    # the cube (friction at most ~1.5 N at 3x mass), from the world's reset state.
    cfg = RandomizationConfig(object_mass_scale=ParamRange("loguniform", 0.3, 3.0))
    sim = BatchedSim(6, TaskConfig(name="push"), seed=11, n_threads=2, randomization=cfg)
    sim.reset()
    moved = []
    for w, model in enumerate(sim.models):
        data = mujoco.MjData(model)
        mujoco.mj_setState(model, data, sim.world_state(w), _FULL)
        data.ctrl[sim.scene.arm_actuators] = data.qpos[sim.scene.arm_qpos_adr]  # hold the arm
        data.ctrl[sim.scene.gripper_actuator] = 0.04
        cube = sim.scene.cube_qpos_adr
        start = data.qpos[cube : cube + 2].copy()
        data.xfrc_applied[sim.scene.cube_body, 0] = 2.0
        for _ in range(25):
            mujoco.mj_step(model, data)
        moved.append(np.linalg.norm(data.qpos[cube : cube + 2] - start))
    mass = sim.randomization_log["object_mass_scale"][:, 0]
    order = np.argsort(mass)
    assert np.all(np.diff(np.asarray(moved)[order]) <= 1e-9), (mass, moved)
    assert moved[order[0]] > 0.005 and moved[order[-1]] < moved[order[0]] / 2


def test_values_stay_in_range_and_repeat_by_seed():
    env = RobotEnv("push")
    r = DomainRandomizer(HEAVY, env.scene, {k: s for k, (s, _) in OBS_SPEC.items()})
    samples = [r.sample(episode_rng(seed)) for seed in range(2000)]
    for key in HEAVY.__dataclass_fields__:
        rng_cfg = getattr(HEAVY, key)
        if not isinstance(rng_cfg, ParamRange):
            continue
        v = np.stack([s[key] for s in samples])
        assert v.min() >= rng_cfg.low and v.max() <= rng_cfg.high, key
        assert v.max() - v.min() > 0.8 * (rng_cfg.high - rng_cfg.low), key  # spread out
    # loguniform: as likely below the geometric mean as above it.
    mass = np.array([s["object_mass_scale"][0] for s in samples])
    assert abs(np.mean(mass < 1.0) - 0.5) < 0.05
    latency = np.array([s["action_latency_steps"][0] for s in samples])
    assert set(latency.tolist()) == {0, 1, 2}
    again = r.sample(episode_rng(5))
    for k, v in samples[5].items():
        np.testing.assert_array_equal(v, again[k])

    a = BatchedSim(3, TaskConfig(name="push"), seed=20, randomization=HEAVY)
    b = BatchedSim(3, TaskConfig(name="push"), seed=20, randomization=HEAVY)
    a.reset(), b.reset()
    for k, v in a.randomization_log.items():
        np.testing.assert_array_equal(v, b.randomization_log[k])
    assert len({tuple(row) for row in a.randomization_log["link_mass_scale"]}) == 3


def test_none_leaves_the_sim_exactly_as_without_randomization():
    task = TaskConfig(name="lift")
    plain = BatchedSim(2, task, seed=4, n_threads=2)
    none = BatchedSim(2, task, seed=4, n_threads=2, randomization=RandomizationConfig())
    assert none.randomizer is None and none.models[0] is none.models[1]
    plain.reset(), none.reset()
    rng = np.random.default_rng(0)
    for _ in range(10):
        a = rng.uniform(-1, 1, (2, 4))
        o1, *_ = plain.step(a)
        o2, _, _, _, info = none.step(a)
        assert "randomization" not in info
        for w in range(2):
            np.testing.assert_array_equal(plain.world_state(w), none.world_state(w))
        for k in OBS_SPEC:
            np.testing.assert_array_equal(o1[k].numpy(), o2[k].numpy())


def test_latency_delays_each_worlds_actions_by_its_sampled_steps():
    # One +x action, then zeros: the arm starts to move (against the same sim driven by
    # zeros only) exactly `latency` control steps later.
    cfg = RandomizationConfig(action_latency_max_steps=3)
    task = TaskConfig(name="reach", init_joint_noise_rad=0.0)
    n, steps = 8, 6
    runs = []
    for first in ([1.0, 0, 0, 1.0], [0, 0, 0, 1.0]):
        sim = BatchedSim(n, task, seed=2, n_threads=2, randomization=cfg)
        sim.reset()
        q = []
        for i in range(steps):
            obs, *_ = sim.step(np.tile(first if i == 0 else [0, 0, 0, 1.0], (n, 1)))
            q.append(obs["joint_pos"].numpy())
        runs.append(np.stack(q, axis=1))
        latency = sim.randomization_log["action_latency_steps"][:, 0]
    moved = np.abs(runs[0] - runs[1]).max(axis=2) > 1e-5
    first_moved = moved.argmax(axis=1)
    assert moved.any(axis=1).all()
    np.testing.assert_array_equal(first_moved, latency)
    assert len(set(latency.tolist())) >= 3


def test_joint_offset_shifts_what_the_policy_sees_not_the_physics():
    cfg = RandomizationConfig(joint_offset_rad=ParamRange("uniform", 0.01, 0.02))
    env = RobotEnv("reach", action_mode="joint_delta", randomization=cfg)
    plain = RobotEnv("reach", action_mode="joint_delta")
    o, _ = env.reset(seed=9)
    p, _ = plain.reset(seed=9)
    offset = env.randomization_params["joint_offset_rad"]
    np.testing.assert_allclose(o["joint_pos"] - p["joint_pos"], offset, atol=1e-6)
    # Zero joint deltas: the targets, commanded in the offset frame and converted back,
    # hold the true joints exactly where the plain env holds them.
    hold = np.array([0, 0, 0, 0, 0, 0, 0, 1.0])
    for _ in range(5):
        o, *_ = env.step(hold)
        p, *_ = plain.step(hold)
    arm = env.scene.arm_qpos_adr
    np.testing.assert_allclose(env.data.qpos[arm], plain.data.qpos[arm], rtol=0, atol=1e-9)
    np.testing.assert_allclose(o["joint_pos"] - p["joint_pos"], offset, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"friction_scale": ParamRange("uniform", 1.2, 0.8)}, "friction_scale.low/high"),
        ({"object_mass_scale": ParamRange("uniform", -1.0, 2.0)}, "object_mass_scale.low"),
        ({"link_mass_scale": ParamRange("uniform", 0.0, 2.0)}, "link_mass_scale.low"),
        ({"joint_damping_scale": ParamRange("uniform", -0.1, 1.0)}, "joint_damping_scale.low"),
        ({"joint_offset_rad": ParamRange("loguniform", -0.1, 0.1)}, "joint_offset_rad.low"),
        ({"friction_scale": ParamRange("gaussian", 0.5, 1.0)}, "friction_scale.dist"),
        ({"action_latency_min_steps": -1}, "action_latency_min_steps"),
        ({"action_latency_min_steps": 2, "action_latency_max_steps": 1}, "latency_max_steps"),
        ({"obs_noise_std": -0.1}, "obs_noise_std"),
        ({"control_period_jitter_std": 0.5}, "control_period_jitter_std"),
    ],
)
def test_bad_configs_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=rf"randomization\.\w*{key}"):
        RandomizationConfig(**kwargs)


def test_noise_on_an_unknown_observation_key_is_refused_before_simulating():
    cfg = RandomizationConfig(obs_noise_std_by_key={"joint_position": 0.01})
    with pytest.raises(ConfigError, match=r"obs_noise_std_by_key\.joint_position"):
        BatchedSim(2, TaskConfig(name="reach"), randomization=cfg)


def test_make_env_passes_randomization_through_to_every_reset():
    from hydra import compose, initialize_config_dir

    from robot_rl.config.schema import PipelineConfig
    from robot_rl.config.store import register_configs, to_object
    from robot_rl.paths import CONF_DIR
    from robot_rl.sim.env import make_env

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = to_object(compose("pipeline", ["randomization=light"]), PipelineConfig)
    env = make_env(cfg.task, cfg.robot, cfg.sim, randomization=cfg.randomization)
    env.reset(seed=1)
    first = {k: v.copy() for k, v in env.randomization_params.items()}
    env.reset(seed=2)
    assert first and any(not np.array_equal(first[k], env.randomization_params[k]) for k in first)
    plain = make_env(cfg.task, cfg.robot, cfg.sim)
    plain.reset(seed=1)
    assert plain.randomization_params == {}


def test_randomized_observations_stay_inside_the_observation_space():
    from hydra import compose, initialize_config_dir

    from robot_rl.config.schema import PipelineConfig
    from robot_rl.config.store import register_configs, to_object
    from robot_rl.paths import CONF_DIR
    from robot_rl.sim.env import make_env

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = to_object(compose("pipeline", ["randomization=heavy"]), PipelineConfig)
    env = make_env(cfg.task, cfg.robot, cfg.sim, randomization=cfg.randomization)
    rng = np.random.default_rng(0)
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(rng.uniform(-1, 1, 4))
        assert env.observation_space.contains(obs)


def test_derived_model_constants_follow_randomized_masses():
    from hydra import compose, initialize_config_dir

    from robot_rl.config.schema import PipelineConfig
    from robot_rl.config.store import register_configs, to_object
    from robot_rl.paths import CONF_DIR
    from robot_rl.sim.env import make_env

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = to_object(compose("pipeline", ["randomization=heavy"]), PipelineConfig)
    env = make_env(cfg.task, cfg.robot, cfg.sim, randomization=cfg.randomization)
    nominal = make_env(cfg.task, cfg.robot, cfg.sim).model
    env.reset(seed=3)
    cube = env.scene.cube_body
    scale = env.model.body_mass[cube] / nominal.body_mass[cube]
    assert scale != pytest.approx(1.0)
    # A free body's inverse weight scales with 1 / mass (mj_setConst ran).
    assert env.model.body_invweight0[cube, 0] == pytest.approx(
        nominal.body_invweight0[cube, 0] / scale, rel=1e-6
    )
