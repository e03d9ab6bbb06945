"""Episode stores the commands read and write: the store robot-rl-pretrain learns from,
the pipeline's demonstrations (the ``dataset`` group), the store robot-rl-record writes."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from robot_rl.config.validation import _check


def _check_obs_keys(obs_keys: list[str] | None) -> None:
    _check(
        obs_keys is None or (len(obs_keys) > 0 and len(set(obs_keys)) == len(obs_keys)),
        "dataset.obs_keys",
        obs_keys,
        "null or a non-empty list of distinct keys",
    )


@dataclass
class StoreConfig:
    """An existing episode store to learn from (robot-rl-pretrain's ``dataset``)."""

    #: Path of the episode store (a directory), relative to the working directory.
    path: str = MISSING
    #: Observation keys the policy sees, flattened in this order; null = every key of
    #: the store with at most one dimension (images and other 2+-dim keys are left out,
    #: since the policies are MLPs; name them here to flatten them in anyway).
    obs_keys: list[str] | None = None

    def __post_init__(self) -> None:
        _check_obs_keys(self.obs_keys)


#: DatasetConfig fields that only recording the scripted expert reads.
_RECORDING_FIELDS = ("n_episodes", "action_noise_std", "seed", "operator")


@dataclass
class DatasetConfig:
    """Where demonstrations come from and where they are stored."""

    #: Path of the episode store (a directory). A store the pipeline records (source
    #: scripted) goes inside the run directory when the path is relative; an existing
    #: store is found relative to the working directory. Required for an existing store.
    path: str = MISSING
    #: scripted: record the task's scripted expert into ``path``; existing: read ``path``.
    source: str = "scripted"
    #: Episodes to record (scripted source).
    n_episodes: int = 100
    #: Gaussian noise std on the expert's normalized actions while recording.
    action_noise_std: float = 0.1
    #: Seed of the first recorded episode; episode i uses seed + i.
    seed: int = 0
    #: Pseudonym stored as the operator in each episode's provenance.
    operator: str = "scripted-expert"
    #: Observation keys the policy sees, flattened in this order; null = every key of
    #: the store with at most one dimension (images and other 2+-dim keys are left out,
    #: since the policies are MLPs; name them here to flatten them in anyway).
    obs_keys: list[str] | None = None

    def __post_init__(self) -> None:
        _check_obs_keys(self.obs_keys)
        _check(
            self.source in ("scripted", "existing"),
            "dataset.source",
            self.source,
            "'scripted' or 'existing'",
        )
        _check(self.n_episodes > 0, "dataset.n_episodes", self.n_episodes, "> 0")
        _check(
            0 <= self.action_noise_std <= 2,
            "dataset.action_noise_std",
            self.action_noise_std,
            "in [0, 2]",
        )


@dataclass
class RecordStoreConfig:
    """The episode store robot-rl-record writes to."""

    #: Store directory: created when missing, appended to when it exists (its robot,
    #: task, control rate, observation keys and action size must match).
    path: str = MISSING
    #: Rows per chunk of a new store (0: automatic, about 1 MiB per chunk).
    chunk_steps: int = 0

    def __post_init__(self) -> None:
        _check(self.chunk_steps >= 0, "store.chunk_steps", self.chunk_steps, ">= 0")
