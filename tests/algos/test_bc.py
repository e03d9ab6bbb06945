"""Tests of behaviour cloning: the loss falls, and it fits a known mapping."""

import numpy as np
import pytest
import torch

from robot_rl.algos.bc import BC, BCConfig
from robot_rl.algos.trainer import OfflineTrainer, TrainerConfig, seed_everything
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.normalization import Normalizer

OBS_DIM, ACTION_DIM = 6, 3
_W = np.random.default_rng(123).normal(size=(OBS_DIM, ACTION_DIM)).astype(np.float32) / 2


def expert(obs: np.ndarray) -> np.ndarray:
    """A smooth nonlinear expert with actions inside (-1, 1)."""
    return (0.9 * np.tanh(obs @ _W + 0.5 * np.sin(obs[:, :1]))).astype(np.float32)


def make_batch(obs: np.ndarray) -> TransitionBatch:
    n = len(obs)
    t = torch.from_numpy
    return TransitionBatch(t(obs), t(expert(obs)), torch.zeros(n), t(obs), torch.zeros(n))


class ExpertSource:
    """Fresh batches of expert transitions; observations far from zero mean/unit scale."""

    def __init__(self, batch_size: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.batch_size = batch_size

    def sample(self) -> TransitionBatch:
        obs = self.rng.normal(size=(self.batch_size, OBS_DIM)).astype(np.float32)
        return make_batch(obs)


def test_loss_falls_on_a_fixed_batch():
    seed_everything(0)
    algo = BC(OBS_DIM, ACTION_DIM, BCConfig(hidden_sizes=(32, 32), lr=1e-3))
    batch = ExpertSource(64).sample()
    losses = [algo.update(batch, step)["loss"] for step in range(150)]
    assert losses[-1] < 0.1 * losses[0]


def test_fits_a_nonlinear_mapping_on_held_out_inputs():
    seed_everything(0)
    algo = BC(OBS_DIM, ACTION_DIM, BCConfig(hidden_sizes=(64, 64), lr=3e-3))
    config = TrainerConfig(num_steps=600, log_every=100, progress=False, device="cpu")
    OfflineTrainer(algo, ExpertSource(128), config).train()
    test_obs = np.random.default_rng(999).normal(size=(500, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        pred = algo.actor()(torch.from_numpy(test_obs)).numpy()
    target = expert(test_obs)
    mse = float(np.mean((pred - target) ** 2))
    assert mse < 0.05 * float(np.var(target)), mse


def test_normalizer_lets_bc_fit_badly_scaled_observations():
    # Observations in the hundreds with a constant dim: the normalizer must handle both.
    scale = np.array([100.0, 50.0, 1.0, 200.0, 10.0, 0.0], np.float32)
    offset = np.array([500.0, -20.0, 0.0, 0.0, 3.0, 0.7], np.float32)
    rng = np.random.default_rng(0)

    class Scaled:
        def sample(self):
            z = rng.normal(size=(128, OBS_DIM)).astype(np.float32)
            z[:, 5] = 0.0  # the constant dim carries nothing the expert could use
            batch = make_batch(z)
            return batch._replace(obs=torch.from_numpy(z * scale + offset))

    def final_loss(normalizer: Normalizer) -> float:
        seed_everything(0)
        algo = BC(OBS_DIM, ACTION_DIM, BCConfig(hidden_sizes=(64, 64), lr=3e-3), normalizer)
        config = TrainerConfig(num_steps=300, log_every=50, progress=False)
        return OfflineTrainer(algo, Scaled(), config).train()["train/loss"][-1][1]

    normalized = final_loss(Normalizer.from_stats({"obs": {"mean": offset, "std": scale}}, ["obs"]))
    raw = final_loss(Normalizer.identity(OBS_DIM))
    assert normalized < 0.01
    assert raw > 10 * normalized


def test_grad_clipping_reports_the_norm_and_config_is_validated():
    seed_everything(0)
    algo = BC(OBS_DIM, ACTION_DIM, BCConfig(hidden_sizes=(8,), max_grad_norm=0.5))
    metrics = algo.update(ExpertSource(16).sample(), 0)
    assert set(metrics) == {"loss", "grad_norm"} and metrics["grad_norm"] > 0
    with pytest.raises(ValueError, match=r"algo\.activation='swish'"):
        BCConfig(activation="swish")
    with pytest.raises(ValueError, match=r"algo\.lr=-1"):
        BCConfig(lr=-1)
    with pytest.raises(ValueError, match="normalizer has 2 dims"):
        BC(OBS_DIM, ACTION_DIM, normalizer=Normalizer.identity(2))


def test_bf16_mixed_precision_still_learns():
    seed_everything(0)
    algo = BC(OBS_DIM, ACTION_DIM, BCConfig(hidden_sizes=(32, 32), lr=1e-3))
    algo.mixed_precision = True
    batch = ExpertSource(64).sample()
    losses = [algo.update(batch, step)["loss"] for step in range(150)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.2 * losses[0]
    # Parameters stay float32: autocast only changes the compute dtype.
    assert all(p.dtype == torch.float32 for p in algo.actor().parameters())
