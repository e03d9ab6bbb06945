"""robot_rl.algos: offline algorithms and the one trainer loop they share.

``ALGORITHMS`` maps each algorithm's ``name`` to its class and config class, so the CLI
and the shared conformance test find every algorithm in one place. The config classes
live in :mod:`robot_rl.config.algos` (no torch there, so the Hydra ``algo`` group can
select them before training code loads) and are re-exported here.
"""

from robot_rl.algos.algorithm import AlgorithmState, OfflineAlgorithm
from robot_rl.algos.bc import BC, BCConfig
from robot_rl.algos.checkpoint import latest_checkpoint
from robot_rl.algos.cql import CQL, CQLConfig
from robot_rl.algos.iql import IQL, IQLConfig
from robot_rl.algos.td3bc import TD3BC, TD3BCConfig
from robot_rl.algos.trainer import (
    BatchSource,
    History,
    NonFiniteError,
    OfflineTrainer,
    TrainerConfig,
    resolve_device,
    seed_everything,
)

#: name -> (algorithm class, config class). Constructors take
#: ``(obs_dim, action_dim, config=None, normalizer=None)``.
ALGORITHMS: dict[str, tuple[type[OfflineAlgorithm], type]] = {
    BC.name: (BC, BCConfig),
    TD3BC.name: (TD3BC, TD3BCConfig),
    IQL.name: (IQL, IQLConfig),
    CQL.name: (CQL, CQLConfig),
}

__all__ = [
    "ALGORITHMS",
    "BC",
    "CQL",
    "IQL",
    "TD3BC",
    "AlgorithmState",
    "BCConfig",
    "BatchSource",
    "CQLConfig",
    "History",
    "IQLConfig",
    "NonFiniteError",
    "OfflineAlgorithm",
    "OfflineTrainer",
    "TD3BCConfig",
    "TrainerConfig",
    "latest_checkpoint",
    "resolve_device",
    "seed_everything",
]
