"""Evaluation and training plots, saved as PNG files.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting works on
headless machines and never touches pyplot's global state or the user's chosen backend.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from robot_rl.eval.runner import EvalResult

DPI = 120
"""Resolution of saved figures: readable in a Markdown viewer at 100% zoom."""


def plot_evaluations(
    evaluations: Mapping[str, EvalResult],
    path: str | Path,
    *,
    title: str = "Sim evaluation",
) -> Path:
    """Plots success rate and return of one or several named evaluations side by side.

    Left panel: success rate per evaluation with its Wilson interval. Right panel: every
    episode's return (jittered horizontally) with the mean and its bootstrap interval.

    Args:
        evaluations: Results by display name, in display order, e.g.
            ``{"scripted expert": r1, "BC policy": r2}``.
        path: Output PNG file; parent directories are created.
        title: Figure title.

    Returns:
        The path written.

    Raises:
        ValueError: If ``evaluations`` is empty.
    """
    if not evaluations:
        raise ValueError(f"plot_evaluations: no evaluations to plot into {path}")
    names = list(evaluations)
    results = [evaluations[name] for name in names]
    n = len(names)
    colors = [f"C{i % 10}" for i in range(n)]
    x = np.arange(n)
    labels = [textwrap.fill(name, 16) for name in names]
    confidence = results[0].stats.confidence

    fig = Figure(figsize=(max(8.0, 4.0 + 2.4 * n), 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    ax_s, ax_r = fig.subplots(1, 2)

    for i, res in enumerate(results):
        s = res.stats
        rate = 0.0 if s.n == 0 else 100.0 * s.success_rate
        lo, hi = (100.0 * v for v in s.success_ci)
        ax_s.bar(i, rate, width=0.6, color=colors[i], alpha=0.8)
        ax_s.errorbar(
            i, rate, yerr=[[rate - lo], [hi - rate]], fmt="none", ecolor="black", capsize=6, lw=1.5
        )
        ax_s.annotate(
            f"{rate:.0f}%  ({s.n_success}/{s.n})\n[{lo:.0f}, {hi:.0f}]",
            (i, hi),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax_s.set_xticks(x, labels)
    ax_s.set_ylim(0, 118)
    ax_s.set_yticks(range(0, 101, 20))
    ax_s.set_ylabel("success rate (%)")
    ax_s.set_title(f"Success rate ({confidence:.0%} Wilson interval)")
    ax_s.grid(axis="y", alpha=0.3)

    jitter_rng = np.random.default_rng(0)  # fixed: the same results always give the same PNG
    for i, res in enumerate(results):
        returns = res.returns
        jitter = jitter_rng.uniform(-0.18, 0.18, size=returns.shape)
        ax_r.scatter(
            i + jitter,
            returns,
            s=14,
            color=colors[i],
            alpha=0.45,
            linewidths=0,
            label="episodes" if i == 0 else None,
        )
        s = res.stats
        if s.n > 0:
            lo, hi = s.return_ci
            ax_r.errorbar(
                i,
                s.mean_return,
                yerr=[[s.mean_return - lo], [hi - s.mean_return]],
                fmt="D",
                color="black",
                markersize=6,
                capsize=8,
                lw=1.5,
                label=f"mean, {confidence:.0%} bootstrap CI" if i == 0 else None,
            )
    ax_r.set_xticks(x, labels)
    ax_r.set_xlim(-0.6, n - 0.4)
    ax_r.set_ylabel("episode return (sum of rewards)")
    ax_r.set_title("Episode return")
    ax_r.grid(axis="y", alpha=0.3)
    ax_r.legend(loc="best", fontsize=9)

    return _save(fig, path)


def plot_training_curves(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    *,
    title: str = "Training loss",
    xlabel: str = "gradient step",
    ylabel: str = "loss",
    log_y: bool = False,
) -> Path:
    """Plots one or several named ``(step, value)`` series, e.g. training and validation loss.

    Args:
        series: ``(step, value)`` points by series name, each in step order.
        path: Output PNG file; parent directories are created.
        title: Figure title.
        xlabel: x-axis label, with its unit (e.g. ``"gradient step"``, ``"env step"``).
        ylabel: y-axis label, with its unit where it has one.
        log_y: Log-scale y axis (useful for losses spanning decades).

    Returns:
        The path written.

    Raises:
        ValueError: If there is no series, a series is empty, or a point is not a
            ``(step, value)`` pair.
    """
    if not series:
        raise ValueError(f"plot_training_curves: no series to plot into {path}")
    fig = Figure(figsize=(8.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (name, points) in enumerate(series.items()):
        arr = np.asarray(points, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
            raise ValueError(
                f"plot_training_curves: series {name!r} must be a non-empty list of "
                f"(step, value) pairs, got an array of shape {arr.shape}"
            )
        # A single point draws no line; a marker keeps it visible.
        marker = "o" if arr.shape[0] == 1 else None
        ax.plot(arr[:, 0], arr[:, 1], color=f"C{i % 10}", lw=1.6, marker=marker, label=name)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
