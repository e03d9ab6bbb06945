"""Tests of the shared offline trainer: resume, checkpoints, guards, logging, eval hook."""

import json
import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from robot_rl.algos.bc import BC, BCConfig
from robot_rl.algos.trainer import (
    NonFiniteError,
    OfflineAlgorithm,
    OfflineTrainer,
    TrainerConfig,
    adam,
    latest_checkpoint,
    resolve_device,
    seed_everything,
)
from robot_rl.data.batch import TransitionBatch

OBS_DIM, ACTION_DIM = 4, 2


class SyntheticSource:
    """In-memory transitions with its own RNG, checkpointable via state_dict()."""

    def __init__(self, batch_size: int = 32, seed: int = 0, nan_field: str | None = None):
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.nan_field = nan_field

    def sample(self) -> TransitionBatch:
        obs = self.rng.normal(size=(self.batch_size, OBS_DIM)).astype(np.float32)
        action = np.tanh(obs[:, :ACTION_DIM] - obs[:, ACTION_DIM:]).astype(np.float32)
        fields = {
            "obs": torch.from_numpy(obs),
            "action": torch.from_numpy(action),
            "reward": torch.zeros(self.batch_size),
            "next_obs": torch.from_numpy(obs.copy()),
            "terminated": torch.zeros(self.batch_size),
        }
        if self.nan_field is not None:
            fields[self.nan_field].view(-1)[0] = math.nan
        return TransitionBatch(**fields)

    def state_dict(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


def make_bc(seed: int = 0) -> BC:
    seed_everything(seed)
    return BC(OBS_DIM, ACTION_DIM, BCConfig(hidden_sizes=(16, 16), lr=1e-3))


def cfg(**overrides) -> TrainerConfig:
    base = dict(num_steps=40, log_every=10, progress=False, device="cpu", seed=7)
    base.update(overrides)
    return TrainerConfig(**base)


def params(algo: OfflineAlgorithm) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in algo.actor().state_dict().items()}


def test_resume_matches_an_uninterrupted_run_exactly(tmp_path):
    straight = make_bc()
    history_straight = OfflineTrainer(
        straight, SyntheticSource(), cfg(), tmp_path / "straight"
    ).train()

    first = make_bc()
    trainer = OfflineTrainer(first, SyntheticSource(), cfg(num_steps=20), tmp_path / "resumed")
    trainer.train()
    assert latest_checkpoint(tmp_path / "resumed").name == "step_000000020"
    at_20 = params(first)

    # A new process: different init, a fresh source; everything comes from the checkpoint.
    second = make_bc(seed=123)
    resumed = OfflineTrainer(second, SyntheticSource(seed=999), cfg(), tmp_path / "resumed")
    resumed.load_checkpoint(latest_checkpoint(tmp_path / "resumed"))
    assert resumed.step == 20
    assert all(torch.equal(at_20[k], v) for k, v in params(second).items())

    second = make_bc(seed=123)
    history_resumed = OfflineTrainer(
        second, SyntheticSource(seed=999), cfg(), tmp_path / "resumed"
    ).train()
    final_straight, final_resumed = params(straight), params(second)
    assert final_straight.keys() == final_resumed.keys()
    assert all(torch.equal(final_straight[k], final_resumed[k]) for k in final_straight)
    opt_a = straight.optimizer.state_dict()["state"]
    opt_b = second.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[i][key], opt_b[i][key]) for i in opt_a for key in opt_a[i])
    assert history_resumed["train/loss"] == history_straight["train/loss"]


def test_completed_run_resumes_without_more_updates(tmp_path):
    algo = make_bc()
    OfflineTrainer(algo, SyntheticSource(), cfg(num_steps=10), tmp_path).train()
    before = params(algo)
    again = make_bc(seed=5)
    history = OfflineTrainer(again, SyntheticSource(), cfg(num_steps=10), tmp_path).train()
    assert all(torch.equal(before[k], v) for k, v in params(again).items())
    assert [s for s, _ in history["train/loss"]] == [10]


def test_resume_refuses_a_different_algorithm_config(tmp_path):
    OfflineTrainer(make_bc(), SyntheticSource(), cfg(num_steps=10), tmp_path).train()
    seed_everything(0)
    other = BC(OBS_DIM, ACTION_DIM, BCConfig(hidden_sizes=(16, 16), lr=5e-4))
    with pytest.raises(ValueError, match=r"config differs .*\['lr'\]"):
        OfflineTrainer(other, SyntheticSource(), cfg(num_steps=20), tmp_path).train()


def test_resume_false_starts_over(tmp_path):
    OfflineTrainer(make_bc(), SyntheticSource(), cfg(num_steps=10), tmp_path).train()
    trainer = OfflineTrainer(make_bc(), SyntheticSource(), cfg(num_steps=5, resume=False), tmp_path)
    history = trainer.train()
    assert trainer.step == 5 and history["train/loss"][-1][0] == 5


def test_periodic_checkpoints_are_pruned_to_the_newest(tmp_path):
    config = cfg(num_steps=50, checkpoint_every=10, keep_checkpoints=2)
    OfflineTrainer(make_bc(), SyntheticSource(), config, tmp_path).train()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_000000040", "step_000000050"]
    meta = json.loads((tmp_path / "checkpoints" / names[-1] / "trainer.json").read_text())
    assert meta["step"] == 50 and meta["algorithm"] == "bc"
    assert (tmp_path / "checkpoints" / names[-1] / "state.safetensors").is_file()


@pytest.mark.parametrize("field", ["obs", "action", "next_obs", "terminated"])
def test_nan_batch_raises_naming_the_field(field):
    trainer = OfflineTrainer(make_bc(), SyntheticSource(nan_field=field), cfg(num_steps=3))
    with pytest.raises(
        ValueError, match=rf"batch field '{field}' has 1 NaN/inf value\(s\) at step 0"
    ):
        trainer.train()


def test_nan_rewards_pass_only_for_learners_that_ignore_rewards():
    # BC never reads rewards (stores without rewards give NaN there); an algorithm that
    # reads them must still be stopped.
    OfflineTrainer(make_bc(), SyntheticSource(nan_field="reward"), cfg(num_steps=3)).train()
    reader = make_bc()
    reader.uses_rewards = True
    trainer = OfflineTrainer(reader, SyntheticSource(nan_field="reward"), cfg(num_steps=3))
    with pytest.raises(ValueError, match=r"batch field 'reward' has 1 NaN/inf"):
        trainer.train()


def test_a_source_that_checked_its_data_once_is_not_checked_per_batch():
    source = SyntheticSource(nan_field="obs")
    source.checked_finite = True  # its claim: no NaN anywhere (here false, on purpose)
    # The trainer trusts it for batches; the metric check still catches what follows.
    with pytest.raises(ValueError, match="metric"):
        OfflineTrainer(make_bc(), source, cfg(num_steps=3)).train()


class DivergingAlgorithm(OfflineAlgorithm):
    """Returns a finite loss until ``diverge_at``, then inf (stands in for a blow-up)."""

    name: ClassVar[str] = "diverging"

    def __init__(self, diverge_at: int, as_tensor: bool = False) -> None:
        super().__init__()
        self.net = nn.Linear(OBS_DIM, ACTION_DIM)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
        self.diverge_at = diverge_at
        self.as_tensor = as_tensor
        self.seen_eval_mode: list[bool] = []

    def update(self, batch, step):
        loss = math.inf if step >= self.diverge_at else 1.0 + step
        return {"loss": torch.tensor(loss) if self.as_tensor else loss, "step": step}

    def actor(self):
        return self.net

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"net": self.opt}


@pytest.mark.parametrize("as_tensor", [False, True])
def test_non_finite_loss_raises_and_keeps_the_last_good_checkpoint(as_tensor, tmp_path):
    # Tensor metrics are read back only at log/checkpoint steps (here every 5), yet the
    # error names the step that diverged, and no checkpoint is written after it.
    algo = DivergingAlgorithm(diverge_at=12, as_tensor=as_tensor)
    config = cfg(num_steps=30, checkpoint_every=5, log_every=100)
    with pytest.raises(NonFiniteError, match="metric 'loss' is inf at step 12"):
        OfflineTrainer(algo, SyntheticSource(), config, tmp_path).train()
    assert latest_checkpoint(tmp_path).name == "step_000000010"


def test_tensor_and_float_metrics_are_logged_alike(tmp_path):
    # Window means of metrics read back in bulk: steps 0-9 then 10-19.
    history = OfflineTrainer(
        DivergingAlgorithm(diverge_at=99, as_tensor=True), SyntheticSource(), cfg(num_steps=20)
    ).train()
    assert history["train/loss"] == [(10, 5.5), (20, 15.5)]
    assert history["train/step"] == [(10, 4.5), (20, 14.5)]


def test_eval_hook_runs_in_eval_mode_and_is_logged(tmp_path):
    calls = []

    def eval_fn(step, algo):
        calls.append((step, algo.actor().training))
        return {"success": step / 100}

    history = OfflineTrainer(
        make_bc(), SyntheticSource(), cfg(num_steps=25, eval_every=10), tmp_path, eval_fn
    ).train()
    assert calls == [(10, False), (20, False), (25, False)]
    assert history["eval/success"] == [(10, 0.1), (20, 0.2), (25, 0.25)]
    assert [s for s, _ in history["train/loss"]] == [10, 20, 25]
    assert "time/steps_per_s" in history


def test_tensorboard_scalars_are_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    OfflineTrainer(make_bc(), SyntheticSource(), cfg(num_steps=20), tmp_path).train()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [10, 20]
    assert all(np.isfinite(e.value) for e in losses)


def test_no_log_dir_trains_without_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    algo = make_bc()
    before = params(algo)
    trainer = OfflineTrainer(algo, SyntheticSource(), cfg(num_steps=5))
    trainer.train()
    assert trainer.step == 5
    assert any(not torch.equal(before[k], v) for k, v in params(algo).items())
    assert list(tmp_path.iterdir()) == []


def test_a_non_namedtuple_batch_is_a_clear_type_error():
    class Bad:
        def sample(self):
            return {"obs": torch.zeros(2, OBS_DIM)}

    with pytest.raises(TypeError, match="expected a NamedTuple"):
        OfflineTrainer(make_bc(), Bad(), cfg(num_steps=1)).train()


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_trainer_config_is_validated():
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        TrainerConfig(num_steps=0)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        TrainerConfig(keep_checkpoints=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_resume_reaches_the_same_parameters(tmp_path):
    config = cfg(device=None, mixed_precision=True)
    straight = make_bc()
    OfflineTrainer(straight, SyntheticSource(), config, tmp_path / "a").train()
    assert next(straight.actor().parameters()).is_cuda
    OfflineTrainer(
        make_bc(),
        SyntheticSource(),
        cfg(num_steps=20, device=None, mixed_precision=True),
        tmp_path / "b",
    ).train()
    resumed = make_bc(seed=3)
    OfflineTrainer(resumed, SyntheticSource(seed=9), config, tmp_path / "b").train()
    # Close, not bitwise: some CUDA kernels are not run-to-run deterministic.
    torch.testing.assert_close(params(resumed), params(straight), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight_decay", [None, 0.01])
def test_adam_is_torch_adam_to_float_rounding(weight_decay):
    """Every learner's ``adam()`` is PyTorch's fused Adam (AdamW with weight decay): the
    same updates as the default implementation, within float32 rounding."""
    torch.manual_seed(0)
    ref_net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    net = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    net.load_state_dict(ref_net.state_dict())
    start = net[0].weight.detach().clone()
    opt = adam(net.parameters(), lr=1e-2, weight_decay=weight_decay)
    ref_cls = torch.optim.Adam if weight_decay is None else torch.optim.AdamW
    kw = {} if weight_decay is None else {"weight_decay": weight_decay}
    ref = ref_cls(ref_net.parameters(), lr=1e-2, **kw)
    assert type(opt) is ref_cls and opt.defaults["fused"]
    x, y = torch.randn(64, 5), torch.randn(64, 2)
    for _ in range(20):
        for model, optimizer in ((net, opt), (ref_net, ref)):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(net.parameters(), ref_net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert (net[0].weight - start).abs().max() > 1e-2  # and they did move


def test_a_checkpoint_of_a_non_fused_optimizer_resumes_fused(tmp_path):
    """Optimizer state saved before ``adam()`` was fused (param groups with ``fused:
    None``) loads into today's fused optimizer, which stays fused."""
    algo = make_bc()
    OfflineTrainer(algo, SyntheticSource(), cfg(num_steps=3)).train()
    state = algo.state_dict()
    for group in state.metadata["optimizers"]["actor"]["param_groups"]:
        group["fused"] = None
    resumed = make_bc(seed=1)
    resumed.load_state_dict(state)
    assert resumed.optimizers()["actor"].param_groups[0]["fused"] is True
    torch.testing.assert_close(params(resumed), params(algo), rtol=0, atol=0)
