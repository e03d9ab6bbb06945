"""An evaluation session: several policies on the same held-out seeds, then the plots and
video that go with them. Shared by ``robot-rl-eval`` and the pipeline's last stages."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np

from robot_rl.config.eval import EvalConfig
from robot_rl.eval.plots import plot_evaluations, plot_training_curves
from robot_rl.eval.runner import EvalResult, evaluate
from robot_rl.eval.video import write_mp4
from robot_rl.policies.base import Policy


def evaluate_policies(
    policies: Mapping[str, Policy],
    env_fn: Callable[..., gym.Env],
    cfg: EvalConfig,
    *,
    video_of: str | None = None,
    progress: bool = True,
) -> dict[str, EvalResult]:
    """Evaluates each policy on the same seeds (``cfg.seed + i``, i < ``cfg.n_episodes``).

    Args:
        policies: display name -> policy.
        env_fn: ``env_fn(render=...)`` builds a fresh env; ``render=True`` must give an env
            with ``render_mode="rgb_array"``.
        cfg: episodes, seeds and how many episodes to film.
        video_of: name of the policy whose first ``cfg.video_episodes`` episodes are filmed.
        progress: show progress bars.
    """
    results = {}
    for name, policy in policies.items():
        n_video = cfg.video_episodes if name == video_of else 0
        results[name] = evaluate(
            lambda n_video=n_video: env_fn(render=n_video > 0),
            policy,
            n_episodes=cfg.n_episodes,
            seed=cfg.seed,
            record_video_episodes=n_video,
            progress=progress,
        )
    return results


def write_evaluation_outputs(
    evaluations: Mapping[str, EvalResult],
    out_dir: Path,
    *,
    title: str,
    fps: float,
    training_curves: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> tuple[dict[str, Path], dict[str, Path]]:
    """Writes ``evaluation.png`` (+ ``training.png``) and ``rollout.mp4`` (filmed episodes,
    one after the other). Returns (figures, videos), caption -> path, for the report."""
    figures = {
        "Evaluation: success rate and return": plot_evaluations(
            evaluations, out_dir / "evaluation.png", title=title
        )
    }
    if training_curves:
        figures["Training loss"] = plot_training_curves(
            training_curves, out_dir / "training.png", title="Training"
        )
    videos = {}
    for name, result in evaluations.items():
        if result.frames:
            videos[f"Rollouts: {name}"] = write_mp4(
                out_dir / "rollout.mp4", np.concatenate(result.frames, axis=0), fps=fps
            )
    return figures, videos
