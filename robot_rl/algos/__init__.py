"""robot_rl.algos: offline algorithms and the one trainer loop they share.

``ALGORITHMS`` maps each algorithm's ``name`` to its class and config class, so the CLI
and the shared conformance test find every algorithm in one place.
"""

from robot_rl.algos.bc import BC, BCConfig
from robot_rl.algos.trainer import (
    AlgorithmState,
    BatchSource,
    History,
    NonFiniteError,
    OfflineAlgorithm,
    OfflineTrainer,
    TrainerConfig,
    latest_checkpoint,
    resolve_device,
    seed_everything,
)

#: name -> (algorithm class, config class). Constructors take
#: ``(obs_dim, action_dim, config=None, normalizer=None)``.
ALGORITHMS: dict[str, tuple[type[OfflineAlgorithm], type]] = {
    BC.name: (BC, BCConfig),
}

__all__ = [
    "ALGORITHMS",
    "BC",
    "AlgorithmState",
    "BCConfig",
    "BatchSource",
    "History",
    "NonFiniteError",
    "OfflineAlgorithm",
    "OfflineTrainer",
    "TrainerConfig",
    "latest_checkpoint",
    "resolve_device",
    "seed_everything",
]
