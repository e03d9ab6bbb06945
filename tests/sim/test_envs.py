"""Every registered env: Gymnasium's and SB3's checkers, reset/step/NaN, seeding, options."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import robot_rl.sim
from robot_rl.config.schema import SimConfig
from robot_rl.safety import VERSION as SAFETY_VERSION
from robot_rl.safety import SafetyReport
from robot_rl.sim.env import OBS_SPEC, RobotEnv

ENV_IDS = sorted(robot_rl.sim.ENV_IDS.values())


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_checker(env_id):
    env = gym.make(env_id)
    gym_check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_checker(env_id):
    env = gym.make(env_id).unwrapped
    sb3_check_env(env, warn=False)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_random_actions_stay_finite_and_in_space(env_id):
    env = gym.make(env_id).unwrapped
    obs, info = env.reset(seed=1)
    assert set(obs) == set(OBS_SPEC) and info["is_success"] is False
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(250):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4))
        assert all(np.all(np.isfinite(v)) for v in obs.values())
        assert np.isfinite(reward)
        assert env.observation_space.contains(obs), {
            k: v for k, v in obs.items() if not env.observation_space[k].contains(v)
        }
        assert isinstance(info["is_success"], bool)
        if terminated or truncated:
            ends += 1
            obs, _ = env.reset()
    assert ends >= 2  # the horizon cuts episodes (reach 50, push/lift 100 steps)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_bad_actions_raise_clear_errors(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(np.array([np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(7))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_trajectory(env_id):
    def rollout(seed):
        env = gym.make(env_id).unwrapped
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(123)
        traj = [np.concatenate(list(obs.values()))]
        for _ in range(30):
            obs, *_ = env.step(rng.uniform(-1, 1, 4))
            traj.append(np.concatenate(list(obs.values())))
        return np.array(traj)

    a, b, c = rollout(7), rollout(7), rollout(8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], c[0])


def test_horizon_truncates_and_scales_with_control_rate():
    env = RobotEnv("reach")
    assert env.horizon_steps == 50 and env.n_substeps == 25
    env.reset(seed=0)
    for t in range(50):
        _, _, terminated, truncated, _ = env.step(np.zeros(4))
        assert not terminated
        assert truncated == (t == 49)
    env10 = RobotEnv("push", control_hz=10.0)
    assert env10.horizon_steps == 50 and env10.n_substeps == 50
    with pytest.raises(ValueError, match="whole number of physics steps"):
        RobotEnv("reach", control_hz=30.0)


def test_sparse_reward_is_success_indicator():
    env = RobotEnv("reach", reward_type="sparse")
    obs, _ = env.reset(seed=0)
    env.scene.set_goal(env.data, obs["ee_pos"].astype(float))  # goal where the TCP is
    _, reward, terminated, _, info = env.step(np.array([0, 0, 0, 1.0]))
    assert info["is_success"] and terminated and reward == 1.0
    obs, _ = env.reset(seed=0)
    env.scene.set_goal(env.data, obs["ee_pos"] + np.array([0.2, 0, 0]))  # 20 cm away
    _, reward, terminated, _, info = env.step(np.array([0, 0, 0, 1.0]))
    assert not info["is_success"] and not terminated and reward == 0.0


def test_ee_delta_action_moves_tcp_by_at_most_the_step():
    env = RobotEnv("reach")
    obs, _ = env.reset(seed=0)
    start = obs["ee_pos"].copy()
    for _ in range(10):
        obs, *_ = env.step(np.array([1.0, 0, 0, 1.0]))
    moved = obs["ee_pos"] - start
    # 10 steps of the full 2 cm along +x (the arm lags its targets by a few mm).
    assert 0.16 < moved[0] <= 0.2 + 1e-3
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    # A diagonal full action is scaled to 2 cm in norm, not 2 cm per axis.
    obs, _ = env.reset(seed=0)
    start = obs["ee_pos"].copy()
    for _ in range(5):
        obs, *_ = env.step(np.array([1.0, 1.0, 0, 1.0]))
    assert np.linalg.norm(obs["ee_pos"] - start) <= 5 * 0.02 + 2e-3


def test_gripper_command_maps_to_width():
    env = RobotEnv("reach")
    obs, _ = env.reset(seed=0)
    assert obs["gripper_width"][0] == pytest.approx(0.08, abs=1e-4)
    for _ in range(10):
        obs, *_ = env.step(np.array([0, 0, 0, -1.0]))
    assert obs["gripper_width"][0] < 0.002
    for _ in range(10):
        obs, *_ = env.step(np.array([0, 0, 0, 0.0]))
    assert obs["gripper_width"][0] == pytest.approx(0.04, abs=0.003)


def test_joint_delta_mode_moves_joints_within_limits():
    # The IK's own clamp alone: the safety filter (on by default) would stop the arm
    # earlier, where its fingers leave the workspace box (tests/safety/test_in_sim.py).
    env = RobotEnv("reach", action_mode="joint_delta", sim_config=SimConfig(safety_filter=False))
    assert env.action_space.shape == (8,)
    obs, _ = env.reset(seed=0)
    q0 = obs["joint_pos"].copy()
    for _ in range(4):
        obs, *_ = env.step(np.array([1, 0, 0, 0, 0, 0, 0, 1.0]))
    for _ in range(3):  # let the servo settle on the target
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 0, 1.0]))
    assert obs["joint_pos"][0] - q0[0] == pytest.approx(0.2, abs=0.01)
    for _ in range(200):
        obs, *_ = env.step(np.array([0, 0, 0, 1.0, 0, 0, 0, 1.0]))  # drive joint 4 up
    # The command stops at the limit minus the IK margin, and the joint follows it.
    assert env._q_cmd[3] == pytest.approx(env.ik.q_hi[3])
    assert obs["joint_pos"][3] == pytest.approx(env.ik.q_hi[3], abs=0.01)


def test_command_filter_hook_sees_every_control_step():
    calls, resets = [], []

    class ClampJoint1:
        """A custom hook with the safety filter's interface."""

        def reset(self, state, worlds=None):
            resets.append(state.q.shape)

        def filter(self, state, command):
            calls.append((state.q.shape, state.tau.shape, command.shape))
            out = command.copy()
            out[:, 0] = 0.0
            return out, SafetyReport({"position": np.ones(1, bool)}, np.ones(1, bool))

    env = RobotEnv("reach", command_filter=ClampJoint1(), init_joint_noise_rad=0.0)
    assert env.safety_filter_version == "custom:ClampJoint1"
    env.reset(seed=0)
    for _ in range(20):
        obs, _, _, _, info = env.step(np.array([0, 1.0, 0, 1.0]))  # +y needs joint 1 to turn
    assert resets == [(1, 7)]
    assert calls == [((1, 7), (1, 7), (1, 7))] * 20
    assert abs(obs["joint_pos"][0]) < 0.01
    assert info["clipped"] and info["safety"] == {"position": True}


def test_the_safety_filter_is_on_by_default_and_off_only_by_config():
    assert RobotEnv("reach").safety_filter_version == f"{SAFETY_VERSION} (nominal)"
    canary = RobotEnv("reach", sim_config=SimConfig(safety_envelope="canary"))
    assert canary.safety_filter_version == f"{SAFETY_VERSION} (canary)"
    off = RobotEnv("reach", sim_config=SimConfig(safety_filter=False))
    assert off.command_filter is None and off.safety_filter_version == "off"
    off.reset(seed=0)
    info = off.step(np.zeros(4))[-1]
    assert info["clipped"] is False and info["safety"] == {}


def test_rgb_render():
    env = RobotEnv("lift", render_mode="rgb_array", width=96, height=64)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
    assert frame.std() > 5  # a scene, not a blank image
    env.close()


def test_unknown_task_option_is_named():
    with pytest.raises(TypeError, match="reward_kind"):
        RobotEnv("reach", reward_kind="dense")
