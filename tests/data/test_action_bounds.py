"""Stores whose actions are not in [-1, 1]: the bounds learners map to [-1, 1], the
sampler's batches, and a policy trained on such a store acting in the store's units."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.algos.pretrain import pretrain
from robot_rl.config import BCConfig, TrainConfig
from robot_rl.data.action_bounds import action_unit, recorded_action_bounds, store_action_bounds
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.data.sampler import TransitionSampler
from robot_rl.policies.artifact import load_policy


def make_store(path, actions_of, *, bounds=None, units=None, n_episodes=4, T=25, seed=0):
    """A store with a 2-dim obs ``x`` and actions ``actions_of(x)``; ``bounds`` are
    recorded in ``units["action"]`` as an importer records them."""
    unit = action_unit(bounds)
    units = dict(units or {}, **({"action": unit} if unit else {}))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n_episodes, T, 2)).astype(np.float32)
    action_dim = np.asarray(actions_of(x[0])).shape[-1]
    with EpisodeStore.create(
        path,
        obs_spec={"x": ((2,), "float32")},
        action_dim=action_dim,
        control_hz=20.0,
        robot="toy",
        task="toy",
        units=units,
    ) as store:
        for i in range(n_episodes):
            store.append_episode(
                {
                    "x": x[i],
                    "action": np.asarray(actions_of(x[i]), np.float32),
                    "reward": np.zeros(T, np.float32),
                    "terminated": np.zeros(T, bool),
                    "truncated": np.eye(1, T, T - 1, dtype=bool)[0],
                },
                EpisodeProvenance(source="import"),
            )
    return EpisodeStore.open(path)


def test_normalized_actions_need_no_bounds(tmp_path):
    with make_store(tmp_path / "s", lambda x: 0.9 * np.tanh(x)) as store:
        low, high = store_action_bounds(store)
        assert recorded_action_bounds(store) is None
        np.testing.assert_array_equal(low, [-1, -1])
        np.testing.assert_array_equal(high, [1, 1])
        sampler = TransitionSampler(store, batch_size=16, action_bounds=(low, high))
        rows = sampler.valid_rows[:16]
        np.testing.assert_array_equal(
            sampler.gather(rows).action.numpy(), store.array("action")[rows]
        )


def test_recorded_bounds_map_the_actions_to_unit_range(tmp_path):
    bounds = ([-2.0, 0.0], [2.0, 10.0])
    with make_store(
        tmp_path / "s", lambda x: np.c_[2 * x[:, 0], 5 + 5 * x[:, 1]], bounds=bounds
    ) as s:
        low, high = store_action_bounds(s)
        np.testing.assert_array_equal(low, bounds[0])
        np.testing.assert_array_equal(high, bounds[1])
        rows = TransitionSampler(s, batch_size=8).valid_rows[:20]
        batch = TransitionSampler(s, batch_size=8, action_bounds=(low, high)).gather(rows)
        raw = s.array("action")[rows]
        expected = np.c_[raw[:, 0] / 2.0, (raw[:, 1] - 5.0) / 5.0]
        np.testing.assert_allclose(batch.action.numpy(), expected, atol=1e-6)
        # Out of core, through the row cache, the batches are the same.
        cached = TransitionSampler(
            s, batch_size=8, action_bounds=(low, high), in_memory=False, cache_dir=tmp_path / "c"
        )
        np.testing.assert_array_equal(cached.gather(rows).action.numpy(), batch.action.numpy())


def test_without_recorded_bounds_the_data_range_is_used(tmp_path):
    # Dim 0 spans [-3, 3]-ish, dim 1 never varies: +-1 around its value.
    with make_store(tmp_path / "s", lambda x: np.c_[3 * x[:, 0], np.full(len(x), 4.0)]) as s:
        low, high = store_action_bounds(s)
        actions = s.array("action")
        assert low[0] == actions[:, 0].min() and high[0] == actions[:, 0].max()
        np.testing.assert_array_equal([low[1], high[1]], [3.0, 5.0])


def test_infinite_recorded_bounds_fall_back_to_the_data(tmp_path):
    bounds = ([-np.inf, -1.0], [np.inf, 1.0])
    with make_store(tmp_path / "s", lambda x: np.c_[7 * x[:, 0], x[:, 1]], bounds=bounds) as s:
        low, high = store_action_bounds(s)
        actions = s.array("action")
        np.testing.assert_array_equal(low, [actions[:, 0].min(), -1.0])
        np.testing.assert_array_equal(high, [actions[:, 0].max(), 1.0])


def test_actions_outside_the_recorded_bounds_are_named(tmp_path):
    bounds = ([-1.0, -1.0], [1.0, 1.0 + 1e-3])
    s = make_store(tmp_path / "s", lambda x: np.c_[x[:, 0], 3 * x[:, 1]], bounds=bounds)
    with s, pytest.raises(ValueError, match=r"actions of dim 1 span .* outside the bounds"):
        store_action_bounds(s)


@pytest.mark.parametrize(
    "text, match",
    [
        ("raw source units; bounds low=[a, b] high=[1.0, 2.0]", "not numbers"),
        ("raw source units; bounds low=[-1.0] high=[1.0]", "low < high for each of the 2"),
        ("raw source units; bounds low=[1.0, 1.0] high=[1.0, 2.0]", "low < high"),
    ],
)
def test_unreadable_recorded_bounds_are_named(tmp_path, text, match):
    s = make_store(tmp_path / "s", lambda x: x, units={"action": text})
    with s, pytest.raises(ValueError, match=match):
        store_action_bounds(s)


def test_sampler_refuses_bounds_of_the_wrong_size(tmp_path):
    s = make_store(tmp_path / "s", lambda x: x)
    with s, pytest.raises(ValueError, match="action_bounds: expected low < high for each of"):
        TransitionSampler(s, action_bounds=(-np.ones(3), np.ones(3)))


def test_a_policy_trained_on_raw_actions_acts_in_raw_units(tmp_path):
    """BC on actions in [0, 10] x [-2, 2]: the manifest records the bounds, and the
    loaded policy's actions come back in those units, close to the data's."""
    bounds = ([0.0, -2.0], [10.0, 2.0])

    def expert(x):
        return np.c_[5.0 + 4.0 * x[:, 0], 1.5 * x[:, 1]]

    with make_store(tmp_path / "s", expert, bounds=bounds, n_episodes=8) as store:
        train = TrainConfig(steps=600, device="cpu")
        result = pretrain(
            store, BCConfig(hidden_sizes=(64, 64)), tmp_path / "run", train=train, progress=False
        )
    policy = load_policy(result.policy_dir)
    assert (policy.manifest.action_low, policy.manifest.action_high) == bounds
    x = np.random.default_rng(1).uniform(-0.9, 0.9, (200, 2)).astype(np.float32)
    actions = policy.act({"x": x})
    assert actions[:, 0].max() > 8.0  # far outside what [-1, 1] could give
    np.testing.assert_allclose(actions, expert(x), atol=0.5)
