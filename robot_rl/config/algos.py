"""Offline learning settings: each algorithm's hyper-parameters and the training run.

The Hydra group ``algo`` selects one of the algorithm dataclasses here (registered in
:mod:`robot_rl.config.store`), so ``algo.<field>`` is a field of the chosen algorithm and
nothing else; the run's own settings (steps, batch size, seed, device, logging) are
``train.<field>`` (:class:`~robot_rl.config.train.TrainConfig`). Defaults live here
and only here. This module imports no torch, so configs compose and are checked before
any training code loads; ``robot_rl.algos`` re-exports the algorithm configs next to
their algorithms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from robot_rl.config.validation import ConfigError, _check

#: Hidden activations the networks know (keys of ``robot_rl.policies.network.ACTIVATIONS``;
#: a test keeps the two in step).
ACTIVATION_NAMES = ("relu", "tanh", "elu", "gelu", "silu")
#: Dataset-level reward scalings an algorithm config may name (``reward_normalization``).
REWARD_NORMALIZATIONS = ("return_range", "none")
ACTOR_TYPES = ("gaussian", "deterministic")
LR_SCHEDULES = ("cosine", "constant")


def _check_numbers(cfg: Any) -> None:
    """Hydra types every field; a config built in Python gets no such check, so a value
    of the wrong kind (``actor_lr="3e-5"``) is named here, before any comparison."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        kind = str(f.type)
        if value is None and "None" in kind:
            continue
        if ("float" in kind or kind.startswith("int")) and (
            not isinstance(value, int | float) or isinstance(value, bool)
        ):
            raise ConfigError(
                f"invalid config value algo.{f.name}={value!r}: expected a number "
                f"(got {type(value).__name__})"
            )


def _check_networks(cfg: Any) -> None:
    """The checks every algorithm shares: its name, network shape and learning rates."""
    _check_numbers(cfg)
    expected = type(cfg).__dataclass_fields__["name"].default
    _check(
        cfg.name == expected,
        "algo.name",
        cfg.name,
        f"{expected!r} (choose the algorithm with algo=<name>, not algo.name)",
    )
    cfg.hidden_sizes = tuple(cfg.hidden_sizes)
    _check(
        len(cfg.hidden_sizes) > 0
        and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in cfg.hidden_sizes),
        "algo.hidden_sizes",
        list(cfg.hidden_sizes),
        "a non-empty list of positive widths",
    )
    _check(
        cfg.activation in ACTIVATION_NAMES,
        "algo.activation",
        cfg.activation,
        f"one of {ACTIVATION_NAMES}",
    )
    for key in ("lr", "actor_lr", "entropy_lr"):
        value = getattr(cfg, key, None)
        _check(value is None or value > 0, f"algo.{key}", value, "> 0")


def _check_rl(cfg: Any) -> None:
    """Discount and target-network rate, shared by the TD learners."""
    _check(0 < cfg.discount <= 1, "algo.discount", cfg.discount, "in (0, 1]")
    _check(0 < cfg.tau <= 1, "algo.tau", cfg.tau, "in (0, 1]")


def _check_reward_normalization(cfg: Any) -> None:
    _check(
        cfg.reward_normalization in REWARD_NORMALIZATIONS,
        "algo.reward_normalization",
        cfg.reward_normalization,
        f"one of {REWARD_NORMALIZATIONS}",
    )


@dataclass
class BCConfig:
    """Behaviour-cloning hyper-parameters (``algo=bc``).

    Attributes:
        name: The algorithm (set by ``algo=bc``).
        hidden_sizes: Widths of the actor's hidden layers (units per layer).
        activation: Hidden activation: relu, tanh, elu, gelu or silu.
        layer_norm: LayerNorm after each hidden layer.
        lr: Adam(W) learning rate, per gradient step.
        weight_decay: Decoupled (AdamW) weight decay per step, as a fraction of the
            weights times ``lr``; 0 disables it.
        max_grad_norm: Clip the global L2 gradient norm to this before each step;
            ``None`` disables clipping.
    """

    name: str = "bc"
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    lr: float = 3e-4
    weight_decay: float = 0.0
    max_grad_norm: float | None = None

    def __post_init__(self) -> None:
        _check_networks(self)
        _check(self.weight_decay >= 0, "algo.weight_decay", self.weight_decay, ">= 0")
        _check(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "algo.max_grad_norm",
            self.max_grad_norm,
            "> 0, or null for no clipping",
        )


@dataclass
class TD3BCConfig:
    """TD3+BC hyper-parameters (``algo=td3bc``; defaults: the paper's, for D4RL MuJoCo).

    Attributes:
        name: The algorithm (set by ``algo=td3bc``).
        hidden_sizes: Hidden layer widths of the actor and of each critic.
        activation: Hidden activation: relu, tanh, elu, gelu or silu.
        layer_norm: LayerNorm after each hidden layer (actor and critics). An actor with
            LayerNorm cannot be exported to SB3.
        critic_layer_norm: LayerNorm after each hidden layer of the critics only.
        lr: Adam learning rate of the critics, per gradient step.
        actor_lr: Adam learning rate of the actor; ``None`` = ``lr``.
        discount: Discount factor gamma per control step, in (0, 1].
        tau: Polyak rate of the target networks per actor update, in (0, 1].
        alpha: Weight of the Q term against the BC term; the actor maximizes
            ``lambda Q(s, pi(s)) - (pi(s) - a)^2`` with ``lambda = alpha / mean|Q|``.
            Smaller is closer to behaviour cloning.
        policy_noise: Std of the Gaussian noise added to target actions (target policy
            smoothing), in action units ([-1, 1] scale).
        noise_clip: Target-action noise is clipped to ``[-noise_clip, noise_clip]``.
        policy_delay: Update the actor and the targets every this many critic updates.
    """

    name: str = "td3bc"
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    critic_layer_norm: bool = False
    lr: float = 3e-4
    actor_lr: float | None = None
    discount: float = 0.99
    tau: float = 0.005
    alpha: float = 2.5
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2

    def __post_init__(self) -> None:
        _check_networks(self)
        _check_rl(self)
        _check(self.alpha >= 0, "algo.alpha", self.alpha, ">= 0")
        _check(self.policy_noise >= 0, "algo.policy_noise", self.policy_noise, ">= 0")
        _check(self.noise_clip >= 0, "algo.noise_clip", self.noise_clip, ">= 0")
        _check(self.policy_delay >= 1, "algo.policy_delay", self.policy_delay, ">= 1")


@dataclass
class IQLConfig:
    """IQL hyper-parameters (``algo=iql``; defaults: the paper's for D4RL MuJoCo, plus
    LayerNorm).

    Attributes:
        name: The algorithm (set by ``algo=iql``).
        hidden_sizes: Hidden layer widths of the actor, the value net and each critic.
        activation: Hidden activation: relu, tanh, elu, gelu or silu.
        layer_norm: LayerNorm after each hidden layer of every network, the actor's
            included. On by default, unlike the paper: on mixed push at 10k steps it
            raised success from 71% (2 seeds) to 77% (3 seeds; LayerNorm in the critics
            and value net alone gave 73%). The cost: SB3's actors have no LayerNorm, so
            such a policy cannot be exported to SB3; ``layer_norm=False`` with
            ``critic_layer_norm=True`` trains an exportable one.
        critic_layer_norm: LayerNorm after each hidden layer of the critics and the
            value net (implied by ``layer_norm``); LayerNorm in the critic is the main
            ingredient of ReBRAC (Tarasov et al., 2023).
        lr: Adam learning rate of the critics and the value net, per gradient step.
        actor_lr: Adam learning rate of the actor; ``None`` = ``lr``.
        actor_lr_schedule: "cosine" decays the actor's learning rate to 0 over the run's
            steps (as the paper does; the run length comes from the trainer's
            ``on_train_start``, without which the rate stays constant); or "constant".
        discount: Discount factor gamma per control step, in (0, 1].
        tau: Polyak rate of the target critics per step, in (0, 1].
        expectile: Expectile of the value regression, in [0.5, 1): 0.5 is a mean (SARSA),
            towards 1 approaches the max over in-data actions.
        temperature: Inverse temperature beta of the advantage weights
            ``exp(beta (Q - V))``; 0 is behaviour cloning.
        max_weight: Advantage weights are clipped at this (100 in the paper).
        actor: "gaussian" (the paper's: a Gaussian around ``tanh(mean)`` with a
            state-independent log std, trained by weighted log-likelihood) or
            "deterministic" (weighted MSE to the dataset action). The saved policy is
            ``tanh(mean)`` either way.
        reward_normalization: "none", or "return_range" (the paper's for D4RL
            locomotion): the batch source scales rewards by ``1000 / (max - min episode
            return)`` of the dataset (``robot_rl.data.returns.return_range_scale``), so
            the advantage weights do not depend on the reward's units. Off by default:
            on mixed push at 10k steps it lowered success from 69% to 52% without
            LayerNorm and from 77% to 50% with it (one seed each), the sharper weights
            following a critic that is far from converged.
    """

    name: str = "iql"
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = True
    critic_layer_norm: bool = True
    lr: float = 3e-4
    actor_lr: float | None = None
    actor_lr_schedule: str = "cosine"
    discount: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7
    temperature: float = 3.0
    max_weight: float = 100.0
    actor: str = "gaussian"
    reward_normalization: str = "none"

    def __post_init__(self) -> None:
        _check_networks(self)
        _check_rl(self)
        _check(
            self.actor_lr_schedule in LR_SCHEDULES,
            "algo.actor_lr_schedule",
            self.actor_lr_schedule,
            f"one of {LR_SCHEDULES}",
        )
        _check(0.5 <= self.expectile < 1, "algo.expectile", self.expectile, "in [0.5, 1)")
        _check(self.temperature >= 0, "algo.temperature", self.temperature, ">= 0")
        _check(self.max_weight > 0, "algo.max_weight", self.max_weight, "> 0")
        _check(self.actor in ACTOR_TYPES, "algo.actor", self.actor, f"one of {ACTOR_TYPES}")
        _check_reward_normalization(self)


@dataclass
class CQLConfig:
    """CQL / Cal-QL hyper-parameters (``algo=cql``; ``algo.calibrated=true`` is Cal-QL;
    defaults follow the authors' SAC-based code).

    Attributes:
        name: The algorithm (set by ``algo=cql``).
        hidden_sizes: Hidden layer widths of the actor and of each critic.
        activation: Hidden activation: relu, tanh, elu, gelu or silu.
        layer_norm: LayerNorm after each hidden layer (actor and critics); Cal-QL's
            fine-tuning runs often turn it on. An actor with LayerNorm cannot be
            exported to SB3.
        critic_layer_norm: LayerNorm after each hidden layer of the critics only.
        lr: Adam learning rate of the critics, per gradient step.
        actor_lr: Adam learning rate of the actor (1e-4 in the CQL paper).
        entropy_lr: Adam learning rate of the log entropy temperature; ``None`` =
            ``actor_lr``.
        discount: Discount factor gamma per control step, in (0, 1].
        tau: Polyak rate of the target critics per step, in (0, 1].
        cql_alpha: Weight of the conservative regularizer (the paper's alpha). 5.0 as
            in the CQL paper's MuJoCo runs and Cal-QL's AntMaze runs; 1.0 suits narrow,
            near-expert data (teleoperation), where 5.0 tends to over-penalize and
            collapse to behaviour cloning. Larger = more conservative, but how well it
            holds the policy's actions below the data's also depends on the Q-values'
            spread against ``cql_temperature`` and on ``importance_sample``: with
            per-step rewards far below 1, Q differs between actions by a few units at
            most, the log-sum-exp is close to a plain average over the action box, and
            the policy can settle on actions the critic rates above the data's (logged as
            ``q_policy_minus_data``: Q of the policy's samples minus Q of the data's
            action, lower critic, per state). The TD target bootstraps from those
            actions, so ``q_mean`` (logged, Q on the data's actions) climbs above the
            data's returns: compare the two.
        n_action_samples: Actions per state sampled from each of the uniform
            distribution, pi(.|s) and pi(.|s') for the log-sum-exp term.
        importance_sample: Estimate the log-sum-exp over the action box by importance
            sampling: each sampled action's Q minus its proposal's log density (the
            authors' default). Where the policy is much denser than uniform (a saturated
            action dim: tanh's density grows without bound at +-1), its samples then get
            almost no weight and the regularizer hardly pushes down the policy's own
            actions. False takes the log-sum-exp of the sampled actions' Q-values (and the
            data action's) as they are, so about two thirds of the push lands on the
            policy's samples (the authors' ``cql_importance_sample=False``).
        cql_temperature: Temperature of the log-sum-exp over sampled actions.
        target_entropy: SAC's entropy target, nats; ``None`` = ``-action_dim``.
        init_entropy_alpha: Initial SAC entropy temperature (tuned automatically).
        backup_entropy: Subtract ``alpha log pi(a'|s')`` in the TD target (SAC's soft
            backup); off in the CQL code for offline runs.
        calibrated: Cal-QL: lower-bound the policy's Q-values inside the regularizer by
            the Monte-Carlo return-to-go of the data, so learned values stay on the scale
            of real returns (better online fine-tuning). Needs batches with an
            ``mc_return`` field (see ``robot_rl.algos.CQL``).
        reward_normalization: "none", or "return_range": the batch source scales
            rewards by ``1000 / (max - min episode return)`` of the dataset
            (``robot_rl.data.returns.return_range_scale``). The regularizer's pull on Q
            does not scale with the reward, so ``cql_alpha`` means more conservatism the
            smaller the rewards are; this puts rewards on the scale the defaults were
            tuned for (D4RL locomotion, per-step rewards of a few units).
        bc_warmup_steps: For the first this many gradient steps the actor maximizes the
            log-likelihood of the data's actions instead of Q (the CQL authors'
            ``policy_eval_start``); the critics train as usual meanwhile. Useful when the
            budget is short, so the actor starts from the behaviour policy rather than
            from a random network chasing a critic that is still forming.
    """

    name: str = "cql"
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    critic_layer_norm: bool = False
    lr: float = 3e-4
    actor_lr: float = 1e-4
    entropy_lr: float | None = None
    discount: float = 0.99
    tau: float = 0.005
    cql_alpha: float = 5.0
    n_action_samples: int = 10
    importance_sample: bool = True
    cql_temperature: float = 1.0
    target_entropy: float | None = None
    init_entropy_alpha: float = 1.0
    backup_entropy: bool = False
    calibrated: bool = False
    reward_normalization: str = "none"
    bc_warmup_steps: int = 0

    def __post_init__(self) -> None:
        _check_networks(self)
        _check_rl(self)
        _check(self.cql_alpha >= 0, "algo.cql_alpha", self.cql_alpha, ">= 0")
        _check(self.n_action_samples >= 1, "algo.n_action_samples", self.n_action_samples, ">= 1")
        _check(self.cql_temperature > 0, "algo.cql_temperature", self.cql_temperature, "> 0")
        _check(
            self.init_entropy_alpha > 0, "algo.init_entropy_alpha", self.init_entropy_alpha, "> 0"
        )
        _check(self.bc_warmup_steps >= 0, "algo.bc_warmup_steps", self.bc_warmup_steps, ">= 0")
        _check_reward_normalization(self)


#: The configs the Hydra ``algo`` group selects, by algorithm name. ``robot_rl.algos.
#: ALGORITHMS`` is the registry (name -> algorithm class, config class); this is its
#: torch-free half, for composing configs, and a test keeps the two the same.
ALGORITHM_CONFIGS: dict[str, type] = {
    cls.name: cls  # type: ignore[attr-defined]  # the dataclass default
    for cls in (BCConfig, TD3BCConfig, IQLConfig, CQLConfig)
}
ALGORITHM_NAMES = tuple(ALGORITHM_CONFIGS)
#: Any of the algorithm configs.
AlgorithmConfig = BCConfig | TD3BCConfig | IQLConfig | CQLConfig
