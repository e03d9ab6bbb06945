"""Tests of the importers: Minari datasets, robomimic HDF5 and Gymnasium rollouts."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import h5py
import numpy as np
import pytest

from robot_rl.data import EpisodeStore, TransitionSampler, open_store
from robot_rl.data.importers import (
    flatten_obs,
    import_minari,
    import_robomimic,
    record_gym_rollouts,
)

# ---------------------------------------------------------------- helpers


def _store_state(path):
    """(n_episodes, content hash) of the store at path, or None if there is none."""
    if not path.exists():
        return None
    with open_store(path) as s:
        return s.n_episodes, s.content_hash()


def test_flatten_obs_names_nested_and_tuple_entries():
    x = np.zeros((2, 3))
    flat = flatten_obs({"robot": {"pos": x, "vel": x}, "goal": x})
    assert list(flat) == ["robot.pos", "robot.vel", "goal"]
    assert list(flatten_obs(x)) == ["observation"]
    assert list(flatten_obs((x, x))) == ["observation.0", "observation.1"]


# ---------------------------------------------------------------- robomimic

ENV_ARGS = {"env_name": "Lift", "type": 1, "env_kwargs": {"robots": ["Panda"], "control_freq": 20}}
# Demo names out of lexical order on purpose: demo_10 sorts before demo_2 as text.
DEMOS = {"demo_0": (4, [0, 0, 0, 1]), "demo_10": (3, [0, 0, 1]), "demo_2": (5, [0] * 5)}


def _demo_data(name: str, T: int, dones: list[int]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(int(name.split("_")[1]))
    return {
        "obs/robot0_eef_pos": rng.normal(size=(T + 1, 3)),  # float64; T+1 for next_obs
        "obs/agentview_image": rng.integers(0, 256, size=(T + 1, 4, 4, 3)).astype(np.uint8),
        "obs/object": rng.normal(size=(T + 1, 2)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(T, 7)),
        "rewards": rng.normal(size=T),
        "dones": np.array(dones, dtype=np.int64),
    }


def _write_robomimic(path, demos=DEMOS, mutate=None):
    """A robomimic-layout file; ``mutate(name, datasets, attrs)`` alters a demo before writing."""
    expected = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps(ENV_ARGS)
        data.attrs["total"] = sum(T for T, _ in demos.values())
        for name, (T, dones) in demos.items():
            d = _demo_data(name, T, dones)
            attrs = {"num_samples": T}
            if mutate is not None:
                mutate(name, d, attrs)
            g = data.create_group(name)
            g.attrs.update(attrs)
            for key, value in d.items():
                if key.startswith("obs/"):
                    g[key] = value[:-1] if len(value) == T + 1 else value
                    g["next_obs/" + key[4:]] = value[1:]
                else:
                    g[key] = value
            expected[name] = d
        f["mask/train"] = np.array([b"demo_2", b"demo_0"])
    return expected


def test_robomimic_round_trip_exact(tmp_path):
    src = tmp_path / "lift_ph.hdf5"
    expected = _write_robomimic(src)
    result = import_robomimic(src, tmp_path / "store")
    assert result.episodes == [0, 1, 2] and result.n_steps == 12
    assert result.action_low is None  # robomimic actions are already in [-1, 1]
    with open_store(tmp_path / "store") as s:
        assert (s.control_hz, s.attrs["robot"], s.attrs["task"]) == (20.0, "Panda", "Lift")
        assert s.obs_spec == {
            "robot0_eef_pos": ((3,), "float32"),
            "agentview_image": ((4, 4, 3), "uint8"),
            "object": ((2,), "float32"),
        }
        for i, name in enumerate(["demo_0", "demo_2", "demo_10"]):  # numeric order
            T, dones = DEMOS[name]
            d, ep, prov = expected[name], s.episode(i), s.provenance(i)
            for key in ("robot0_eef_pos", "agentview_image", "object"):
                np.testing.assert_array_equal(
                    ep[key], d[f"obs/{key}"][:T].astype(ep[key].dtype), err_msg=key
                )
            np.testing.assert_array_equal(ep["action"], d["actions"].astype(np.float32))
            np.testing.assert_array_equal(ep["reward"], d["rewards"].astype(np.float32))
            np.testing.assert_array_equal(ep["terminated"], np.array(dones, dtype=bool))
            # All-zero dones: the demo was cut, so its last row is truncated.
            assert list(ep["truncated"]) == [False] * (T - 1) + [not any(dones)]
            assert prov.source == "import" and prov.success is None
            assert prov.policy_id == f"robomimic:lift_ph.hdf5#{name}"
            assert prov.robot_id == "robomimic:Lift"
            assert prov.start_time_unix_s is None
        assert s.validate().ok


def test_robomimic_obs_keys_filter_key_and_append(tmp_path):
    src = tmp_path / "lift.hdf5"
    _write_robomimic(src)
    r = import_robomimic(src, tmp_path / "s", obs_keys=["object"], filter_key="train")
    assert r.episodes == [0, 1]
    r2 = import_robomimic(src, tmp_path / "s", obs_keys=["object"], max_episodes=1, append=True)
    assert r2.episodes == [2]
    with open_store(tmp_path / "s") as s:
        assert s.obs_keys == ["object"]
        assert [s.provenance(i).policy_id.split("#")[1] for i in range(3)] == [
            "demo_0",
            "demo_2",
            "demo_0",
        ]
    with pytest.raises(FileExistsError, match="append=True"):
        import_robomimic(src, tmp_path / "s")
    # Appending a different schema is refused and changes nothing.
    before = _store_state(tmp_path / "s")
    with pytest.raises(ValueError, match="cannot append"):
        import_robomimic(src, tmp_path / "s", append=True)
    assert _store_state(tmp_path / "s") == before


def _del(key):
    return lambda name, d, attrs: name == "demo_2" and d.pop(key)


def _set(key, fn):
    return lambda name, d, attrs: name == "demo_2" and d.__setitem__(key, fn(d[key]))


def _nan_at_3(x):
    x = x.copy()
    x[3, 1] = np.nan
    return x


BAD_ROBOMIMIC = {
    "missing rewards": (_del("rewards"), r"demo_2.*'rewards'"),
    "missing obs key": (_del("obs/object"), r"demo_2/obs.*'object'"),
    "ragged obs": (_set("obs/object", lambda x: x[:3]), r"demo_2: 'object': has 3 steps"),
    "nan action": (_set("actions", _nan_at_3), r"demo_2: 'action': NaN or inf at step 3"),
    "bad dones": (_set("dones", lambda x: x + 2), r"demo_2: 'dones'"),
    "num_samples": (
        lambda name, d, attrs: name == "demo_2" and attrs.update(num_samples=9),
        r"demo_2: attrs num_samples is 9",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROBOMIMIC))
@pytest.mark.parametrize("append", [False, True])
def test_robomimic_bad_input_names_demo_and_leaves_store_unchanged(tmp_path, case, append):
    mutate, pattern = BAD_ROBOMIMIC[case]
    good, bad = tmp_path / "good.hdf5", tmp_path / "bad.hdf5"
    _write_robomimic(good)
    _write_robomimic(bad, mutate=mutate)
    dst = tmp_path / "store"
    if append:
        import_robomimic(good, dst)
    before = _store_state(dst)
    # demo_0 is fine and comes first: it must not be committed either.
    with pytest.raises(ValueError, match=pattern) as info:
        import_robomimic(bad, dst, append=append)
    assert "bad.hdf5" in str(info.value)
    assert _store_state(dst) == before
    if not append:
        assert not dst.exists()


def test_robomimic_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        import_robomimic(tmp_path / "nope.hdf5", tmp_path / "s")
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("other")
    with pytest.raises(ValueError, match="no 'data' group"):
        import_robomimic(tmp_path / "empty.hdf5", tmp_path / "s")
    src = tmp_path / "x.hdf5"
    _write_robomimic(src)
    with pytest.raises(ValueError, match="filter key 'mask/valid'"):
        import_robomimic(src, tmp_path / "s", filter_key="valid")


# ---------------------------------------------------------------- Minari


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def _make_minari(dataset_id, episodes, obs_space, act_space, env=None):
    """A local Minari dataset built with Minari's own API (nothing is downloaded)."""
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            id=i,
            observations=e["obs"],
            actions=e["actions"],
            rewards=e["rewards"],
            terminations=e["terminations"],
            truncations=e["truncations"],
            infos={},
        )
        for i, e in enumerate(episodes)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari warns about absent author/eval env
        return minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            env=env,
            observation_space=None if env else obs_space,
            action_space=None if env else act_space,
            algorithm_name="random",
            author="robot_rl tests",
            author_email="none",
            code_permalink="none",
            description="test dataset",
        )


def _dict_episodes(nan_in=None):
    rng = np.random.default_rng(0)
    out = []
    for i, (T, end) in enumerate([(3, "terminations"), (4, "truncations"), (2, None)]):
        e = {
            "obs": {
                "pos": rng.normal(size=(T + 1, 3)),
                "goal": {"xyz": rng.normal(size=(T + 1, 2)).astype(np.float32)},
                "count": rng.integers(0, 255, size=(T + 1, 2)).astype(np.uint8),
            },
            "actions": rng.uniform(-2, 2, size=(T, 2)).astype(np.float32),
            "rewards": rng.normal(size=T),
            "terminations": np.zeros(T, dtype=bool),
            "truncations": np.zeros(T, dtype=bool),
        }
        if end:
            e[end][-1] = True
        if nan_in == i:
            e["obs"]["pos"][1, 0] = np.nan
        out.append(e)
    return out


DICT_SPACE = gym.spaces.Dict(
    {
        "pos": gym.spaces.Box(-np.inf, np.inf, (3,), np.float64),
        "goal": gym.spaces.Dict({"xyz": gym.spaces.Box(-1, 1, (2,), np.float32)}),
        "count": gym.spaces.Box(0, 255, (2,), np.uint8),
    }
)
ACT_SPACE = gym.spaces.Box(-2, 2, (2,), np.float32)


def test_minari_dict_dataset_round_trip_exact(tmp_path, minari_root):
    episodes = _dict_episodes()
    _make_minari("test/toy-v0", episodes, DICT_SPACE, ACT_SPACE)
    # By id (local only); the recorded dataset has no env, so the rate must be given.
    with pytest.raises(ValueError, match="pass control_hz"):
        import_minari("test/toy-v0", tmp_path / "s")
    result = import_minari("test/toy-v0", tmp_path / "s", control_hz=10.0)
    assert result.episodes == [0, 1, 2] and result.n_steps == 9
    assert (result.action_low, result.action_high) == ([-2.0, -2.0], [2.0, 2.0])
    with open_store(tmp_path / "s") as s:
        assert s.obs_spec == {
            "count": ((2,), "uint8"),
            "goal.xyz": ((2,), "float32"),
            "pos": ((3,), "float32"),
        }
        assert "low=[-2.0, -2.0] high=[2.0, 2.0]" in s.attrs["units"]["action"]
        for i, e in enumerate(episodes):
            T = len(e["rewards"])
            ep = s.episode(i)
            # N+1 observations for N steps: rows are observations 0..N-1.
            np.testing.assert_array_equal(ep["pos"], e["obs"]["pos"][:T].astype(np.float32))
            np.testing.assert_array_equal(ep["goal.xyz"], e["obs"]["goal"]["xyz"][:T])
            np.testing.assert_array_equal(ep["count"], e["obs"]["count"][:T])
            np.testing.assert_array_equal(ep["action"], e["actions"])  # raw, not rescaled
            np.testing.assert_array_equal(ep["reward"], e["rewards"].astype(np.float32))
            np.testing.assert_array_equal(ep["terminated"], e["terminations"])
            # Episode 2 ends with neither flag: its last row becomes truncated.
            expected_trunc = e["truncations"].copy()
            expected_trunc[-1] |= not e["terminations"][-1]
            np.testing.assert_array_equal(ep["truncated"], expected_trunc)
            prov = s.provenance(i)
            assert prov.source == "import"
            assert prov.policy_id == f"minari:test/toy-v0#episode_{i}"
        # The terminal last row of episode 0 is a transition; truncated ends are not.
        assert TransitionSampler(s).n_transitions == (3 - 0) + (4 - 1) + (2 - 1)


def test_minari_box_dataset_by_path_with_env_rate(tmp_path, minari_root):
    rng = np.random.default_rng(1)
    episodes = [
        {
            "obs": rng.normal(size=(T + 1, 3)).astype(np.float32),
            "actions": rng.uniform(-2, 2, size=(T, 1)).astype(np.float32),
            "rewards": rng.normal(size=T),
            "terminations": np.zeros(T, dtype=bool),
            "truncations": np.r_[np.zeros(T - 1, dtype=bool), True],
        }
        for T in (5, 3)
    ]
    ds = _make_minari("pendulum/random-v0", episodes, None, None, env="Pendulum-v1")
    for i, source in enumerate([ds, minari_root / "pendulum" / "random-v0"]):
        r = import_minari(source, tmp_path / f"s{i}", max_episodes=1)
        assert r.episodes == [0]
        with open_store(tmp_path / f"s{i}") as s:
            assert s.obs_keys == ["observation"] and s.n_steps == 5
            assert s.control_hz == 20.0  # Pendulum's dt is 0.05 s
            assert s.attrs["robot"] == "Pendulum-v1" and s.provenance(0).robot_id.endswith(
                "Pendulum-v1"
            )
            np.testing.assert_array_equal(s.array("observation"), episodes[0]["obs"][:5])


def test_minari_bad_input_names_episode_and_writes_nothing(tmp_path, minari_root):
    _make_minari("test/nan-v0", _dict_episodes(nan_in=1), DICT_SPACE, ACT_SPACE)
    with pytest.raises(ValueError, match=r"test/nan-v0: episode 1: 'pos': NaN or inf at step 1"):
        import_minari("test/nan-v0", tmp_path / "s", control_hz=10.0)
    assert not (tmp_path / "s").exists()
    with pytest.raises(FileNotFoundError, match="never downloads"):
        import_minari("test/absent-v0", tmp_path / "s", control_hz=10.0)


# ---------------------------------------------------------------- Gymnasium rollouts


def test_fetch_rollouts_flatten_dict_obs_and_sample(tmp_path):
    result = record_gym_rollouts(
        "FetchReach-v4", tmp_path / "fetch", n_episodes=3, seed=5, max_episode_steps=6
    )
    assert result.episodes == [0, 1, 2] and result.n_steps == 18
    assert result.action_low is None  # Fetch actions are in [-1, 1]
    with open_store(tmp_path / "fetch") as s:
        assert set(s.obs_keys) == {"observation", "achieved_goal", "desired_goal"}
        assert s.obs_spec["observation"] == ((10,), "float32")
        assert s.obs_spec["desired_goal"] == ((3,), "float32")
        assert s.control_hz == 25.0 and s.attrs["task"] == "FetchReach-v4"
        for i in range(3):
            ep, prov = s.episode(i), s.provenance(i)
            assert list(ep["truncated"]) == [False] * 5 + [True]
            assert prov.robot_id == "gym:FetchReach-v4" and prov.policy_id == "gym:random"
            assert prov.success in (True, False)  # from info["is_success"]
            assert prov.start_time_unix_s is not None
        # The goal is fixed within an episode and differs between seeds.
        goals = [s.episode(i)["desired_goal"] for i in range(3)]
        assert all(np.ptp(g, axis=0).max() == 0 for g in goals)
        assert not np.array_equal(goals[0][0], goals[1][0])
        sampler = TransitionSampler(s, batch_size=32, obs_keys=["observation", "desired_goal"])
        batch = sampler.sample()
        assert batch.obs.shape == (32, 13) and batch.action.shape == (32, 4)
        assert sampler.n_transitions == 15
        first = s.episode(0)
    # Same seed, same episodes.
    record_gym_rollouts(
        "FetchReach-v4", tmp_path / "again", n_episodes=1, seed=5, max_episode_steps=6
    )
    with open_store(tmp_path / "again") as s:
        for key, value in s.episode(0).items():
            np.testing.assert_array_equal(value, first[key], err_msg=key)


def test_box_env_rollouts_with_policy_keep_raw_actions(tmp_path):
    env = gym.make("Pendulum-v1")

    def push(obs):
        return np.array([1.5], dtype=np.float32)

    result = record_gym_rollouts(env, tmp_path / "p", n_episodes=2, policy=push, seed=0)
    env.close()
    assert result.n_steps == 400  # Pendulum's own limit: 200 steps
    assert (result.action_low, result.action_high) == ([-2.0], [2.0])
    with open_store(tmp_path / "p") as s:
        assert s.obs_spec == {"observation": ((3,), "float32")}
        np.testing.assert_array_equal(s.array("action"), np.full((400, 1), 1.5, np.float32))
        assert s.provenance(0).policy_id == "gym:push"
        assert s.attrs["units"]["action"].startswith("raw source units")
        assert s.episode(0)["truncated"][-1] and not s.array("terminated").any()


def test_rollout_bad_episode_commits_nothing_of_it(tmp_path):
    calls = {"n": 0}

    def flaky(obs):
        calls["n"] += 1
        # Episode 0 is calls 1-4; episode 1 goes bad at its last step.
        return np.array([np.nan if calls["n"] == 8 else 0.1], dtype=np.float32)

    dst = tmp_path / "p"
    with pytest.raises(
        ValueError, match=r"Pendulum-v1: episode 1 \(seed 1\): 'action': NaN or inf at step 3"
    ):
        record_gym_rollouts(
            "Pendulum-v1", dst, n_episodes=3, policy=flaky, seed=0, max_episode_steps=4
        )
    with EpisodeStore.open(dst) as s:  # episode 0 stays, whole; nothing of episode 1
        assert (s.n_episodes, s.n_steps) == (1, 4) and s.validate().ok
    with pytest.raises(ValueError, match="n_episodes"):
        record_gym_rollouts("Pendulum-v1", tmp_path / "q", n_episodes=0)
    with pytest.raises(ValueError, match="not a Box"):
        record_gym_rollouts("CartPole-v1", tmp_path / "q", n_episodes=1)


# ---------------------------------------------------------------- CLI


def test_cli_import(tmp_path, capsys):
    from robot_rl.cli.data import main

    src = tmp_path / "lift.hdf5"
    _write_robomimic(src)
    assert main(["import", "robomimic", str(src), str(tmp_path / "a")]) == 0
    assert main(["import", "gym", "Pendulum-v1", str(tmp_path / "b"), "--n-episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "3 episodes" in out and "2 episodes" in out
    with open_store(tmp_path / "b") as s:
        assert s.n_episodes == 2
    assert main(["import", "robomimic", str(tmp_path / "none.hdf5"), str(tmp_path / "c")]) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"control_hz": 7.0}, "control_hz 7 vs the store's"),
        ({"robot": "ur5"}, "robot 'ur5' vs the store's"),
        ({"task": "stack"}, "task 'stack' vs the store's"),
    ],
)
def test_append_refuses_other_rate_robot_or_task(tmp_path, change, message):
    src = tmp_path / "lift.hdf5"
    _write_robomimic(src)
    import_robomimic(src, tmp_path / "s", obs_keys=["object"], max_episodes=1)
    before = _store_state(tmp_path / "s")
    with pytest.raises(ValueError, match=f"cannot append.*{message}"):
        import_robomimic(
            src, tmp_path / "s", obs_keys=["object"], max_episodes=1, append=True, **change
        )
    assert _store_state(tmp_path / "s") == before
