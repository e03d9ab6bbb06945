"""Policy networks: an MLP builder and the deterministic tanh actor saved in artifacts.

``DeterministicActor`` owns its observation ``Normalizer``, so ``actor(obs_flat_raw)``
gives an action in ``[-1, 1]`` with nothing else to carry around. Its constructor
arguments are recorded as the artifact's ``architecture`` (see ``architecture()`` and
``build_actor``), which is how the loader rebuilds it without unpickling anything.

Critics and other heads of later algorithms (TD3+BC, IQL, CQL) reuse ``build_mlp``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from robot_rl.policies.normalization import Normalizer

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
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
        return torch.tanh(self.net(self.normalizer(obs)))

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
