"""One conformance test every registered offline algorithm passes (d3rlpy style).

Parametrized over ``ALGORITHMS``: a new algorithm is tested here as soon as it is
registered, and fails until it has an entry in ``FIXED_BATCH_CRITERIA``.
"""

import math
import shutil

import numpy as np
import pytest
import torch

from robot_rl.algos import (
    ALGORITHMS,
    NonFiniteError,
    OfflineTrainer,
    TrainerConfig,
    latest_checkpoint,
    seed_everything,
)
from robot_rl.algos.trainer import iter_checkpoints
from robot_rl.data.batch import MCTransitionBatch, TransitionBatch
from robot_rl.policies.artifact import PolicyManifest, load_policy, save_policy

OBS_DIM, ACTION_DIM = 5, 2

#: name -> [(metric, r)]: over updates on one fixed batch, the mean of the metric's last
#: 10 values must be below r times the mean of its first 10. Each metric is a loss the
#: algorithm minimizes on that batch (CQL's total includes a log-sum-exp floor, so its
#: TD part and its conservative gap are checked separately).
FIXED_BATCH_CRITERIA: dict[str, list[tuple[str, float]]] = {
    "bc": [("loss", 0.75)],
    "td3bc": [("critic_loss", 0.65)],
    "iql": [("critic_loss", 0.65), ("value_loss", 0.8)],
    "cql": [("td_loss", 0.85), ("cql_gap", 0.985)],
}


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


class Source:
    """Batches ``batch(1)``, ``batch(2)``, ...; checkpointable, so resumes draw the same."""

    def __init__(self, poison_at: int | None = None, field: str = "reward"):
        self.i = 0
        self.poison_at = poison_at
        self.field = field

    def sample(self) -> TransitionBatch:
        self.i += 1
        b = batch(self.i)
        if self.i == self.poison_at:
            bad = getattr(b, self.field).clone()
            bad.view(-1)[3] = float("nan")
            b = b._replace(**{self.field: bad})
        return b

    def state_dict(self) -> dict:
        return {"i": self.i}

    def load_state_dict(self, state: dict) -> None:
        self.i = state["i"]


def small(config_cls, **overrides):
    """The algorithm's default config with tiny networks, so the test stays fast."""
    return config_cls(hidden_sizes=(16, 16), **overrides)


def trainer_config(**overrides) -> TrainerConfig:
    return TrainerConfig(**{"progress": False, "device": "cpu", **overrides})


def all_tensors(algo) -> dict[str, torch.Tensor]:
    return algo.state_dict().tensors


@pytest.fixture(params=sorted(ALGORITHMS))
def algo_entry(request):
    return request.param, *ALGORITHMS[request.param]


def test_registry_names_match_classes(algo_entry):
    name, cls, _ = algo_entry
    assert cls.name == name


def strided(b: MCTransitionBatch) -> MCTransitionBatch:
    """The same batch laid out as the sampler gathers it on a GPU: every field a column
    view of one table (s, s', action, reward, terminated, MC return)."""
    scalars = [b.reward, b.terminated, b.mc_return]
    table = torch.cat([b.obs, b.next_obs, b.action, *(x[:, None] for x in scalars)], 1)
    o, a = b.obs.shape[1], b.action.shape[1]
    out = MCTransitionBatch(
        table[:, :o], table[:, 2 * o : 2 * o + a], table[:, 2 * o + a], table[:, o : 2 * o],
        table[:, 2 * o + a + 1], table[:, 2 * o + a + 2],
    )  # fmt: skip
    assert not any(t.is_contiguous() for t in out)
    return out


def test_strided_batch_fields_give_the_same_update(algo_entry):
    _, cls, config_cls = algo_entry
    # Cal-QL reads the MC returns too (a no-op field for the others).
    overrides = {"calibrated": True} if "calibrated" in config_cls.__dataclass_fields__ else {}
    b = batch(0)
    b = MCTransitionBatch(*b, mc_return=torch.randn(len(b.obs)))
    results = []
    for fields in (b, strided(b)):
        seed_everything(0)
        algo = cls(OBS_DIM, ACTION_DIM, small(config_cls, **overrides))
        metrics = [algo.update(fields, step) for step in range(3)]
        results.append((metrics, all_tensors(algo)))
    (m_a, t_a), (m_b, t_b) = results
    assert [{k: float(v) for k, v in m.items()} for m in m_a] == [
        {k: float(v) for k, v in m.items()} for m in m_b
    ]
    for key in t_a:
        torch.testing.assert_close(t_b[key], t_a[key], rtol=0, atol=0, msg=key)


def test_config_rejects_bad_values_with_a_clear_error(algo_entry):
    _, cls, config_cls = algo_entry
    with pytest.raises(ValueError, match="lr"):
        config_cls(lr=-1.0)
    with pytest.raises(ValueError, match="activation"):
        config_cls(activation="sigmoidish")
    with pytest.raises(ValueError, match="positive"):
        cls(OBS_DIM, ACTION_DIM, config_cls(hidden_sizes=(16, 0)))


def test_update_returns_finite_metrics_and_actor_is_bounded(algo_entry):
    _, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    metrics = algo.update(batch(0), 0)
    # Scalars: 0-dim tensors, left on the device for the trainer to read back in bulk.
    assert metrics and all(
        isinstance(v, float | torch.Tensor) and np.shape(v) == () and math.isfinite(v)
        for v in metrics.values()
    )
    out = algo.actor()(torch.randn(8, OBS_DIM) * 100)
    assert out.shape == (8, ACTION_DIM) and out.abs().max() <= 1
    # Deployed policies act deterministically, also in train mode.
    x = torch.randn(8, OBS_DIM)
    assert torch.equal(algo.actor()(x), algo.actor()(x))


def test_loss_falls_on_a_fixed_batch(algo_entry):
    name, cls, config_cls = algo_entry
    assert name in FIXED_BATCH_CRITERIA, f"add a fixed-batch criterion for {name!r}"
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls, lr=1e-3))
    fixed = batch(0, 64)
    history = [algo.update(fixed, step) for step in range(200)]
    for metric, ratio in FIXED_BATCH_CRITERIA[name]:
        values = [float(h[metric]) for h in history if metric in h]
        first, last = np.mean(values[:10]), np.mean(values[-10:])
        assert last < ratio * first, f"{name} {metric}: {first:.4g} -> {last:.4g}"


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
    # The RNG is the trainer's to checkpoint; give both the same for the stochastic parts.
    torch.manual_seed(7)
    a = algo.update(batch(3), 3)
    torch.manual_seed(7)
    b = clone.update(batch(3), 3)
    assert {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}
    x = torch.randn(4, OBS_DIM)
    assert torch.equal(algo.actor()(x), clone.actor()(x))


def test_checkpoint_load_and_resume_reproduce_the_run_exactly(algo_entry, tmp_path):
    _, cls, config_cls = algo_entry
    config = trainer_config(num_steps=6, checkpoint_every=3, keep_checkpoints=5)
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    OfflineTrainer(algo, Source(), config, tmp_path / "a").train()
    x = torch.randn(16, OBS_DIM)

    # Loading the last checkpoint into a fresh learner gives the same actions and state.
    seed_everything(1)
    loaded = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    OfflineTrainer(loaded, Source(), config).load_checkpoint(latest_checkpoint(tmp_path / "a"))
    with torch.no_grad():
        assert torch.equal(loaded.actor()(x), algo.actor()(x))
    expected = all_tensors(algo)
    assert all(torch.equal(v, expected[k]) for k, v in all_tensors(loaded).items())

    # Resuming from the middle checkpoint ends exactly where the uninterrupted run did.
    middle = iter_checkpoints(tmp_path / "a")[0]
    assert middle.name.endswith("3")
    shutil.copytree(middle, tmp_path / "b" / "checkpoints" / middle.name)
    seed_everything(2)
    resumed = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    OfflineTrainer(resumed, Source(), config, tmp_path / "b").train()
    assert all(torch.equal(v, expected[k]) for k, v in all_tensors(resumed).items())


def test_trains_and_saves_a_loadable_policy(algo_entry, tmp_path):
    name, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    OfflineTrainer(algo, Source(), trainer_config(num_steps=5)).train()
    manifest = PolicyManifest(name, ["state"], {"state": [OBS_DIM]}, ACTION_DIM)
    save_policy(tmp_path / "policy", algo.actor(), manifest)
    policy = load_policy(tmp_path / "policy")
    obs = np.random.default_rng(0).normal(size=(10, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        expected_one = algo.actor()(torch.from_numpy(obs[0])).numpy()
        expected = algo.actor()(torch.from_numpy(obs)).numpy()
    assert np.array_equal(policy.act({"state": obs[0]}), expected_one)
    assert np.array_equal(policy.act_batch(obs), expected)


@pytest.mark.parametrize("field", ["obs", "next_obs", "reward"])
def test_a_batch_with_nan_stops_training_with_a_named_error(algo_entry, field):
    _, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    trainer = OfflineTrainer(algo, Source(poison_at=3, field=field), trainer_config(num_steps=5))
    if field == "reward" and not cls.uses_rewards:
        trainer.train()  # a learner that never reads rewards trains on stores without them
        assert trainer.step == 5
        return
    with pytest.raises(NonFiniteError, match=rf"{field}.*step 2"):
        trainer.train()
    assert trainer.step == 2


def test_mixed_precision_updates_are_finite(algo_entry):
    _, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    history = OfflineTrainer(
        algo, Source(), trainer_config(num_steps=4, log_every=2, mixed_precision=True)
    ).train()
    assert history and all(math.isfinite(v) for entries in history.values() for _, v in entries)
    assert algo.actor()(torch.randn(3, OBS_DIM)).dtype == torch.float32


@pytest.mark.gpu
def test_trains_on_cuda(algo_entry):
    _, cls, config_cls = algo_entry
    seed_everything(0)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
    config = trainer_config(num_steps=4, device="cuda", mixed_precision=True)
    OfflineTrainer(algo, Source(), config).train()
    for module in algo.modules().values():
        assert all(t.is_cuda for t in module.state_dict().values())
    assert algo.actor()(torch.randn(3, OBS_DIM, device="cuda")).is_cuda


@pytest.mark.parametrize("sb3_algo", ["td3", "sac"])
def test_sb3_export_reproduces_actions(algo_entry, sb3_algo, tmp_path):
    # The export checks itself before writing; this loads it again with SB3's own loader
    # (which unpickles: only for files we made) and compares on fresh observations.
    from stable_baselines3 import SAC, TD3

    from robot_rl.policies.sb3_export import export_sb3

    name, cls, config_cls = algo_entry
    seed_everything(0)
    # SB3's actors are plain MLPs: an actor with LayerNorm (IQL's default) is refused
    # with a hint, and one without it exports.
    if config_cls().layer_norm:
        algo = cls(OBS_DIM, ACTION_DIM, small(config_cls))
        save_policy(
            tmp_path / "ln",
            algo.actor(),
            PolicyManifest(name, ["state"], {"state": [OBS_DIM]}, ACTION_DIM),
        )
        with pytest.raises(ValueError, match="layer_norm=false"):
            export_sb3(tmp_path / "ln", tmp_path / "ln.zip", algo=sb3_algo)
    algo = cls(OBS_DIM, ACTION_DIM, small(config_cls, layer_norm=False))
    OfflineTrainer(algo, Source(), trainer_config(num_steps=5)).train()
    manifest = PolicyManifest(name, ["state"], {"state": [OBS_DIM]}, ACTION_DIM)
    save_policy(tmp_path / "policy", algo.actor(), manifest)
    out = export_sb3(tmp_path / "policy", tmp_path / "policy.zip", algo=sb3_algo)
    model = {"td3": TD3, "sac": SAC}[sb3_algo].load(out.path, device="cpu")
    obs = np.random.default_rng(1).normal(size=(20, OBS_DIM)).astype(np.float32)
    sb3_actions, _ = model.predict({"state": obs}, deterministic=True)
    np.testing.assert_allclose(
        sb3_actions, load_policy(tmp_path / "policy").act_batch(obs), atol=1e-5
    )
