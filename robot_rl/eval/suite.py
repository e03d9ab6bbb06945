"""An evaluation session: several policies on the same held-out seeds, then the plots and
video that go with them. Shared by ``robot-rl-eval`` and the pipeline's last stages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from robot_rl.config.eval import EvalConfig
from robot_rl.config.randomization import RandomizationConfig
from robot_rl.config.sim import RobotConfig, SimConfig, TaskConfig
from robot_rl.eval.batched import BatchPolicy, FlatBatchPolicy, PerWorldPolicies, evaluate_batched
from robot_rl.eval.plots import plot_evaluations, plot_training_curves
from robot_rl.eval.runner import EvalResult
from robot_rl.eval.video import write_mp4


def scripted_expert(task: TaskConfig) -> PerWorldPolicies:
    """The task's scripted expert, one per world, as a batch policy."""
    from robot_rl.sim.experts import make_expert

    return PerWorldPolicies(lambda _seed: make_expert(task.name, task.max_ee_step_m))


def evaluate_policies(
    policies: Mapping[str, FlatBatchPolicy | BatchPolicy],
    cfg: EvalConfig,
    *,
    task: TaskConfig,
    robot: RobotConfig | None = None,
    sim: SimConfig | None = None,
    randomization: RandomizationConfig | None = None,
    video_of: str | None = None,
    progress: bool = True,
) -> dict[str, EvalResult]:
    """Evaluates each policy on the same seeds (``cfg.seed + i``, i < ``cfg.n_episodes``)
    in the batched simulator (``sim.backend``), ``cfg.max_worlds`` episodes at a time.

    Args:
        policies: display name -> a loaded policy artifact or a batch policy (see
            :func:`robot_rl.eval.batched.evaluate_batched`; :func:`scripted_expert`).
        cfg: episodes, seeds, worlds, and how many episodes to film.
        task, robot, sim, randomization: the simulated cell.
        video_of: name of the policy whose first ``cfg.video_episodes`` episodes are filmed.
        progress: show progress bars.
    """
    results = {}
    for name, policy in policies.items():
        n_video = min(cfg.video_episodes, cfg.n_episodes) if name == video_of else 0
        results[name] = evaluate_batched(
            policy,
            task,
            n_episodes=cfg.n_episodes,
            seed=cfg.seed,
            robot_config=robot,
            sim_config=sim,
            randomization=randomization,
            max_worlds=cfg.max_worlds,
            record_video_episodes=n_video,
            camera=cfg.camera,
            width=cfg.width,
            height=cfg.height,
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
