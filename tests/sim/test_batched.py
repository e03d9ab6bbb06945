"""The batched simulator (CPU backend) against the single env it must reproduce."""

import mujoco
import numpy as np
import pytest
import torch

from robot_rl.config.schema import TaskConfig
from robot_rl.safety import SafetyReport
from robot_rl.sim.batched import BatchedSim
from robot_rl.sim.env import OBS_SPEC, RobotEnv


@pytest.mark.parametrize("task", ["reach", "push", "lift"])
def test_cpu_backend_reproduces_single_envs_across_auto_resets(task):
    n, steps = 4, 200
    sim = BatchedSim(n, TaskConfig(name=task), seed=100, n_threads=2)
    obs = sim.reset()
    envs = [RobotEnv(task) for _ in range(n)]
    episode = [0] * n
    for w, env in enumerate(envs):
        first, _ = env.reset(seed=sim.episode_seed(w, 0))
        for k in OBS_SPEC:
            np.testing.assert_array_equal(first[k], obs[k][w].numpy())
    rng = np.random.default_rng(0)
    resets = 0
    state = np.empty(mujoco.mj_stateSize(sim.model, mujoco.mjtState.mjSTATE_FULLPHYSICS))
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (n, 4))
        obs, reward, terminated, truncated, info = sim.step(actions)
        for w, env in enumerate(envs):
            o, r, te, tr, i = env.step(actions[w])
            assert (te, tr, i["is_success"]) == (
                bool(terminated[w]),
                bool(truncated[w]),
                bool(info["is_success"][w]),
            )
            assert r == pytest.approx(float(reward[w]), abs=1e-6)  # float32 rewards
            if te or tr:
                for k in OBS_SPEC:  # the observation the episode ended on
                    np.testing.assert_array_equal(o[k], info["final_obs"][k][w].numpy())
                episode[w] += 1
                resets += 1
                o, _ = env.reset(seed=sim.episode_seed(w, episode[w]))
            mujoco.mj_getState(env.model, env.data, state, mujoco.mjtState.mjSTATE_FULLPHYSICS)
            # MuJoCo states (qpos, qvel, ...) within 1e-9: in fact bit for bit.
            np.testing.assert_allclose(state, sim.world_state(w), rtol=0, atol=1e-9)
            for k in OBS_SPEC:
                np.testing.assert_array_equal(o[k], obs[k][w].numpy())
    assert resets >= n  # every world went through at least one auto-reset
    sim.close()


def test_episode_seeds_never_overlap_across_worlds_episodes_or_batch_seeds():
    sims = [BatchedSim(3, TaskConfig(name="reach"), seed=s) for s in (10, 11)]
    seeds = [s.episode_seed(w, k) for s in sims for w in range(3) for k in range(50)]
    assert len(set(seeds)) == len(seeds)  # (batch seed, world, episode) -> unique seed
    assert sims[0].episode_seed(1, 0) == BatchedSim(
        3, TaskConfig(name="reach"), seed=10
    ).episode_seed(1, 0)
    sim = sims[0]
    obs = sim.reset()
    goals = obs["goal"].numpy()
    assert len({tuple(g) for g in goals}) == 3  # different worlds, different goals
    again = BatchedSim(3, TaskConfig(name="reach"), seed=10).reset()
    torch.testing.assert_close(again["goal"], obs["goal"], rtol=0, atol=0)
    # An unseeded reset moves on to the next episodes; a seeded one starts over.
    assert sim.current_episode_seeds() == [sim.episode_seed(w, 0) for w in range(3)]
    moved = sim.reset()
    assert sim.current_episode_seeds() == [sim.episode_seed(w, 1) for w in range(3)]
    assert not torch.equal(moved["goal"], obs["goal"])
    torch.testing.assert_close(sim.reset(seed=10)["goal"], obs["goal"], rtol=0, atol=0)


def test_bad_actions_are_refused_with_the_worlds_named():
    sim = BatchedSim(3, TaskConfig(name="reach"))
    sim.reset()
    with pytest.raises(ValueError, match=r"shape \(3, 7\), expected \(3, 4\)"):
        sim.step(np.zeros((3, 7)))
    bad = np.zeros((3, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"worlds \[1\]"):
        sim.step(bad)


def test_command_filter_hook_is_batched_and_called_once_per_control_step():
    calls, resets = [], []

    class HoldJoint1:
        """A custom hook with the safety filter's interface."""

        def reset(self, state, worlds=None):
            resets.append((state.q.shape, worlds))

        def filter(self, state, command):
            calls.append((state.q.shape, state.dq.shape, state.tau.shape, command.shape))
            out = command.copy()
            out[:, 0] = state.q[:, 0]
            clipped = np.ones(len(out), dtype=bool)
            return out, SafetyReport({"position": clipped}, clipped)

    sim = BatchedSim(
        2, TaskConfig(name="reach", init_joint_noise_rad=0.0), command_filter=HoldJoint1()
    )
    assert sim.safety_filter_version == "custom:HoldJoint1"
    obs = sim.reset()
    q1 = obs["joint_pos"][:, 0].clone()
    for _ in range(5):
        obs, _, _, _, info = sim.step(np.tile([0, 1.0, 0, 1.0], (2, 1)))  # +y turns joint 1
    assert resets == [((2, 7), None)]
    assert calls == [((2, 7),) * 4] * 5
    torch.testing.assert_close(obs["joint_pos"][:, 0], q1, atol=2e-3, rtol=0)
    assert info["clipped"].tolist() == [True, True]
    assert info["safety"]["position"].tolist() == [True, True]


def test_render_chosen_worlds_matches_the_single_env_frame():
    sim = BatchedSim(3, TaskConfig(name="lift"), seed=5)
    sim.reset()
    for _ in range(3):
        sim.step(np.tile([0.5, 0, -1.0, 1.0], (3, 1)))
    frames = sim.render([2, 0], width=96, height=64)
    assert [f.shape for f in frames] == [(64, 96, 3)] * 2
    assert not np.array_equal(frames[0], frames[1])  # different worlds, different scenes
    env = RobotEnv("lift", render_mode="rgb_array", width=96, height=64)
    env.reset(seed=sim.episode_seed(2, 0))
    for _ in range(3):
        env.step(np.array([0.5, 0, -1.0, 1.0]))
    np.testing.assert_array_equal(env.render(), frames[0])
    with pytest.raises(IndexError, match="world 3"):
        sim.render([3])
    sim.close()
    env.close()
