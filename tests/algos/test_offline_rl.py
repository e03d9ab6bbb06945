"""Behaviour specific to TD3+BC, IQL and CQL/Cal-QL, their networks, and a toy problem
each of them must solve better than behaviour cloning."""

from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from robot_rl.algos import (
    BC,
    CQL,
    IQL,
    TD3BC,
    BCConfig,
    CQLConfig,
    IQLConfig,
    NonFiniteError,
    OfflineTrainer,
    TD3BCConfig,
    TrainerConfig,
    seed_everything,
)
from robot_rl.data.batch import TransitionBatch
from robot_rl.policies.network import DeterministicActor, GaussianActor, QEnsemble
from robot_rl.policies.normalization import Normalizer

OBS_DIM, ACTION_DIM = 5, 2


def batch(seed: int, n: int = 64) -> TransitionBatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, OBS_DIM, generator=g)
    return TransitionBatch(
        obs=obs,
        action=torch.rand(n, ACTION_DIM, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g),
        next_obs=obs + 0.1 * torch.randn(n, OBS_DIM, generator=g),
        terminated=(torch.rand(n, generator=g) < 0.1).float(),
    )


class MCBatch(NamedTuple):
    """What Cal-QL needs from the data layer: TransitionBatch plus ``mc_return``."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    mc_return: torch.Tensor  # (B,) discounted return-to-go of the episode from s


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# --- networks ------------------------------------------------------------------------


@pytest.mark.parametrize("batched", [False, True])
def test_q_ensemble_members_are_independent_linear_stacks(batched):
    torch.manual_seed(0)
    q = QEnsemble(OBS_DIM, ACTION_DIM, n=3, hidden_sizes=(8, 8))
    q.batched = batched
    obs, act = torch.randn(4, OBS_DIM), torch.rand(4, ACTION_DIM)
    out = q(obs, act)
    assert out.shape == (3, 4)
    x = torch.cat([obs, act], -1)
    linears = [m for m in q.net if hasattr(m, "weight")]
    for i in range(3):
        h = x
        for j, layer in enumerate(linears):
            h = h @ layer.weight[i] + layer.bias[i]
            h = torch.relu(h) if j < len(linears) - 1 else h
        torch.testing.assert_close(out[i], h.squeeze(-1))
        torch.testing.assert_close(q(obs, act, member=i), h.squeeze(-1))
    out[0].sum().backward()
    assert all(layer.weight.grad[1:].abs().sum() == 0 for layer in linears)


def test_q_ensemble_batched_and_per_member_paths_agree_with_layer_norm():
    torch.manual_seed(0)
    q = QEnsemble(OBS_DIM, ACTION_DIM, n=2, hidden_sizes=(8, 8), layer_norm=True)
    with torch.no_grad():
        for p in q.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # distinct LayerNorm affines per member
    obs, act = torch.randn(6, OBS_DIM), torch.rand(6, ACTION_DIM)
    outs, grads = [], []
    for batched in (False, True):
        q.batched = batched
        q.zero_grad()
        out = q(obs, act)
        out.pow(2).sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in q.parameters()])
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = GaussianActor(Normalizer.identity(3), 2, hidden_sizes=(16,))
    obs = torch.randn(2000, 3)
    with torch.no_grad():
        action, log_prob = actor.sample(obs)
        mean, log_std = actor.mean_log_std(obs)
    inside = (action.abs() < 0.99).all(-1)
    squashed = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = squashed.log_prob(action).sum(-1)
    torch.testing.assert_close(log_prob[inside], expected[inside], atol=2e-3, rtol=1e-4)
    # IQL's variant: a Gaussian centred on tanh(mean), finite at the action bounds.
    edge = torch.ones(2000, 2)
    expected = Normal(torch.tanh(mean), log_std.exp()).log_prob(edge).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, edge), expected)


def test_gaussian_actor_deploys_its_mean_as_a_plain_deterministic_actor():
    torch.manual_seed(0)
    actor = GaussianActor(Normalizer(np.ones(3), np.full(3, 2.0)), 2, hidden_sizes=(16, 16))
    obs = torch.randn(5, 3)
    deployed = actor.deterministic()
    assert type(deployed) is DeterministicActor
    mean, _ = actor.mean_log_std(actor.normalizer(obs))
    torch.testing.assert_close(deployed(obs), torch.tanh(mean))
    with torch.no_grad():
        next(actor.parameters()).add_(1.0)  # shared weights: the deployed actor follows
    mean, _ = actor.mean_log_std(actor.normalizer(obs))
    torch.testing.assert_close(deployed(obs), torch.tanh(mean))


# --- TD3+BC --------------------------------------------------------------------------


def test_td3bc_updates_actor_and_targets_only_every_policy_delay_steps():
    seed_everything(0)
    algo = TD3BC(OBS_DIM, ACTION_DIM, TD3BCConfig(hidden_sizes=(16, 16), policy_delay=2))
    algo.update(batch(0), 0)
    actor, critic = params(algo.policy), params(algo.critic)
    targets = params(algo.policy_target) + params(algo.critic_target)
    metrics = algo.update(batch(1), 1)
    assert set(metrics) == {"critic_loss"}
    assert same(actor, params(algo.policy)) and not same(critic, params(algo.critic))
    assert same(targets, params(algo.policy_target) + params(algo.critic_target))
    metrics = algo.update(batch(2), 2)
    assert {"actor_loss", "bc_loss", "q_mean"} <= set(metrics)
    assert not same(actor, params(algo.policy))
    # Polyak step: target' = target + tau (online - target).
    online = params(algo.policy) + params(algo.critic)
    for old, new, src in zip(
        targets, params(algo.policy_target) + params(algo.critic_target), online, strict=True
    ):
        torch.testing.assert_close(new, old + 0.005 * (src - old))


def test_td3bc_alpha_zero_is_behaviour_cloning():
    seed_everything(0)
    algo = TD3BC(OBS_DIM, ACTION_DIM, TD3BCConfig(hidden_sizes=(16, 16), alpha=0.0))
    metrics = algo.update(batch(0), 0)
    assert metrics["actor_loss"] == pytest.approx(metrics["bc_loss"])


# --- IQL -----------------------------------------------------------------------------


def one_state_bandit(n: int = 256) -> TransitionBatch:
    """One state, uniform actions, reward = first action dim, episodes of one step."""
    g = torch.Generator().manual_seed(0)
    obs = torch.zeros(n, OBS_DIM)
    action = torch.rand(n, ACTION_DIM, generator=g) * 2 - 1
    return TransitionBatch(obs, action, action[:, 0].clone(), obs, torch.ones(n))


def test_iql_value_is_an_upper_expectile_of_in_data_q():
    values = {}
    for expectile in (0.5, 0.9):
        seed_everything(0)
        config = IQLConfig(hidden_sizes=(32, 32), lr=3e-3, tau=0.05, expectile=expectile)
        algo = IQL(OBS_DIM, ACTION_DIM, config)
        data = one_state_bandit()
        for step in range(300):
            algo.update(data, step)
        with torch.no_grad():
            values[expectile] = float(algo.value(torch.zeros(1, OBS_DIM)))
    # Rewards are U(-1, 1): mean 0; the 0.9-expectile is about 0.5.
    assert abs(values[0.5]) < 0.15 and values[0.9] > 0.3, values


def test_iql_cosine_schedule_decays_the_actor_rate_over_the_run(tmp_path):
    seed_everything(0)
    algo = IQL(OBS_DIM, ACTION_DIM, IQLConfig(hidden_sizes=(16, 16)))
    source = type("S", (), {"sample": lambda self: batch(0)})()
    config = TrainerConfig(num_steps=10, progress=False, device="cpu")
    OfflineTrainer(algo, source, config, tmp_path).train()
    lr = algo.actor_optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(3e-4 * 0.5 * (1 + np.cos(np.pi * 9 / 10)))
    assert algo.critic_optimizer.param_groups[0]["lr"] == 3e-4

    seed_everything(0)
    constant = IQL(
        OBS_DIM, ACTION_DIM, IQLConfig(hidden_sizes=(16, 16), actor_lr_schedule="constant")
    )
    OfflineTrainer(constant, source, config).train()
    assert constant.actor_optimizer.param_groups[0]["lr"] == 3e-4


@pytest.mark.parametrize("actor", ["gaussian", "deterministic"])
def test_iql_actor_prefers_high_advantage_actions(actor):
    seed_everything(0)
    config = IQLConfig(hidden_sizes=(32, 32), lr=3e-3, tau=0.05, actor=actor)
    algo = IQL(OBS_DIM, ACTION_DIM, config)
    data = one_state_bandit()
    for step in range(300):
        algo.update(data, step)
    policy = algo.actor()
    assert type(policy) is DeterministicActor
    with torch.no_grad():
        action = policy(torch.zeros(1, OBS_DIM))[0]
    # The data's mean action is 0 in both dims; only the first dim is rewarded.
    assert action[0] > 0.3 and abs(action[1]) < 0.2, action


# --- CQL / Cal-QL --------------------------------------------------------------------


def q_data_and_ood(algo: CQL, data: TransitionBatch) -> tuple[float, float]:
    with torch.no_grad():
        obs = algo.policy.normalizer(data.obs)
        q_data = algo.critic(obs, data.action).mean()
        q_rand = algo.critic(obs, torch.rand_like(data.action) * 2 - 1).mean()
    return float(q_data), float(q_rand)


def test_cql_regularizer_pushes_q_down_off_the_data():
    gaps = {}
    for cql_alpha in (0.0, 5.0):
        seed_everything(0)
        algo = CQL(
            OBS_DIM, ACTION_DIM, CQLConfig(hidden_sizes=(32, 32), lr=1e-3, cql_alpha=cql_alpha)
        )
        data = batch(0)
        for step in range(150):
            algo.update(data, step)
        q_data, q_rand = q_data_and_ood(algo, data)
        gaps[cql_alpha] = q_data - q_rand
    assert gaps[5.0] > 0.5 and gaps[5.0] > gaps[0.0] + 0.5, gaps


def regularizer_push_on_policy_samples(importance_sample: bool) -> float:
    """Share of the regularizer's push-down (gradient on the sampled actions' Q) that
    lands on the policy's samples, for a policy saturated in every action dim."""
    seed_everything(0)
    config = CQLConfig(hidden_sizes=(16, 16), importance_sample=importance_sample)
    algo = CQL(OBS_DIM, ACTION_DIM, config)
    with torch.no_grad():  # mean far past tanh's knee, small std: samples at the bounds
        algo.policy.mean_actor.net[-1].bias.fill_(4.0)
        algo.policy.log_std_head.bias.fill_(-3.0)
    outputs = []

    def keep(module, inputs, output):
        output.retain_grad()
        outputs.append(output)

    algo.critic.register_forward_hook(keep)
    data = batch(0, n=32)
    algo.update(data, 0)
    grad = outputs[-1].grad  # the critic step's one forward: data, then b x 3n sampled
    b, n = 32, config.n_action_samples
    sampled = grad[:, b:].reshape(2, b, 3, n).abs().sum(dim=(0, 1, 3))  # uniform, s, s'
    return float(sampled[1:].sum() / sampled.sum())


def test_cql_without_importance_sampling_pushes_down_the_policys_own_actions():
    """With importance sampling, a saturated policy's samples (huge tanh density) get
    almost none of the push; without it they get about their share of the samples (2/3)."""
    assert regularizer_push_on_policy_samples(importance_sample=True) < 0.01
    assert regularizer_push_on_policy_samples(importance_sample=False) > 0.5


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cql_logs_how_the_critic_rates_the_policys_actions_against_the_data(sign):
    """With Q(s, a) = sign * sum(a) and a policy saturated at +1, the policy's samples
    sit about action_dim above (or below) the data's uniform actions."""

    class SumQ(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))

        def forward(self, obs, action):
            q = sign * action.sum(-1) + 0.0 * self.unused
            return torch.stack([q, q])

    seed_everything(0)
    algo = CQL(OBS_DIM, ACTION_DIM, CQLConfig(hidden_sizes=(16, 16)))
    with torch.no_grad():
        algo.policy.mean_actor.net[-1].bias.fill_(4.0)
        algo.policy.log_std_head.bias.fill_(-3.0)
    algo.critic, algo.critic_target = SumQ(), SumQ()
    metrics = algo.update(batch(0, n=256), 0)
    assert float(metrics["q_policy_minus_data"]) == pytest.approx(sign * ACTION_DIM, abs=0.2)


def test_cql_bc_warmup_fits_the_data_actions_then_hands_over_to_the_critic():
    """During the warm-up the actor's step does not depend on the critics; after it does."""

    def actor_after_one_step(step: int, critic_seed: int) -> list[torch.Tensor]:
        seed_everything(0)
        algo = CQL(OBS_DIM, ACTION_DIM, CQLConfig(hidden_sizes=(16, 16), bc_warmup_steps=5))
        torch.manual_seed(critic_seed)
        for p in algo.critic.parameters():
            p.data.normal_()
        torch.manual_seed(1)
        algo.update(batch(0), step)
        return params(algo.policy)

    assert same(actor_after_one_step(4, critic_seed=1), actor_after_one_step(4, critic_seed=2))
    assert not same(actor_after_one_step(5, critic_seed=1), actor_after_one_step(5, critic_seed=2))

    data = batch(0)
    errors = {}
    for warmup in (0, 10_000):
        seed_everything(0)
        config = CQLConfig(hidden_sizes=(32, 32), actor_lr=1e-3, bc_warmup_steps=warmup)
        algo = CQL(OBS_DIM, ACTION_DIM, config)
        for step in range(400):
            algo.update(data, step)
        with torch.no_grad():
            errors[warmup] = float((algo.policy(data.obs) - data.action).pow(2).mean())
    assert errors[10_000] < 0.5 * errors[0], errors


def test_cql_config_rejects_a_negative_warmup():
    with pytest.raises(ValueError, match="bc_warmup_steps=-1"):
        CQLConfig(bc_warmup_steps=-1)


def test_calql_without_mc_return_raises_a_clear_error():
    algo = CQL(OBS_DIM, ACTION_DIM, CQLConfig(hidden_sizes=(16, 16), calibrated=True))
    with pytest.raises(ValueError, match=r"mc_return.*calibrated=False"):
        algo.update(batch(0), 0)


def test_calql_keeps_q_values_up_to_the_monte_carlo_returns():
    q = {}
    for calibrated in (False, True):
        seed_everything(0)
        config = CQLConfig(hidden_sizes=(32, 32), lr=1e-3, calibrated=calibrated)
        algo = CQL(OBS_DIM, ACTION_DIM, config)
        data = MCBatch(*batch(0), mc_return=torch.full((64,), 5.0))
        for step in range(150):
            metrics = algo.update(data, step)
        q[calibrated] = q_data_and_ood(algo, data)[0]
    # Q of the policy's actions is below the Monte Carlo return of 5 everywhere: floored.
    assert metrics["bound_rate"] > 0.9
    assert q[True] > q[False] + 1.0, q


def test_calql_batches_go_through_the_trainer_and_its_nan_check():
    class Source:
        def __init__(self, poison: bool):
            self.poison = poison

        def sample(self):
            mc = torch.zeros(64)
            if self.poison:
                mc[5] = float("nan")
            return MCBatch(*batch(0), mc_return=mc)

    config = TrainerConfig(num_steps=3, log_every=1, progress=False, device="cpu")
    seed_everything(0)
    algo = CQL(OBS_DIM, ACTION_DIM, CQLConfig(hidden_sizes=(16, 16), calibrated=True))
    history = OfflineTrainer(algo, Source(poison=False), config).train()
    assert len(history["train/bound_rate"]) == 3
    with pytest.raises(NonFiniteError, match="mc_return"):
        OfflineTrainer(algo, Source(poison=True), config).train()


# --- a toy problem -------------------------------------------------------------------

TOY_OBS, TOY_ACT = 3, 2
_W = torch.tensor(np.random.default_rng(5).normal(size=(TOY_OBS, TOY_ACT)), dtype=torch.float32)


def best_action(obs: torch.Tensor) -> torch.Tensor:
    return 0.8 * torch.tanh(obs @ _W)


def toy_reward(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return -(action - best_action(obs)).pow(2).sum(-1)


class MixedQualityBandit:
    """One-step episodes; half the actions near the best one, half uniform noise.

    Behaviour cloning copies the mixture (about half-way to the best action); an offline
    RL method should pick out the good half using the reward.
    """

    def __init__(self, n: int = 128):
        self.g = torch.Generator().manual_seed(0)
        self.n = n

    def sample(self) -> TransitionBatch:
        g, n = self.g, self.n
        obs = torch.randn(n, TOY_OBS, generator=g)
        good = (best_action(obs) + 0.1 * torch.randn(n, TOY_ACT, generator=g)).clamp(-1, 1)
        noise = torch.rand(n, TOY_ACT, generator=g) * 2 - 1
        action = torch.where(torch.rand(n, 1, generator=g) < 0.5, good, noise)
        return TransitionBatch(obs, action, toy_reward(obs, action), obs, torch.ones(n))


def toy_return(cls, config) -> float:
    seed_everything(0)
    algo = cls(TOY_OBS, TOY_ACT, config)
    trainer_config = TrainerConfig(num_steps=400, log_every=400, progress=False, device="cpu")
    OfflineTrainer(algo, MixedQualityBandit(), trainer_config).train()
    obs = torch.randn(2000, TOY_OBS, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        return float(toy_reward(obs, algo.actor()(obs)).mean())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (TD3BC, TD3BCConfig(hidden_sizes=(64, 64), lr=1e-3)),
        (IQL, IQLConfig(hidden_sizes=(64, 64), lr=1e-3)),
        (CQL, CQLConfig(hidden_sizes=(64, 64), lr=1e-3, actor_lr=1e-3, cql_alpha=1.0)),
    ],
    ids=["td3bc", "iql", "cql"],
)
def test_offline_rl_beats_behaviour_cloning_on_mixed_quality_data(cls, config):
    bc = toy_return(BC, BCConfig(hidden_sizes=(64, 64), lr=1e-3))
    learned = toy_return(cls, config)
    # Returns are minus the squared distance to the best action: at most half BC's regret.
    assert learned > 0.5 * bc, (learned, bc)
