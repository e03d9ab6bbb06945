"""The reward model artifact: save/load reproduces rewards exactly, the id is a content
hash that load verifies, nothing is pickled, and a model refuses a store it does not fit."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from robot_rl.algos.rewards import PreferenceConfig, load_reward_model, train_preference_model
from robot_rl.algos.rewards.model import MANIFEST_FILE, WEIGHTS_FILE, flat_obs
from robot_rl.data.episode_store import EpisodeStore

FAST = PreferenceConfig(steps=20, ensemble_size=2, hidden_sizes=[16])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, walk_store):
    """A small preference model (few steps) and the store it was trained on."""
    path = tmp_path_factory.mktemp("m") / "store"
    shutil.copytree(walk_store, path)
    with EpisodeStore.open(path, "a") as store:
        ids = store.episode_ids()
        for a, b in itertools.pairwise(ids):
            store.add_preference(a, b, "a", "lab1")
    with EpisodeStore.open(path) as store:
        return train_preference_model(store, FAST), path


def test_save_load_reproduces_rewards_and_id_exactly(trained, tmp_path):
    model, path = trained
    model.save(tmp_path / "m")
    loaded = load_reward_model(tmp_path / "m")
    assert loaded.model_id == model.model_id
    assert loaded.spec == model.spec
    with EpisodeStore.open(path) as store:
        np.testing.assert_array_equal(
            loaded.store_rows(store, 0, store.n_steps), model.store_rows(store, 0, store.n_steps)
        )
    doc = json.loads((tmp_path / "m" / MANIFEST_FILE).read_text())
    assert doc["model_id"] == model.model_id and doc["kind"] == "preference"
    assert doc["training"]["n_preferences"] == 59 and len(doc["training"]["dataset_hash"]) == 64
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(
        [WEIGHTS_FILE, MANIFEST_FILE]
    )


def test_model_id_is_a_content_hash_that_load_checks(trained, tmp_path):
    model, _ = trained
    model.save(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS_FILE
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.startswith("members"))
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match="does not match the recorded model_id"):
        load_reward_model(tmp_path / "m")
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", overwrite=True)
    assert load_reward_model(tmp_path / "m").model_id == model.model_id


def test_load_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-reward"):
        load_reward_model(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a reward model manifest"):
        load_reward_model(tmp_path)


def test_flattening_follows_obs_keys_order(trained):
    _, path = trained
    with EpisodeStore.open(path) as store:
        x = flat_obs(store, ["vel", "pos"], 0, 5)
        np.testing.assert_array_equal(x[:, :2], store.array("vel")[:5])
        np.testing.assert_array_equal(x[:, 2:], store.array("pos")[:5])


def test_model_refuses_a_store_with_other_keys(trained, make_walk_store):
    model, _ = trained
    store = make_walk_store("other", n_episodes=2)
    model.check_store(store)  # the same schema fits
    model.spec.obs_shapes = {**model.spec.obs_shapes, "pos": [3]}
    try:
        with pytest.raises(ValueError, match=r"obs key 'pos': model expects shape \(3,\)"):
            model.check_store(store)
    finally:
        model.spec.obs_shapes = {**model.spec.obs_shapes, "pos": [2]}
    other = EpisodeStore.create(
        store.path.parent / "x",
        obs_spec={"q": ((2,), "float32")},
        action_dim=3,
        control_hz=10.0,
        robot="panda",
        task="reach",
    )
    with pytest.raises(ValueError, match=r"'pos'.*missing.*action_dim: model expects 2"):
        model.check_store(other)


def test_state_rewards_follow_the_store_convention_of_the_next_state(walk_store):
    from robot_rl.algos.rewards.model import flat_obs, reward_obs
    from robot_rl.data.episode_store import EpisodeStore

    with EpisodeStore.open(walk_store) as store:
        s, e = store.episode_bounds(2)
        own = flat_obs(store, ["pos"], s, e)
        shifted = reward_obs(store, ["pos"], s, e, use_action=False)
        np.testing.assert_array_equal(shifted[:-1], own[1:])  # r(s_{t+1}) for reward[t]
        np.testing.assert_array_equal(shifted[-1], own[-1])  # no stored successor
        # An r(s, a) model scores the row's own state with its action.
        np.testing.assert_array_equal(reward_obs(store, ["pos"], s, e, use_action=True), own)
        np.testing.assert_array_equal(
            reward_obs(store, ["pos"], s, s + 1, use_action=False), own[:1]
        )
