"""Bradley-Terry reward learning: the learned returns rank episodes like the true ones
despite flipped labels, training is seeded, and bad input gets a clear error."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from robot_rl.algos.rewards import (
    PreferenceConfig,
    add_synthetic_preferences,
    episode_returns,
    train_preference_model,
)
from robot_rl.algos.rewards.relabel import relabel, strip_rewards
from robot_rl.data.episode_store import EpisodeStore


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (no ties in these data)."""
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_preference_reward_ranks_episodes_like_the_true_reward(make_walk_store, tmp_path):
    # The benchmark in miniature: teacher with 10% flipped labels, rewards removed,
    # model trained on the store without rewards, store relabelled.
    store = make_walk_store()
    result = add_synthetic_preferences(store, 200, flip_prob=0.1, seed=1)
    assert 5 <= result.n_flipped <= 40
    true = episode_returns(store)
    store.close()
    strip_rewards(store.path, tmp_path / "bare")
    with EpisodeStore.open(tmp_path / "bare") as bare:
        model = train_preference_model(bare, PreferenceConfig(steps=200, ensemble_size=2))
    assert model.spec.training["metrics"]["train_accuracy"] > 0.8
    out = relabel(tmp_path / "bare", tmp_path / "learned", model)
    with EpisodeStore.open(out.path) as learned:
        rho = spearman(episode_returns(learned), true)
        assert rho > 0.8, rho
        learned_rewards = learned.array("reward")
    # By default the rewards keep the model's units (odds of preference) ...
    assert model.spec.reward_scale == 1.0
    # ... or come at unit per-step scale, whatever the utilities' raw size.
    with EpisodeStore.open(tmp_path / "bare") as bare:
        unit = train_preference_model(
            bare, PreferenceConfig(steps=200, ensemble_size=2, reward_units="unit_std")
        )
        with pytest.raises(ValueError, match="reward_units: expected one of"):
            train_preference_model(bare, PreferenceConfig(steps=1, reward_units="odds"))
    scale = unit.spec.reward_scale
    assert scale != 1.0
    assert 0.5 < float(np.std(learned_rewards)) * scale < 2.0


def test_training_is_seeded(make_walk_store):
    store = make_walk_store(n_episodes=12)
    add_synthetic_preferences(store, 20, seed=0)
    cfg = PreferenceConfig(steps=10, ensemble_size=2, hidden_sizes=[8])
    a = train_preference_model(store, cfg)
    b = train_preference_model(store, cfg)
    c = train_preference_model(store, PreferenceConfig(steps=10, ensemble_size=2, seed=1))
    assert a.model_id == b.model_id != c.model_id


def test_early_stopping_keeps_the_weights_of_the_best_held_out_check(make_walk_store):
    store = make_walk_store(n_episodes=30)
    add_synthetic_preferences(store, 120, flip_prob=0.2, seed=3)
    cfg = PreferenceConfig(steps=300, ensemble_size=2, hidden_sizes=[64, 64], eval_every=20)
    model = train_preference_model(store, cfg)
    metrics, held_out = (
        model.spec.training["metrics"],
        model.spec.training["validation_preferences"],
    )
    assert metrics["validation_pairs"] == len(held_out) == 12
    assert 0 <= metrics["best_step"] <= 300 and metrics["best_step"] % 20 == 0
    # The held-out loss recomputed from the returned weights is the recorded best.
    returns = episode_rewards_sum(model, store)
    prefs = [store.preferences()[i] for i in held_out]
    ids = {eid: i for i, eid in enumerate(store.episode_ids())}
    logit = np.array([returns[ids[p.episode_a]] - returns[ids[p.episode_b]] for p in prefs])
    target = np.array([{"a": 1.0, "b": 0.0, "equal": 0.5}[p.preferred] for p in prefs])
    bce = np.mean(np.logaddexp(0, logit) - target * logit)
    assert bce == pytest.approx(metrics["validation_loss"], rel=1e-4)
    # Without a held-out share every pair trains, for every step.
    full = train_preference_model(store, dataclasses.replace(cfg, validation_fraction=0.0))
    assert full.spec.training["metrics"]["best_step"] == 300
    assert full.spec.training["validation_preferences"] == []
    with pytest.raises(ValueError, match=r"validation_fraction: expected a share in \[0, 1\)"):
        train_preference_model(store, dataclasses.replace(cfg, validation_fraction=1.0))


def episode_rewards_sum(model, store: EpisodeStore) -> np.ndarray:
    """Each episode's learned return (float64 sum of the model's per-step rewards)."""
    bounds = map(store.episode_bounds, range(store.n_episodes))
    return np.array([model.store_rows(store, s, e).astype(np.float64).sum() for s, e in bounds])


def test_equal_preferences_and_r_of_s_a(make_walk_store):
    store = make_walk_store(n_episodes=6)
    ids = store.episode_ids()
    store.add_preference(ids[0], ids[1], "equal", "lab1")
    store.add_preference(ids[2], ids[3], "b", "lab1")
    model = train_preference_model(store, PreferenceConfig(steps=5, use_action=True))
    assert model.spec.use_action and model.spec.training["n_preferences"] == 2
    assert np.isfinite(model.store_rows(store, 0, store.n_steps)).all()


def test_no_preferences_is_a_clear_error(make_walk_store):
    store = make_walk_store(n_episodes=3)
    with pytest.raises(ValueError, match=r"no pairwise preferences.*label PATH --prefer"):
        train_preference_model(store)


def test_preference_of_an_unknown_episode_is_a_clear_error(make_walk_store):
    store = make_walk_store(n_episodes=3)
    ids = store.episode_ids()
    store.add_preference(ids[0], ids[1], "a", "lab1")
    path = store.path
    store.close()
    labels = path / "labels.json"
    doc = json.loads(labels.read_text())
    doc["preferences"].append({**doc["preferences"][0], "episode_b": "ghost"})
    labels.write_text(json.dumps(doc))
    with (
        EpisodeStore.open(path) as store,
        pytest.raises(ValueError, match=r"preferences\[1\] names episode_id 'ghost'"),
    ):
        train_preference_model(store)


def test_bad_settings_are_refused(make_walk_store):
    store = make_walk_store(n_episodes=3)
    store.add_preference(*store.episode_ids()[:2], "a", "lab1")
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        train_preference_model(store, PreferenceConfig(steps=0))
    with pytest.raises(ValueError, match=r"obs_keys: \['nope'\]"):
        train_preference_model(store, PreferenceConfig(obs_keys=["nope"]))


@pytest.mark.slow
def test_preference_reward_on_recorded_push_data(tmp_path):
    """The benchmark's pipeline on a small mixed push dataset from the sim."""
    from robot_rl.teleop.make_dataset import make_dataset

    make_dataset("push", "mixed", tmp_path / "push", n_episodes=40, seed=0)
    with EpisodeStore.open(tmp_path / "push", "a") as store:
        add_synthetic_preferences(store, 300, flip_prob=0.1, seed=0)
        true = episode_returns(store)
    strip_rewards(tmp_path / "push", tmp_path / "bare")
    with EpisodeStore.open(tmp_path / "bare") as bare:
        model = train_preference_model(bare)
    out = relabel(tmp_path / "bare", tmp_path / "learned", model)
    with EpisodeStore.open(out.path) as learned:
        assert learned.validate().ok
        assert spearman(episode_returns(learned), true) > 0.8
