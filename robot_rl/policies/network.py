"""Policy networks: an MLP builder, the deterministic tanh actor saved in artifacts, and
the training-only heads of the offline RL algorithms (Gaussian actor, critics).

``DeterministicActor`` owns its observation ``Normalizer``, so ``actor(obs_flat_raw)``
gives an action in ``[-1, 1]`` with nothing else to carry around. Its constructor
arguments are recorded as the artifact's ``architecture`` (see ``architecture()`` and
``build_actor``), which is how the loader rebuilds it without unpickling anything.

``GaussianActor`` (IQL, CQL/SAC) wraps a ``DeterministicActor`` as its mean, so the
deployable policy of a stochastic learner is that plain deterministic actor: saved
policies act deterministically and load with the same code. Critics (``QEnsemble``,
``ValueNetwork``) never leave training; they take *normalized* observations so an update
normalizes each batch once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.policies.normalization import Normalizer

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


def network_kwargs(cfg: Any, *, critic: bool = False) -> dict[str, Any]:
    """The network settings every algorithm config carries (``hidden_sizes``,
    ``activation``, ``layer_norm``), as keyword arguments of the network classes here.

    With ``critic=True`` (critics and value networks), LayerNorm is also on where the
    config's ``critic_layer_norm`` is: LayerNorm in the critics alone keeps the actor a
    plain MLP, which SB3's actors (and so the SB3 export) can express.
    """
    return {
        "hidden_sizes": tuple(cfg.hidden_sizes),
        "activation": cfg.activation,
        "layer_norm": cfg.layer_norm or (critic and getattr(cfg, "critic_layer_norm", False)),
    }


def build_mlp(
    in_dim: int,
    out_dim: int,
    hidden_sizes: Sequence[int] = (256, 256),
    activation: str = "relu",
    layer_norm: bool = False,
) -> nn.Sequential:
    """Builds ``Linear -> [LayerNorm] -> act`` per hidden layer, then a final ``Linear``.

    Args:
        in_dim: Input features.
        out_dim: Output features (no activation on the output layer).
        hidden_sizes: Width of each hidden layer; empty gives a single linear layer.
        activation: A key of ``ACTIVATIONS``.
        layer_norm: Insert LayerNorm after each hidden Linear (helps critics in
            offline RL, e.g. RLPD/Cal-QL); off by default.

    Returns:
        An ``nn.Sequential``.

    Raises:
        ValueError: Unknown activation or a non-positive size.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    sizes = [int(in_dim), *(int(h) for h in hidden_sizes), int(out_dim)]
    if any(s <= 0 for s in sizes):
        raise ValueError(f"MLP sizes must be positive, got in/hidden/out = {sizes}")
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes[:-1]):
        layers.append(nn.Linear(fan_in, fan_out))
        if layer_norm:
            layers.append(nn.LayerNorm(fan_out))
        layers.append(ACTIVATIONS[activation]())
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class DeterministicActor(nn.Module):
    """``a = tanh(MLP(normalize(obs)))``: raw flat observations in, actions in ``[-1, 1]``.

    Args:
        normalizer: Observation normalizer; its ``dim`` is the actor's ``obs_dim``.
        action_dim: Action dims.
        hidden_sizes: Hidden layer widths.
        activation: A key of ``ACTIVATIONS``.
        layer_norm: LayerNorm after each hidden layer.
    """

    #: The name recorded in the artifact's ``architecture["type"]``.
    type_name: ClassVar[str] = "DeterministicActor"

    def __init__(
        self,
        normalizer: Normalizer,
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim = normalizer.dim
        self.action_dim = int(action_dim)
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.activation = activation
        self.layer_norm = bool(layer_norm)
        self.normalizer = normalizer
        self.net = build_mlp(
            self.obs_dim, self.action_dim, self.hidden_sizes, activation, self.layer_norm
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Maps raw flat observations ``(..., obs_dim)`` to actions ``(..., action_dim)``."""
        return self.forward_normalized(self.normalizer(obs))

    def forward_normalized(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """Like ``forward`` for observations already passed through ``normalizer``.

        Learners normalize a batch once and share it between actor and critics.
        """
        return torch.tanh(self.net(obs_norm))

    def architecture(self) -> dict[str, Any]:
        """The JSON-able description ``build_actor`` rebuilds this module from."""
        return {
            "type": self.type_name,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "layer_norm": self.layer_norm,
        }

    @classmethod
    def from_architecture(cls, arch: Mapping[str, Any]) -> DeterministicActor:
        """Rebuilds an (untrained) actor from ``architecture()``; load weights afterwards."""
        return cls(
            Normalizer.identity(int(arch["obs_dim"])),
            action_dim=int(arch["action_dim"]),
            hidden_sizes=tuple(arch["hidden_sizes"]),
            activation=str(arch["activation"]),
            layer_norm=bool(arch["layer_norm"]),
        )


#: Actor classes the artifact loader can rebuild, by ``architecture["type"]``. A new actor
#: (e.g. a Gaussian one for IQL) registers here with ``architecture``/``from_architecture``.
ACTOR_TYPES: dict[str, type[DeterministicActor]] = {
    DeterministicActor.type_name: DeterministicActor,
}


def build_actor(arch: Mapping[str, Any]) -> nn.Module:
    """Rebuilds an actor module from an artifact's ``architecture`` dict.

    Raises:
        ValueError: Unknown ``type`` or missing fields.
    """
    kind = arch.get("type")
    if kind not in ACTOR_TYPES:
        raise ValueError(f"unknown actor type {kind!r}; expected one of {sorted(ACTOR_TYPES)}")
    try:
        return ACTOR_TYPES[kind].from_architecture(arch)
    except KeyError as exc:
        raise ValueError(f"architecture of type {kind!r} lacks field {exc.args[0]!r}") from exc


class GaussianActor(nn.Module):
    """A diagonal Gaussian policy around a ``DeterministicActor``'s pre-tanh mean.

    The mean network is ``mean_actor.net``; ``forward`` (and ``deterministic()``, the
    module to save as a policy) is ``tanh(mean)``. The log standard deviation is either a
    state-independent parameter (IQL's choice) or a linear head on the mean network's last
    hidden layer (SAC's choice), clamped to ``[log_std_min, log_std_max]``.

    Two ways to use the distribution, one per algorithm family:

    * ``sample``: SAC's tanh-squashed Gaussian, ``a = tanh(u)``, ``u ~ N(mu, std)``, with
      the log-density corrected for the squashing (Haarnoja et al. 2018, appendix C).
    * ``log_prob``: IQL's Gaussian centred on ``tanh(mu)`` (no squashing), which scores
      dataset actions at the bounds ``+-1`` without ``atanh(+-1) = inf``.

    Args:
        normalizer: Observation normalizer; its ``dim`` is the actor's ``obs_dim``.
        action_dim: Action dims.
        hidden_sizes: Hidden layer widths (at least one).
        activation: A key of ``ACTIVATIONS``.
        layer_norm: LayerNorm after each hidden layer.
        state_dependent_std: Log std from a head on the last hidden layer (True) or one
            learned value per action dim (False).
        log_std_min: Lower clamp of the log std.
        log_std_max: Upper clamp of the log std.
    """

    def __init__(
        self,
        normalizer: Normalizer,
        action_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
        state_dependent_std: bool = True,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
    ) -> None:
        super().__init__()
        if not hidden_sizes:
            raise ValueError("GaussianActor needs at least one hidden layer")
        if not log_std_min < log_std_max:
            raise ValueError(
                f"GaussianActor: log_std_min ({log_std_min}) must be < log_std_max ({log_std_max})"
            )
        self.mean_actor = DeterministicActor(
            normalizer, action_dim, hidden_sizes, activation, layer_norm
        )
        self.action_dim = int(action_dim)
        self.state_dependent_std = bool(state_dependent_std)
        self.log_std_min = float(log_std_min)
        self.log_std_max = float(log_std_max)
        if self.state_dependent_std:
            self.log_std_head: nn.Linear | None = nn.Linear(int(hidden_sizes[-1]), action_dim)
            self.log_std = None
        else:
            self.log_std_head = None
            self.log_std = nn.Parameter(torch.zeros(action_dim))
        # The mean network minus its output layer, as a plain list (not registered twice).
        self._trunk: list[nn.Module] = list(self.mean_actor.net)[:-1]

    @property
    def normalizer(self) -> Normalizer:
        return self.mean_actor.normalizer

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action ``tanh(mean)`` for raw flat observations."""
        return self.mean_actor(obs)

    def deterministic(self) -> DeterministicActor:
        """The deployable deterministic policy (shares this actor's weights)."""
        return self.mean_actor

    def mean_log_std(self, obs_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and clamped log std for normalized observations."""
        if self.log_std_head is None:
            mean = self.mean_actor.net(obs_norm)
            log_std = self.log_std.expand_as(mean)  # type: ignore[union-attr]
        else:
            hidden = obs_norm
            for layer in self._trunk:
                hidden = layer(hidden)
            mean = self.mean_actor.net[-1](hidden)
            log_std = self.log_std_head(hidden)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized tanh-Gaussian sample and its log-density (summed over dims).

        Returns:
            ``(action, log_prob)`` of shapes ``(..., action_dim)`` and ``(...)``, in float32.
        """
        mean, log_std = self.mean_log_std(obs_norm)
        mean, log_std = mean.float(), log_std.float()
        noise = torch.randn_like(mean)
        pre_tanh = mean + noise * log_std.exp()
        action = torch.tanh(pre_tanh)
        # log N(u; mu, std) - sum log(1 - tanh(u)^2), the latter in the stable form
        # 2 (log 2 - u - softplus(-2u)).
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1) - (
            2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        ).sum(-1)
        return action, log_prob

    def log_prob(self, obs_norm: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-density of ``action`` under ``N(tanh(mean), std)``, summed over dims (float32)."""
        mean, log_std = self.mean_log_std(obs_norm)
        mean, log_std = torch.tanh(mean.float()), log_std.float()
        z = (action - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers applied as one batched matmul.

    ``forward(x)`` maps ``(n, B, in)`` to ``(n, B, out)``; ``forward(x, member=i)`` applies
    member ``i`` alone to ``(B, in)``. Each member is initialized as ``nn.Linear`` would be.
    """

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(n, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(n, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        if member is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.addmm(self.bias[member], x, self.weight[member])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with a separate affine transform per ensemble member."""

    def __init__(self, n: int, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, features))
        self.bias = nn.Parameter(torch.zeros(n, 1, features))

    def forward(self, x: torch.Tensor, member: int | None = None) -> torch.Tensor:
        x = F.layer_norm(x, x.shape[-1:])
        if member is None:
            return x * self.weight + self.bias
        return x * self.weight[member] + self.bias[member]


_ENSEMBLE_LAYERS = (EnsembleLinear, EnsembleLayerNorm)


class QEnsemble(nn.Module):
    """``n`` independent Q-networks ``Q_i(s, a)`` evaluated together (twin critics: n=2).

    Parameters are stacked per layer (as in the vectorized critics of EDAC/CORL), so on a
    GPU, where these small nets are launch-bound, all members run as one batched matmul
    per layer (see ``batched``).

    Args:
        obs_dim: Flat observation dims (inputs are normalized observations).
        action_dim: Action dims.
        n: Number of critics.
        hidden_sizes: Hidden layer widths.
        activation: A key of ``ACTIVATIONS``.
        layer_norm: LayerNorm (per-member affine) after each hidden layer.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        n: int = 2,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}"
            )
        sizes = [int(obs_dim) + int(action_dim), *(int(h) for h in hidden_sizes), 1]
        if n < 1 or any(s <= 0 for s in sizes):
            raise ValueError(f"QEnsemble needs n >= 1 and positive sizes, got n={n}, {sizes}")
        self.n = int(n)
        #: All members in one batched matmul per layer (True), one member at a time
        #: (False), or None: batched on CUDA, where it saves kernel launches, and per
        #: member elsewhere, where one member's activations stay in the CPU's cache.
        self.batched: bool | None = None
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(sizes[:-1]):
            layers.append(EnsembleLinear(n, fan_in, fan_out))
            if layer_norm:
                layers.append(EnsembleLayerNorm(n, fan_out))
            layers.append(ACTIVATIONS[activation]())
        layers.append(EnsembleLinear(n, sizes[-2], 1))
        self.net = nn.Sequential(*layers)

    def forward(
        self, obs_norm: torch.Tensor, action: torch.Tensor, member: int | None = None
    ) -> torch.Tensor:
        """``(B, obs_dim), (B, action_dim) -> (n, B)`` Q-values of every member, or ``(B,)``
        of member ``member`` alone (cheaper than computing all and indexing)."""
        x = torch.cat([obs_norm, action], dim=-1)
        if member is not None:
            return self._run(x, member)
        batched = self.batched if self.batched is not None else x.is_cuda
        if batched:
            return self._run(x.expand(self.n, *x.shape).contiguous(), None)
        return torch.stack([self._run(x, i) for i in range(self.n)])

    def _run(self, h: torch.Tensor, member: int | None) -> torch.Tensor:
        for layer in self.net:
            h = layer(h, member) if isinstance(layer, _ENSEMBLE_LAYERS) else layer(h)
        return h.squeeze(-1)


class ValueNetwork(nn.Module):
    """A state-value network ``V(s)`` on normalized observations: ``(B, obs_dim) -> (B,)``."""

    def __init__(
        self,
        obs_dim: int,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.net = build_mlp(obs_dim, 1, hidden_sizes, activation, layer_norm)

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        return self.net(obs_norm).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak-averages ``target``'s parameters towards ``source``'s: ``t += tau (s - t)``.

    One fused multi-tensor op; buffers (e.g. normalization stats) are not touched.
    """
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
