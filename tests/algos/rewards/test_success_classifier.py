"""Success classifier: its reward separates successful from failed episodes, labels in
labels.json override recorded outcomes, and missing labels get a clear error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from robot_rl.algos.rewards import SuccessConfig, train_success_classifier
from robot_rl.algos.rewards.model import flat_obs
from robot_rl.algos.rewards.success import episode_success_labels

FAST = SuccessConfig(steps=150)


def _final_rewards(model, store) -> np.ndarray:
    """Reward of each episode's last step."""
    return np.array(
        [model.store_rows(store, e - 1, e)[0] for e in store.episode_ends], dtype=np.float64
    )


def test_success_reward_separates_successes_from_failures(make_walk_store):
    store = make_walk_store(reward_source="none")  # needs no rewards
    labels = episode_success_labels(store)
    success = np.array([labels[i] for i in range(store.n_episodes)])
    assert 5 <= success.sum() <= store.n_episodes - 5
    model = train_success_classifier(store, FAST)
    assert model.spec.output == "log_prob" and model.spec.kind == "success"
    final = _final_rewards(model, store)
    assert (final <= 0).all()  # log-probabilities
    # Every successful end scores above every failed one but a few (AUC > 0.95).
    auc = (final[success][:, None] > final[~success][None, :]).mean()
    assert auc > 0.95, auc
    assert model.spec.training["metrics"]["train_balanced_accuracy"] > 0.9


def test_labels_override_recorded_success_and_labels_only(make_walk_store):
    store = make_walk_store(n_episodes=10)
    recorded = episode_success_labels(store)
    store.set_success_label(0, not recorded[0], "lab1")
    store.set_success_label(1, None, "lab1")  # withdrawn: unknown, left out
    merged = episode_success_labels(store)
    assert merged[0] is (not recorded[0]) and 1 not in merged and len(merged) == 9
    assert episode_success_labels(store, labels_only=True) == {0: not recorded[0]}


def test_one_class_only_is_a_clear_error(make_walk_store):
    store = make_walk_store(n_episodes=10)
    for i in range(10):
        store.set_success_label(i, True, "lab1")
    with pytest.raises(ValueError, match=r"successful and failed episodes.*10 success"):
        train_success_classifier(store, FAST)
    with pytest.raises(ValueError, match="output"):
        train_success_classifier(store, SuccessConfig(output="raw"))


def test_prob_output_is_a_probability(make_walk_store):
    store = make_walk_store(n_episodes=20)
    model = train_success_classifier(store, SuccessConfig(steps=20, output="prob"))
    r = model.store_rows(store, 0, store.n_steps)
    assert ((r >= 0) & (r <= 1)).all()


def test_early_stopping_holds_out_episodes_of_both_classes_and_keeps_the_best(make_walk_store):
    store = make_walk_store(reward_source="none")
    recorded = episode_success_labels(store)
    for i in range(0, store.n_episodes, 6):  # wrong labels: the fit to them overfits
        store.set_success_label(i, not recorded[i], "lab1")
    labels = episode_success_labels(store)
    cfg = SuccessConfig(steps=300, eval_every=20, output="prob", validation_fraction=0.2)
    model = train_success_classifier(store, cfg)
    held_out = model.spec.training["validation_episodes"]
    metrics = model.spec.training["metrics"]
    assert metrics["n_validation_episodes"] == len(held_out)
    n_success = sum(labels[i] for i in held_out)
    assert n_success >= 2 and len(held_out) - n_success >= 2
    assert 0 <= metrics["validation_balanced_accuracy"] <= 1
    assert metrics["best_step"] % 20 == 0 and metrics["best_step"] < 300  # stopped early
    # The balanced held-out loss recomputed from the returned weights is the recorded best.
    losses = {True: [], False: []}
    for i in held_out:
        s, e = store.episode_bounds(i)
        if labels[i]:
            s = max(s, e - cfg.positive_steps)
        p = model.predict(flat_obs(store, model.spec.obs_keys, s, e)).astype(np.float64)
        losses[labels[i]].append(-np.log(p) if labels[i] else -np.log1p(-p))
    bce = 0.5 * (np.concatenate(losses[True]).mean() + np.concatenate(losses[False]).mean())
    assert bce == pytest.approx(metrics["validation_loss"], rel=1e-3)
    # No held-out share: every labelled episode trains, for every step.
    full = train_success_classifier(store, dataclasses.replace(cfg, validation_fraction=0.0))
    assert full.spec.training["validation_episodes"] == []
    assert full.spec.training["metrics"]["best_step"] == 300
    with pytest.raises(ValueError, match=r"validation_fraction: expected a share in \[0, 1\)"):
        train_success_classifier(store, dataclasses.replace(cfg, validation_fraction=1.5))
