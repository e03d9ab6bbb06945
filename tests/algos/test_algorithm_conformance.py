"""One conformance test every registered offline algorithm passes (d3rlpy style)."""

import math

import numpy as np
import pytest
import torch

from robot_rl.algos import ALGORITHMS, OfflineTrainer, TrainerConfig, seed_everything
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.artifact import PolicyManifest, load_policy, save_policy

OBS_DIM, ACTION_DIM = 5, 2


def batch(seed: int, n: int = 32) -> TransitionBatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS_DIM, generator=g)
    return TransitionBatch(
        obs=obs,
        action=torch.rand(n, ACTION_DIM, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=obs + 0.1 * torch.randn(n, OBS_DIM, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.1).float(),
    )


def small(config_cls):
    """The algorithm's default config with tiny networks, so the test stays fast."""
    return config_cls(hidden_sizes=(16, 16))


@pytest.fixture(params=sorted(ALGORITHMS))
def algo_entry(request):
    return request.param, *ALGORITHMS[request.param]


def test_registry_names_match_classes(algo_entry):
    name, cls, _ = algo_entry
    assert cls.name == name


def test_update_returns_finite_metrics_and_actor_is_bounded(algo_entry):
    _, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    metrics = algo.update(batch(0), 0)
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    out = algo.actor()(torch.randn(8, OBS_DIM) * 100)
    assert out.shape == (8, ACTION_DIM) and out.abs().max() <= 1


def test_state_dict_round_trip_continues_identically(algo_entry):
    _, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    for step in range(3):
        algo.update(batch(step), step)
    state = algo.state_dict()
    seed_everything(1)
    clone = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    clone.load_state_dict(state)
    a, b = algo.update(batch(3), 3), clone.update(batch(3), 3)
    assert a == b
    x = torch.randn(4, OBS_DIM)
    assert torch.equal(algo.actor()(x), clone.actor()(x))


def test_trains_and_saves_a_loadable_policy(algo_entry, tmp_path):
    name, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))

    class Source:
        def __init__(self):
            self.i = 0

        def sample(self):
            self.i += 1
            return batch(self.i)

    OfflineTrainer(algo, Source(), TrainerConfig(num_steps=5, progress=False, device="cpu")).train()
    manifest = PolicyManifest(name, ["state"], {"state": [OBS_DIM]}, ACTION_DIM)
    save_policy(tmp_path / "policy", algo.actor(), manifest)
    policy = load_policy(tmp_path / "policy")
    obs = np.random.default_rng(0).normal(size=OBS_DIM).astype(np.float32)
    with torch.no_grad():
        expected = algo.actor()(torch.from_numpy(obs)).numpy()
    assert np.array_equal(policy.act({"state": obs}), expected)
