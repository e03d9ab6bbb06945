"""Reward models from human feedback, for stores recorded without rewards.

- :func:`train_preference_model`: Bradley-Terry reward from pairwise preferences;
- :func:`train_success_classifier`: reward from episodes labelled success or failure;
- :class:`RewardModel`, :func:`load_reward_model`: the model, saved as safetensors + JSON
  with a content-hash id;
- :func:`add_synthetic_preferences`: a synthetic teacher for benchmarks and tests.

:func:`robot_rl.algos.rewards.relabel.relabel` (``robot-rl-data relabel``) writes a model's
rewards into a new store.
"""

from robot_rl.algos.rewards.model import RewardModel, RewardModelSpec, load_reward_model
from robot_rl.algos.rewards.preference import PreferenceConfig, train_preference_model
from robot_rl.algos.rewards.success import SuccessConfig, train_success_classifier
from robot_rl.algos.rewards.teacher import (
    TEACHER_LABELLER,
    add_synthetic_preferences,
    episode_returns,
)

__all__ = [
    "TEACHER_LABELLER",
    "PreferenceConfig",
    "RewardModel",
    "RewardModelSpec",
    "SuccessConfig",
    "add_synthetic_preferences",
    "episode_returns",
    "load_reward_model",
    "train_preference_model",
    "train_success_classifier",
]
