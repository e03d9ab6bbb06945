"""The top-level schemas, one per command (robot-rl-pipeline, -pretrain, -eval, -record):
each composes the group configs and checks what spans them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from robot_rl.config.algos import ALGORITHM_CONFIGS
from robot_rl.config.dataset import (
    _RECORDING_FIELDS,
    DatasetConfig,
    RecordStoreConfig,
    StoreConfig,
)
from robot_rl.config.eval import EvalConfig
from robot_rl.config.randomization import RandomizationConfig
from robot_rl.config.sim import (
    RobotConfig,
    SimConfig,
    TaskConfig,
    check_control_period,
    check_sim_runs_on_cpu,
)
from robot_rl.config.teleop import TeleopConfig
from robot_rl.config.train import TrainConfig
from robot_rl.config.validation import ConfigError, _check, _default, _refuse_unused


@dataclass
class PipelineConfig:
    """robot-rl-pipeline: demonstrations -> store -> offline learning -> sim evaluation."""

    robot: RobotConfig = MISSING
    task: TaskConfig = MISSING
    sim: SimConfig = MISSING
    dataset: DatasetConfig = MISSING
    #: The algorithm's config, selected by ``algo=<name>`` (robot_rl.config.algos).
    algo: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = MISSING
    #: Domain randomization of the simulated cell, applied to the demonstrations and to
    #: the evaluation runs alike (re-sampled every episode from its seed).
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    #: Name of the chosen profile (quick, full), for the report.
    profile: str = "full"
    #: Show progress bars (on a terminal).
    progress: bool = True

    def __post_init__(self) -> None:
        check_control_period(self.task, self.sim)
        check_algorithm_config(self.algo)
        check_sim_runs_on_cpu(self.sim, "robot-rl-pipeline")
        _check(
            not (self.dataset.source == "scripted" and self.task.action_mode != "ee_delta"),
            "task.action_mode",
            self.task.action_mode,
            "ee_delta when dataset.source=scripted (the scripted experts command the end effector)",
        )
        if self.dataset.source == "existing":
            defaults = {f.name: _default(f) for f in dataclasses.fields(DatasetConfig)}
            hint = (
                " (profile=quick sets dataset.n_episodes: with an existing store leave it "
                "out, or give dataset.n_episodes=100)"
                if self.profile == "quick"
                else ""
            )
            for key in _RECORDING_FIELDS:
                _refuse_unused(
                    f"dataset.{key}",
                    getattr(self.dataset, key),
                    defaults[key],
                    "is not used by robot-rl-pipeline with dataset=existing: it learns from "
                    "every episode of dataset.path; this setting is for recording the "
                    "scripted expert (dataset=scripted)" + (hint if key == "n_episodes" else ""),
                )


def check_algorithm_config(algo: Any) -> None:
    """``algo`` must be one of the algorithm configs (:mod:`robot_rl.config.algos`)."""
    if not isinstance(algo, tuple(ALGORITHM_CONFIGS.values())):
        raise ConfigError(
            f"algo is a {type(algo).__name__}: expected one of the algorithm configs "
            f"({', '.join(c.__name__ for c in ALGORITHM_CONFIGS.values())}), chosen with "
            f"algo={'|'.join(ALGORITHM_CONFIGS)}"
        )


@dataclass
class PretrainConfig:
    """robot-rl-pretrain: offline learning on an existing episode store."""

    dataset: StoreConfig = field(default_factory=StoreConfig)
    #: The algorithm's config, selected by ``algo=<name>`` (robot_rl.config.algos).
    algo: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    #: Show progress bars (on a terminal).
    progress: bool = True

    def __post_init__(self) -> None:
        check_algorithm_config(self.algo)


@dataclass
class EvaluateConfig:
    """robot-rl-eval: evaluation runs of a policy artifact (or the scripted expert) in sim."""

    robot: RobotConfig = MISSING
    task: TaskConfig = MISSING
    sim: SimConfig = MISSING
    eval: EvalConfig = MISSING
    #: A policy artifact directory, or "expert" for the task's scripted expert.
    policy: str = MISSING
    #: Domain randomization during the evaluation runs (re-sampled every episode).
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    #: Show progress bars (on a terminal).
    progress: bool = True

    def __post_init__(self) -> None:
        check_control_period(self.task, self.sim)


@dataclass
class RecordConfig:
    """robot-rl-record: teleoperation or a scripted expert in sim -> episode store."""

    robot: RobotConfig = MISSING
    task: TaskConfig = MISSING
    sim: SimConfig = MISSING
    teleop: TeleopConfig = MISSING
    store: RecordStoreConfig = field(default_factory=RecordStoreConfig)
    #: Episodes to keep (0: until the operator quits).
    n_episodes: int = 10
    #: Reset seed of the first episode (null: a random one, printed); each kept or
    #: discarded episode moves to the next seed, a re-recorded one keeps its seed.
    seed: int | None = None
    #: The operator's existing pseudonym, stored as is (16 hex digits, as
    #: robot-rl-data prints them). The real name never goes in the config (Hydra writes
    #: the config to the run directory): it comes from $ROBOT_RL_OPERATOR, or a prompt
    #: when a person drives the device, and is pseudonymized at once.
    operator_pseudonym: str = ""
    #: File holding the pseudonym salt, kept outside every store ("" = the file named by
    #: $ROBOT_RL_PSEUDONYM_SALT_FILE, else ~/.config/robot_rl/pseudonym_salt; created
    #: with random bytes on first use).
    operator_salt_file: str = ""
    #: Robot unit id for provenance ("" = "sim:<robot.name>").
    robot_id: str = ""
    #: Writer queue capacity, in row blocks.
    queue_blocks: int = 64
    #: Rows per block handed to the writer thread.
    block_steps: int = 10
    #: A row block that does not fit in the writer queue: keep (store the episode flagged
    #: with dropped_rows and gap_rows in its provenance; the only choice for robot
    #: episodes) or discard (drop the episode and record its seed again; sim only).
    on_overflow: str = "keep"
    #: Truncate episodes after this many control steps (0: the task's horizon).
    max_episode_steps: int = 0
    #: Live progress panel (on a terminal; plain lines otherwise).
    progress: bool = True

    def __post_init__(self) -> None:
        check_sim_runs_on_cpu(self.sim, "robot-rl-record")
        _check(self.n_episodes >= 0, "n_episodes", self.n_episodes, ">= 0 (0: until quit)")
        _check(self.queue_blocks >= 2, "queue_blocks", self.queue_blocks, ">= 2")
        _check(self.block_steps >= 1, "block_steps", self.block_steps, ">= 1")
        _check(
            self.on_overflow in ("keep", "discard"),
            "on_overflow",
            self.on_overflow,
            "keep or discard",
        )
        _check(self.max_episode_steps >= 0, "max_episode_steps", self.max_episode_steps, ">= 0")
