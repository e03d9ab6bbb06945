"""Stores without rewards: the rewards-absent schema (round trip, validation, clear
errors) and samplers refusing it with the relabel hint. (Relabelling such a store is
tested in tests/algos/rewards/test_relabel.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from robot_rl.data.episode_store import EpisodeStore, NoRewardsError, StoreFormatError
from robot_rl.data.provenance import EpisodeProvenance, check_reward_source
from robot_rl.data.sampler import TransitionSampler, WindowSampler


def _no_reward(frames: dict) -> dict:
    return {k: v for k, v in frames.items() if k != "reward"}


def test_store_without_rewards_round_trips_and_validates(bare_store):
    path = bare_store.path
    bare_store.close()
    assert not (path / "data" / "reward").exists()
    assert not (path / "meta" / "stats" / "reward").exists()
    with EpisodeStore.open(path) as store:
        assert store.reward_source == "none" and not store.has_rewards
        assert store.schema.reward_source == "none"
        assert "reward" not in store.data_keys and "reward" not in store.episode(0)
        assert store.n_episodes == 3 and store.n_steps == 14
        assert store.validate().ok
        assert store.stats("action")["count"] == 14


def test_reading_rewards_of_a_store_without_them_says_relabel(bare_store):
    for read in (
        lambda: bare_store.array("reward"),
        lambda: bare_store.stats("reward"),
        lambda: bare_store.zarr_array("reward"),
        bare_store.require_rewards,
    ):
        with pytest.raises(NoRewardsError, match=r"has no rewards .*robot-rl-data relabel"):
            read()


def test_appending_a_reward_to_a_store_without_rewards_is_refused(bare_store, make_frames):
    n = bare_store.n_episodes
    with pytest.raises(ValueError, match=r"frames\['reward'\].*without rewards"):
        bare_store.append_episode(make_frames(4), EpisodeProvenance(source="teleop"))
    assert bare_store.n_episodes == n


def test_store_with_rewards_still_requires_them(new_store, make_frames, make_prov):
    store = new_store()
    assert store.reward_source == "recorded" and store.has_rewards
    with pytest.raises(ValueError, match=r"missing key\(s\) \['reward'\]"):
        store.append_episode(_no_reward(make_frames(3)), make_prov(0))


def test_bad_reward_source_is_refused(new_store, bare_store):
    with pytest.raises(ValueError, match="reward_source"):
        new_store("x", reward_source="learned:")
    path = bare_store.path
    bare_store.close()
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["reward_source"] = "guessed"
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreFormatError, match="reward_source"):
        EpisodeStore.open(path)


def test_reward_source_none_with_a_reward_array_is_a_contradiction(filled_store):
    path = filled_store.path
    filled_store.close()
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["reward_source"] = "none"
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreFormatError, match="contradicts"):
        EpisodeStore.open(path)


def test_store_without_reward_source_attribute_reads_as_recorded(filled_store):
    path = filled_store.path
    filled_store.close()
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["reward_source"]  # as stores written before the attribute
    meta.write_text(json.dumps(doc))
    with EpisodeStore.open(path) as store:
        assert store.reward_source == "recorded" and store.array("reward").shape == (14,)


def test_provenance_reward_source():
    prov = EpisodeProvenance(source="teleop")
    assert "reward_source" not in json.loads(prov.to_json())  # unchanged JSON by default
    prov.reward_source = "learned:abc"
    prov.check()
    assert EpisodeProvenance.from_json(prov.to_json()).reward_source == "learned:abc"
    prov.reward_source = "made-up"
    with pytest.raises(ValueError, match=r"provenance\.reward_source"):
        prov.check()
    assert check_reward_source("none") == "none"


# ---------------------------------------------------------------------------- samplers


def test_samplers_refuse_a_store_without_rewards_with_the_relabel_hint(bare_store):
    hint = r"store .* has no rewards \(reward source: none\); run `robot-rl-data relabel"
    with pytest.raises(NoRewardsError, match=hint):
        TransitionSampler(bare_store, batch_size=4)
    with pytest.raises(NoRewardsError, match=hint):
        WindowSampler(bare_store, 3, batch_size=4)
    with pytest.raises(NoRewardsError, match=hint):
        TransitionSampler(bare_store, batch_size=4, in_memory=False)


def test_sampler_without_rewards_for_learners_that_ignore_them(bare_store):
    # Behaviour cloning needs no rewards: it may opt out, and gets NaN (never zeros).
    s = TransitionSampler(bare_store, batch_size=8, require_rewards=False)
    batch = s.sample()
    assert torch.isnan(batch.reward).all() and torch.isfinite(batch.obs).all()
    w = WindowSampler(bare_store, 3, batch_size=2, require_rewards=False).sample()
    assert torch.isnan(w.reward).all()
    with pytest.raises(NoRewardsError):
        TransitionSampler(bare_store, require_rewards=False, in_memory=False)
