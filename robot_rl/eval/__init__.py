"""Sim evaluation: seeded evaluation runs, metrics with confidence intervals, videos, plots
and run reports.

Typical use::

    result = evaluate(make_env, policy, n_episodes=50, seed=10_000, record_video_episodes=2)
    write_mp4(out / "eval.mp4", tile_episodes(result.frames), fps=20)
    plot_evaluations({"BC policy": result}, out / "eval.png")
    write_report(RunReport("Push-v0: BC", evaluations={"BC policy": result}, ...), out)
"""

from robot_rl.eval.metrics import (
    EpisodeStats,
    bootstrap_mean_ci,
    summarize_episodes,
    wilson_interval,
)
from robot_rl.eval.plots import plot_evaluations, plot_training_curves
from robot_rl.eval.report import ReportFiles, RunReport, report_to_dict, write_report
from robot_rl.eval.runner import EpisodeRecord, EvalResult, evaluate
from robot_rl.eval.video import tile_episodes, write_mp4

__all__ = [
    "EpisodeRecord",
    "EpisodeStats",
    "EvalResult",
    "ReportFiles",
    "RunReport",
    "bootstrap_mean_ci",
    "evaluate",
    "plot_evaluations",
    "plot_training_curves",
    "report_to_dict",
    "summarize_episodes",
    "tile_episodes",
    "wilson_interval",
    "write_mp4",
    "write_report",
]
