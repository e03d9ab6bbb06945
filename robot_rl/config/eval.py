"""Evaluation runs in simulation (the ``eval`` group)."""

from __future__ import annotations

from dataclasses import dataclass

from robot_rl.config.validation import _check


@dataclass
class EvalConfig:
    """Evaluation runs in simulation."""

    #: Episodes per evaluated policy.
    n_episodes: int = 50
    #: Seed of the first evaluation episode (episode i resets with seed + i); keep it
    #: away from dataset seeds so evaluation is on held-out initial states.
    seed: int = 1_000_000
    #: Worlds the batched simulator steps at once (more episodes run in rounds).
    max_worlds: int = 128
    #: Episodes of the learned policy to record to mp4 (0: no video; at most max_worlds).
    video_episodes: int = 2
    #: Camera name in the scene, and frame size in pixels.
    camera: str = "front"
    width: int = 320
    height: int = 240
    #: Also evaluate the scripted expert as a reference.
    include_expert: bool = True

    def __post_init__(self) -> None:
        _check(self.n_episodes > 0, "eval.n_episodes", self.n_episodes, "> 0")
        _check(self.max_worlds > 0, "eval.max_worlds", self.max_worlds, "> 0")
        _check(
            0 <= self.video_episodes <= self.max_worlds,
            "eval.video_episodes",
            self.video_episodes,
            f">= 0 and <= eval.max_worlds ({self.max_worlds})",
        )
        _check(
            16 <= self.width <= 1920 and 16 <= self.height <= 1080,
            "eval.width/height",
            (self.width, self.height),
            "16..1920 x 16..1080",
        )
