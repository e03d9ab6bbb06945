"""Relabelling: strip_rewards and relabel writing valid new stores without touching the
source, and the CLI (stores without rewards themselves: tests/data/test_no_rewards.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.algos.rewards.model import RewardModel, RewardModelSpec
from robot_rl.algos.rewards.relabel import relabel, strip_rewards
from robot_rl.cli.data import main
from robot_rl.data.episode_store import EpisodeStore
from robot_rl.data.sampler import TransitionSampler
from robot_rl.policies.normalization import Normalizer


def _per_episode(model: RewardModel, store: EpisodeStore) -> np.ndarray:
    """The model's rewards of every row, computed episode by episode as relabel does
    (a matmul's rounding may depend on the batch size)."""
    return np.concatenate(
        [model.store_rows(store, *store.episode_bounds(i)) for i in range(store.n_episodes)]
    )


def _random_model(store: EpisodeStore, seed: int = 0, **kw) -> RewardModel:
    """An untrained reward model over the store's keys (enough to test plumbing)."""
    shapes = {k: list(store.obs_spec[k][0]) for k in store.obs_keys}
    spec = RewardModelSpec(
        kind="preference",
        obs_keys=list(store.obs_keys),
        obs_shapes=shapes,
        action_dim=store.action_dim,
        **kw,
    )
    dim = spec.obs_dim
    torch.manual_seed(seed)
    return RewardModel(spec, Normalizer(np.zeros(dim), np.ones(dim)))


# ---------------------------------------------------------------------------- strip / relabel


def test_strip_rewards_copies_everything_but_rewards(filled_store, tmp_path):
    filled_store.set_success_label(2, False, "lab1")
    filled_store.add_preference("ep0000", "ep0001", "b", "lab1")
    before = filled_store.content_hash()
    src = filled_store.path
    filled_store.close()
    result = strip_rewards(src, tmp_path / "stripped")
    assert result.reward_source == "none" and result.n_episodes == 3
    with EpisodeStore.open(src) as s, EpisodeStore.open(tmp_path / "stripped") as d:
        assert s.content_hash() == before  # the source is untouched
        assert d.validate().ok and not d.has_rewards
        assert d.episode_ids() == s.episode_ids()
        for i in range(3):
            got, want = d.episode(i), s.episode(i)
            assert set(got) == set(want) - {"reward"}
            for k in got:
                np.testing.assert_array_equal(got[k], want[k])
            assert d.provenance(i).reward_source == "none"
            assert d.provenance(i).success == s.provenance(i).success
        assert d.labels() == s.labels() and d.preferences() == s.preferences()


def test_relabel_writes_model_rewards_into_a_valid_new_store(bare_store, tmp_path):
    model = _random_model(bare_store)
    src = bare_store.path
    bare_store.close()
    with EpisodeStore.open(src) as s:
        before = s.content_hash()
        digests = [str(t) for t in s._digest_arr[:3]]
        expected = _per_episode(model, s)
    result = relabel(src, tmp_path / "relabelled", model)
    source = f"learned:{model.model_id}"
    assert result.reward_source == source
    with EpisodeStore.open(src) as s, EpisodeStore.open(result.path) as d:
        assert s.content_hash() == before and not s.has_rewards  # source untouched
        assert [str(t) for t in s._digest_arr[:3]] == digests
        assert d.validate().ok
        assert d.reward_source == source and d.attrs["reward_source"] == source
        assert all(d.provenance(i).reward_source == source for i in range(3))
        np.testing.assert_array_equal(d.array("reward"), expected)
        np.testing.assert_array_equal(d.array("joint_pos"), s.array("joint_pos"))
        assert d.stats("reward")["count"] == 14
        assert d.labels() == s.labels() and d.preferences() == s.preferences()
        assert d.provenance(1).success is True
        # The relabelled store trains: rewards reach the batches.
        sampler = TransitionSampler(d, batch_size=4, seed=0)
        rows = sampler.valid_rows[:4]
        np.testing.assert_allclose(sampler.gather(rows).reward.numpy(), expected[rows])


def test_relabel_takes_a_saved_model_directory(bare_store, tmp_path):
    model = _random_model(bare_store, seed=3)
    model.save(tmp_path / "model")
    src = bare_store.path
    bare_store.close()
    result = relabel(src, tmp_path / "out", tmp_path / "model")
    with EpisodeStore.open(result.path) as d, EpisodeStore.open(src) as s:
        np.testing.assert_array_equal(d.array("reward"), _per_episode(model, s))


def test_relabel_refuses_bad_input(bare_store, filled_store, tmp_path):
    model = _random_model(bare_store)
    src = bare_store.path
    bare_store.close()
    # A store that has rewards: only with replace_rewards.
    filled_store.close()
    with pytest.raises(ValueError, match=r"already has rewards.*replace_rewards"):
        relabel(filled_store.path, tmp_path / "a", model)
    out = relabel(filled_store.path, tmp_path / "a", model, replace_rewards=True)
    with EpisodeStore.open(out.path) as d:
        assert d.reward_source.startswith("learned:") and d.validate().ok
    # An existing output.
    with pytest.raises(FileExistsError):
        relabel(src, tmp_path / "a", model)
    # A model of other observation keys.
    other = _random_model(bare_store)
    other.spec.obs_keys = ["joint_pos", "gripper"]
    other.spec.obs_shapes = {"joint_pos": [3], "gripper": [1]}
    with pytest.raises(ValueError, match=r"does not fit store .*'gripper'.*missing"):
        relabel(src, tmp_path / "b", other)
    assert not (tmp_path / "b").exists()
    # Nothing half-written is left next to the outputs.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_train_reward_and_relabel(bare_store, tmp_path, capsys):
    src = str(bare_store.path)
    bare_store.close()
    model_dir = str(tmp_path / "model")
    argv = ["train-reward", src, "--kind", "preference", "--out", model_dir, "--steps", "5"]
    assert main(argv) == 0
    assert main(argv) == 2  # refuses to overwrite a model without --overwrite
    capsys.readouterr()
    argv += ["--overwrite", "--validation-fraction", "0"]
    assert main(argv) == 0 and "validation_pairs 0," in capsys.readouterr().out
    assert main([*argv[:-1], "1.5"]) == 2
    assert "validation_fraction: expected a share in [0, 1)" in capsys.readouterr().out
    out = str(tmp_path / "relabelled")
    assert main(["relabel", src, "--model", model_dir, "--out", out]) == 0
    assert "learned:" in capsys.readouterr().out
    assert main(["validate", out]) == 0
    assert main(["info", src]) == 0 and "reward source: none" in capsys.readouterr().out
    assert main(["stats", src]) == 0  # no reward row for a store without rewards
    # The success classifier needs successes and failures: a clear error otherwise.
    argv = ["train-reward", src, "--kind", "success", "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    assert "successful and failed episodes" in capsys.readouterr().out
