"""The offline-speed benchmark's plain baseline does the same work as robot_rl's updates,
so its ratio measures the trainer's overhead and not a different computation."""

import importlib.util
from pathlib import Path

import pytest
import torch

from robot_rl.algos import ALGORITHMS
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies import Normalizer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "offline_speed.py"


@pytest.fixture(scope="module")
def offline_speed():
    spec = importlib.util.spec_from_file_location("offline_speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(device: str, obs_dim: int = 19, action_dim: int = 4, b: int = 64) -> TransitionBatch:
    g = torch.Generator().manual_seed(0)
    terminated = (torch.rand(b, generator=g) < 0.1).float()
    fields = (
        torch.randn(b, obs_dim, generator=g) * 3 + 1,
        torch.rand(b, action_dim, generator=g) * 2 - 1,
        torch.randn(b, generator=g),
        torch.randn(b, obs_dim, generator=g) * 3 + 1,
        terminated,
    )
    return TransitionBatch(*(t.to(device) for t in fields))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", ["bc", "td3bc", "iql", "cql"])
def test_plain_update_computes_the_same_update(offline_speed, name, device):
    batch = _batch(device)
    obs_dim, action_dim = batch.obs.shape[1], batch.action.shape[1]
    # A normalizer that changes the observations, so the plain update (fed the batch
    # normalized) and robot_rl's (normalizing it itself) must agree on that too.
    normalizer = Normalizer(torch.full((obs_dim,), 1.0), torch.full((obs_dim,), 3.0))
    algo_cls, config_cls = ALGORITHMS[name]
    torch.manual_seed(0)
    learner = algo_cls(obs_dim, action_dim, config_cls(), normalizer).to(device)
    same = offline_speed.check_same_update(name, learner, batch)  # exits if not the same
    assert same["loss_max_rel_diff"] <= 1e-4 and same["weight_max_rel_diff"] <= 1e-3


def test_a_different_update_is_refused(offline_speed, monkeypatch):
    batch = _batch("cpu")
    algo_cls, config_cls = ALGORITHMS["cql"]
    learner = algo_cls(batch.obs.shape[1], batch.action.shape[1], config_cls())
    monkeypatch.setattr(offline_speed, "GAMMA", 0.9)  # the plain update's discount
    with pytest.raises(SystemExit, match="critic_loss at step 0"):
        offline_speed.check_same_update("cql", learner, batch)


def test_a_skipped_target_update_is_refused(offline_speed, monkeypatch):
    """Losses alone miss it over a few steps (the targets move by tau per step)."""
    batch = _batch("cpu")
    algo_cls, config_cls = ALGORITHMS["td3bc"]
    learner = algo_cls(batch.obs.shape[1], batch.action.shape[1], config_cls())
    polyak = offline_speed.polyak

    def polyak_critics_only(target, source):  # the actor target (a Sequential) stays put
        if not isinstance(target, torch.nn.Sequential):
            polyak(target, source)

    monkeypatch.setattr(offline_speed, "polyak", polyak_critics_only)
    with pytest.raises(SystemExit, match=r"actor_t\.\S+ is .* away .* moved"):
        offline_speed.check_same_update("td3bc", learner, batch)
