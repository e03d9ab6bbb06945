"""Benchmark dataset recipes: exact proportions, provenance, noise, sparse rewards,
determinism, overwrite refusal and the ``robot-rl-data make-dataset`` command.

The recorded stores use reach (short episodes, a stateless expert whose clean action can
be recomputed from the stored observations)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_rl.cli.data import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.sim.experts import make_expert
from robot_rl.teleop.make_dataset import (
    EXPERT,
    NOISY,
    RECIPES,
    Behaviour,
    PerturbedPolicy,
    episode_schedule,
    make_dataset,
    policy_id,
)

N_EPISODES = 8
SEED = 5


def _load(path):
    """Per-episode actions, observations and rewards, and the provenances."""
    with EpisodeStore.open(path) as store:
        episodes = list(store.iter_episodes())
        provs = [store.provenance(i) for i in range(store.n_episodes)]
    return episodes, provs


@pytest.fixture(scope="module")
def mixed_sparse(tmp_path_factory):
    path = tmp_path_factory.mktemp("md") / "reach_mixed_sparse.zarr"
    summary = make_dataset("reach", "mixed-sparse", path, n_episodes=N_EPISODES, seed=SEED)
    return path, summary


def test_recipes_are_fixed():
    # The recipes are the benchmark's definition; a change here changes every bar.
    assert (EXPERT.noise_std, EXPERT.random_action_prob) == (0.1, 0.0)
    assert (NOISY.noise_std, NOISY.random_action_prob) == (0.5, 0.3)
    assert set(RECIPES) == {"expert", "mixed", "expert-sparse", "mixed-sparse"}
    for name in ("expert", "mixed"):
        dense, sparse = RECIPES[name], RECIPES[f"{name}-sparse"]
        assert (dense.reward_type, sparse.reward_type) == ("dense", "sparse")
        assert dense.mix == sparse.mix
    assert RECIPES["expert"].mix == ((EXPERT, 100),)
    assert RECIPES["mixed"].mix == ((EXPERT, 30), (NOISY, 70))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 10, 15, 33, 1000])
def test_schedule_proportions_exact(n):
    schedule = episode_schedule(RECIPES["mixed"], n, seed=0)
    assert len(schedule) == n
    assert sum(b is EXPERT for b in schedule) == math.floor(0.3 * n + 0.5)
    assert sum(b is NOISY for b in schedule) == n - math.floor(0.3 * n + 0.5)
    assert all(b is EXPERT for b in episode_schedule(RECIPES["expert-sparse"], n, seed=0))


def test_schedule_positions_follow_the_seed():
    recipe = RECIPES["mixed"]
    a, b = episode_schedule(recipe, 40, seed=1), episode_schedule(recipe, 40, seed=2)
    assert episode_schedule(recipe, 40, seed=1) == a
    assert a != b  # same counts, other positions
    assert a[:12] != [EXPERT] * 12  # shuffled, not the experts first


class _Constant:
    """A policy that always asks for the same action and counts its calls."""

    def __init__(self, action):
        self.action = np.asarray(action, np.float32)
        self.calls = 0

    def reset(self):
        pass

    def act(self, obs):
        self.calls += 1
        return self.action


def test_perturbed_policy_noise_random_actions_and_clipping():
    n = 4000
    inner = _Constant([0.0, 0.0, 0.0, 0.0])
    noisy = PerturbedPolicy(inner, Behaviour("x", 0.0, 0.3), np.random.default_rng(0))
    acts = np.stack([noisy.act({}) for _ in range(n)])
    assert inner.calls == n  # the expert sees every step, even replaced ones
    replaced = np.any(acts != 0.0, axis=1)
    assert abs(replaced.mean() - 0.3) < 0.03
    # Replacements are uniform on [-1, 1].
    assert abs(acts[replaced].std() - 1 / math.sqrt(3)) < 0.03

    edge = PerturbedPolicy(_Constant([1.0, -1.0, 0.5, 0.0]), EXPERT, np.random.default_rng(0))
    acts = np.stack([edge.act({}) for _ in range(n)])
    assert acts.dtype == np.float32
    assert acts.min() >= -1.0 and acts.max() <= 1.0
    assert abs(acts[:, 2].std() - 0.1) < 0.01
    assert abs(acts[:, 2].mean() - 0.5) < 0.01


def test_provenance_records_behaviour_and_recipe(mixed_sparse):
    path, summary = mixed_sparse
    episodes, provs = _load(path)
    schedule = episode_schedule(RECIPES["mixed-sparse"], N_EPISODES, SEED)
    assert len(provs) == N_EPISODES == summary.n_episodes
    assert [p.policy_id for p in provs] == [
        policy_id("reach", b, RECIPES["mixed-sparse"]) for b in schedule
    ]
    assert provs[0].policy_id.startswith("scripted-expert:reach:sigma=")
    assert {p.policy_id for p in provs} == {
        "scripted-expert:reach:sigma=0.1,random_p=0,recipe=mixed-sparse",
        "scripted-expert:reach:sigma=0.5,random_p=0.3,recipe=mixed-sparse",
    }
    assert [p.reset_seed for p in provs] == [SEED + i for i in range(N_EPISODES)]
    assert len({p.config_hash for p in provs}) == 1 and provs[0].config_hash
    assert all(p.source == "scripted" for p in provs)
    assert summary.by_behaviour["expert"].n_episodes == 2  # round(0.3 * 8)
    assert summary.by_behaviour["noisy"].n_episodes == 6
    assert summary.n_steps == sum(len(ep["action"]) for ep in episodes)


def test_actions_in_range_and_noisy_episodes_differ(mixed_sparse):
    path, _ = mixed_sparse
    episodes, provs = _load(path)
    expert = make_expert("reach")  # stateless: its clean action follows from the obs
    residual = {"expert": [], "noisy": []}
    for ep, prov in zip(episodes, provs, strict=True):
        a = ep["action"]
        assert a.dtype == np.float32 and a.min() >= -1.0 and a.max() <= 1.0
        clean = np.stack(
            [
                np.clip(expert.act({"ee_pos": e, "goal": g}), -1, 1)
                for e, g in zip(ep["ee_pos"], ep["goal"], strict=True)
            ]
        )
        kind = "noisy" if "sigma=0.5" in prov.policy_id else "expert"
        residual[kind].append(np.abs(a - clean)[:, :3])
    expert_dev = np.concatenate(residual["expert"]).mean()
    noisy_dev = np.concatenate(residual["noisy"]).mean()
    # |N(0, 0.1)| averages 0.08; σ=0.5 noise and random actions several times more.
    assert 0.04 < expert_dev < 0.12
    assert noisy_dev > 0.3


def test_sparse_rewards_are_zero_or_one(mixed_sparse, tmp_path):
    path, _ = mixed_sparse
    episodes, provs = _load(path)
    rewards = np.concatenate([ep["reward"] for ep in episodes])
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    # Reward 1 on the success step that ends a successful episode.
    for ep, prov in zip(episodes, provs, strict=True):
        assert ep["reward"][-1] == float(bool(prov.success))

    make_dataset("reach", "expert", tmp_path / "dense.zarr", n_episodes=1, seed=0)
    (dense,), _ = _load(tmp_path / "dense.zarr")
    assert np.any((dense["reward"] != 0.0) & (dense["reward"] != 1.0))


def test_same_seed_same_data(mixed_sparse, tmp_path):
    path, _ = mixed_sparse
    again = tmp_path / "again.zarr"
    make_dataset("reach", "mixed-sparse", again, n_episodes=N_EPISODES, seed=SEED)
    (eps_a, provs_a), (eps_b, provs_b) = _load(path), _load(again)
    assert [p.policy_id for p in provs_a] == [p.policy_id for p in provs_b]
    assert [p.config_hash for p in provs_a] == [p.config_hash for p in provs_b]
    for ea, eb in zip(eps_a, eps_b, strict=True):
        assert ea.keys() == eb.keys()
        for key in ea:
            np.testing.assert_array_equal(ea[key], eb[key], err_msg=key)

    other = tmp_path / "other.zarr"
    make_dataset("reach", "mixed-sparse", other, n_episodes=N_EPISODES, seed=SEED + 1)
    eps_c, provs_c = _load(other)
    assert provs_c[0].config_hash != provs_a[0].config_hash
    assert not np.array_equal(eps_a[0]["action"], eps_c[0]["action"])


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "d.zarr"
    make_dataset("reach", "expert", out, n_episodes=2, seed=0)
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_dataset("reach", "expert", out, n_episodes=1, seed=0)
    with EpisodeStore.open(out) as store:
        assert store.n_episodes == 2  # untouched
    make_dataset("reach", "expert", out, n_episodes=1, seed=0, overwrite=True)
    with EpisodeStore.open(out) as store:
        assert store.n_episodes == 1


@pytest.mark.parametrize(
    ("task", "recipe", "n", "match"),
    [
        ("stack", "expert", 1, "task 'stack'"),
        ("reach", "noisy", 1, "recipe 'noisy'"),
        ("reach", "expert", 0, "episodes: expected an int >= 1"),
    ],
)
def test_bad_arguments(tmp_path, task, recipe, n, match):
    with pytest.raises(ValueError, match=match):
        make_dataset(task, recipe, tmp_path / "x.zarr", n_episodes=n, seed=0)
    assert not (tmp_path / "x.zarr").exists()


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "reach_expert_sparse.zarr"
    argv = ["make-dataset", "--task", "reach", "--recipe", "expert-sparse"]
    argv += ["--episodes", "2", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "wrote 2 episodes" in text and "expert" in text
    with EpisodeStore.open(out) as store:
        assert store.n_episodes == 2
        assert store.attrs["task"] == "reach"
        assert store.validate().ok
        assert set(np.unique(store.array("reward"))) <= {0.0, 1.0}
        assert store.provenance(1).policy_id == policy_id("reach", EXPERT, RECIPES["expert-sparse"])
        assert store.provenance(1).reset_seed == 4

    assert main(argv) == 2  # exists: refused
    assert "--overwrite" in capsys.readouterr().out
    assert main([*argv, "--overwrite", "--episodes", "1"]) == 0
    bad = [*argv[:5], "--episodes", "0", "--out", str(tmp_path / "none.zarr")]
    assert main(bad) == 2
    assert "expected an int >= 1" in capsys.readouterr().out
