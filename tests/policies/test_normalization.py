"""Tests of the observation normalizer: stats order, std floor, clipping, save/load."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from robot_rl.policies.normalization import DEFAULT_STD_FLOOR, Normalizer


def test_from_stats_concatenates_keys_in_obs_keys_order_and_flattens():
    stats = {
        "b": {"mean": np.array([10.0]), "std": np.array([2.0]), "min": np.array([0.0])},
        "a": {"mean": np.array([[1.0, 2.0], [3.0, 4.0]]), "std": np.full((2, 2), 0.5)},
    }
    norm = Normalizer.from_stats(stats, ["a", "b"], shapes={"a": (2, 2), "b": (1,)})
    assert norm.dim == 5
    assert norm.mean.tolist() == [1.0, 2.0, 3.0, 4.0, 10.0]
    assert norm.std.tolist() == [0.5, 0.5, 0.5, 0.5, 2.0]
    x = torch.tensor([[1.5, 2.0, 3.0, 4.0, 14.0]])
    torch.testing.assert_close(norm(x), torch.tensor([[1.0, 0.0, 0.0, 0.0, 2.0]]))


def test_zero_variance_dims_stay_finite_and_are_floored_and_clipped():
    # A goal coordinate that never varied in the data: std 0.
    norm = Normalizer(mean=[0.3, 1.0], std=[0.0, 1e-9])
    assert norm.std.tolist() == pytest.approx([DEFAULT_STD_FLOOR, DEFAULT_STD_FLOOR])
    at_mean = norm(torch.tensor([0.3, 1.0]))
    assert torch.equal(at_mean, torch.zeros(2))
    off = norm(torch.tensor([0.4, -5.0]))
    assert torch.isfinite(off).all()
    assert off.tolist() == [10.0, -10.0]  # clipped at the default clip of 10


def test_clip_none_disables_clipping():
    norm = Normalizer(mean=[0.0], std=[1.0], clip=None)
    assert norm(torch.tensor([123.0])).item() == 123.0


def test_missing_key_and_size_mismatch_are_named():
    stats = {"joint_pos": {"mean": np.zeros(7), "std": np.ones(7)}}
    with pytest.raises(ValueError, match="'goal'"):
        Normalizer.from_stats(stats, ["joint_pos", "goal"])
    with pytest.raises(ValueError, match=r"'joint_pos'.*expected 6"):
        Normalizer.from_stats(stats, ["joint_pos"], shapes={"joint_pos": (6,)})
    with pytest.raises(ValueError, match="non-finite"):
        Normalizer(mean=[np.nan], std=[1.0])


def test_state_round_trips_through_safetensors(tmp_path):
    norm = Normalizer(mean=[1.0, -2.0, 0.5], std=[0.1, 3.0, 0.0], clip=4.0)
    path = tmp_path / "norm.safetensors"
    save_file(norm.state_dict(), str(path))
    restored = Normalizer.identity(3)
    restored.load_state_dict(load_file(str(path)))
    x = torch.randn(16, 3) * 5
    assert torch.equal(restored(x), norm(x))
    assert float(restored.clip) == 4.0
    torch.testing.assert_close(restored.unnormalize(torch.zeros(3)), norm.mean)


def test_clip_loaded_through_a_parent_module_applies_both_ways():
    """Loading any module that holds the normalizer sets its clip, which then bounds
    values from below too; so does setting the clip buffer by hand."""
    saved = torch.nn.Sequential(Normalizer(mean=[0.0], std=[1.0], clip=2.0))
    restored = torch.nn.Sequential(Normalizer.identity(1))
    restored.load_state_dict(saved.state_dict())
    assert restored(torch.tensor([[-50.0], [50.0]])).flatten().tolist() == [-2.0, 2.0]
    restored[0].clip.fill_(3.0)
    assert restored(torch.tensor([[-50.0], [50.0]])).flatten().tolist() == [-3.0, 3.0]
