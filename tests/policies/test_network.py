"""Tests of the MLP builder and the deterministic tanh actor."""

import pytest
import torch
from torch import nn

from robot_rl.policies.network import DeterministicActor, build_actor, build_mlp
from robot_rl.policies.normalization import Normalizer


def test_build_mlp_layers_and_shapes():
    mlp = build_mlp(5, 2, hidden_sizes=(8, 4), activation="tanh", layer_norm=True)
    kinds = [type(m) for m in mlp]
    assert kinds == [nn.Linear, nn.LayerNorm, nn.Tanh, nn.Linear, nn.LayerNorm, nn.Tanh, nn.Linear]
    assert mlp(torch.zeros(3, 5)).shape == (3, 2)
    assert [type(m) for m in build_mlp(5, 2, hidden_sizes=())] == [nn.Linear]


def test_build_mlp_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        build_mlp(3, 1, activation="swish")
    with pytest.raises(ValueError, match="positive"):
        build_mlp(3, 1, hidden_sizes=(0,))


def test_actor_outputs_are_in_unit_box_and_use_the_normalizer():
    torch.manual_seed(0)
    norm = Normalizer(mean=[100.0, -50.0, 0.0], std=[10.0, 5.0, 1.0])
    actor = DeterministicActor(norm, action_dim=2, hidden_sizes=(16,))
    out = actor(torch.randn(64, 3) * 1e4)
    assert out.shape == (64, 2)
    assert out.abs().max() <= 1.0
    # The same normalized input gives the same action: the normalizer is inside.
    raw = torch.tensor([[110.0, -45.0, 1.0]])
    plain = torch.tanh(actor.net(torch.tensor([[1.0, 1.0, 1.0]])))
    torch.testing.assert_close(actor(raw), plain)


def test_architecture_rebuilds_an_identical_module():
    torch.manual_seed(0)
    actor = DeterministicActor(Normalizer([1.0, 2.0], [3.0, 4.0]), 3, (8, 8), "elu", True)
    rebuilt = build_actor(actor.architecture())
    rebuilt.load_state_dict(actor.state_dict())
    x = torch.randn(5, 2)
    assert torch.equal(rebuilt(x), actor(x))
    with pytest.raises(ValueError, match="unknown actor type 'Transformer'"):
        build_actor({"type": "Transformer"})
    with pytest.raises(ValueError, match="lacks field 'activation'"):
        arch = actor.architecture()
        del arch["activation"]
        build_actor(arch)


def test_actor_traces_as_one_graph_for_torch_compile():
    # fullgraph=True fails on any graph break; the eager backend keeps the test fast
    # (no C++ compile) while still checking what inductor would be handed.
    torch.manual_seed(0)
    actor = DeterministicActor(Normalizer([0.0] * 5, [0.0, 1, 2, 3, 4]), 2, (16, 16))
    compiled = torch.compile(actor, fullgraph=True, backend="eager")
    x = torch.randn(3, 5)
    assert torch.equal(compiled(x), actor(x))
