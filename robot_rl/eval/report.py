"""Run reports: one Markdown page for people and one JSON summary for machines, holding the
same facts: configuration, dataset, evaluation results with confidence intervals, figures,
videos and time spent per stage.

Inputs are plain dicts and dataclasses, so any caller (the pipeline CLI, a notebook, a
benchmark script) can write a report without Hydra.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from robot_rl.eval.metrics import EpisodeStats
from robot_rl.eval.runner import EvalResult, safety_summary

REPORT_FORMAT = "robot_rl.eval.report"
REPORT_FORMAT_VERSION = 1

# Longer config values (nested lists, long strings) are cut in the Markdown table; the JSON
# summary keeps them whole.
_MAX_MD_VALUE_CHARS = 80


@dataclass
class RunReport:
    """What a run's report says.

    Attributes:
        title: Report title, e.g. ``"Push-v0: BC from 200 scripted demos"``.
        evaluations: Evaluation results by display name, in display order. An
            :class:`EvalResult` also puts its per-episode records into the JSON summary; an
            :class:`EpisodeStats` gives only the summary.
        config: The run's configuration, as a (nested) dict or dataclass.
        dataset: Dataset summary (episodes, steps, source, hash...), as a dict or dataclass.
        timings_s: Wall-clock seconds per pipeline stage, in stage order.
        figures: Image files by caption; embedded in the Markdown page.
        videos: Video files by caption; linked from the Markdown page.
        notes: Free text appended to the Markdown page and stored in the JSON summary.
    """

    title: str
    evaluations: Mapping[str, EvalResult | EpisodeStats] = field(default_factory=dict)
    config: Any = None
    dataset: Any = None
    timings_s: Mapping[str, float] = field(default_factory=dict)
    figures: Mapping[str, str | Path] = field(default_factory=dict)
    videos: Mapping[str, str | Path] = field(default_factory=dict)
    notes: str | None = None


class ReportFiles(NamedTuple):
    """Paths of the files :func:`write_report` wrote."""

    markdown: Path
    json: Path


def write_report(report: RunReport, out_dir: str | Path, *, stem: str = "report") -> ReportFiles:
    """Writes ``<out_dir>/<stem>.md`` and ``<out_dir>/<stem>.json``.

    Figure and video paths are taken as given (absolute, or relative to the current
    directory) and written relative to ``out_dir``, so the report directory can be moved or
    published with its artifacts. An artifact that does not exist is still listed, marked
    missing, so a partly failed run still gets a report.

    Args:
        report: What to report.
        out_dir: Directory of the two files; created if absent.
        stem: File name without extension.

    Returns:
        The paths of the Markdown and JSON files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = report_to_dict(report, out_dir)
    md_path = out_dir / f"{stem}.md"
    json_path = out_dir / f"{stem}.json"
    md_path.write_text(_render_markdown(report, summary), encoding="utf-8")
    # allow_nan=False: NaN is not JSON; _to_jsonable has already turned it into null.
    json_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return ReportFiles(markdown=md_path, json=json_path)


def report_to_dict(report: RunReport, out_dir: str | Path) -> dict[str, Any]:
    """Returns the report as a JSON-friendly dict (the JSON summary's content).

    Args:
        report: What to report.
        out_dir: Directory the report lives in; artifact paths are made relative to it.

    Returns:
        A dict of plain Python values; undefined numbers (NaN) are ``None``.
    """
    out_dir = Path(out_dir)
    evaluations: dict[str, Any] = {}
    for name, ev in report.evaluations.items():
        if isinstance(ev, EvalResult):
            evaluations[name] = ev.to_dict()
        elif isinstance(ev, EpisodeStats):
            evaluations[name] = {"stats": ev.to_dict()}
        else:
            raise TypeError(
                f"report {report.title!r}: evaluation {name!r} must be an EvalResult or "
                f"EpisodeStats, got {type(ev).__name__}"
            )
    timings = {str(k): float(v) for k, v in report.timings_s.items()}
    return _to_jsonable(
        {
            "format": REPORT_FORMAT,
            "format_version": REPORT_FORMAT_VERSION,
            "title": report.title,
            "config": report.config,
            "dataset": report.dataset,
            "evaluations": evaluations,
            "timings_s": timings,
            "total_time_s": sum(timings.values()),
            "figures": {k: _artifact(p, out_dir) for k, p in report.figures.items()},
            "videos": {k: _artifact(p, out_dir) for k, p in report.videos.items()},
            "notes": report.notes,
        }
    )


def _artifact(path: str | Path, out_dir: Path) -> dict[str, Any]:
    path = Path(path)
    rel = os.path.relpath(path.resolve(), out_dir.resolve())
    return {"path": Path(rel).as_posix(), "exists": path.exists()}


def _render_markdown(report: RunReport, summary: dict[str, Any]) -> str:
    lines = [f"# {report.title}", ""]

    if report.evaluations:
        lines += ["## Evaluation", ""]
        lines += _eval_table(report.evaluations)
        lines.append("")
        lines += _safety_table(report.evaluations)

    for caption, art in summary["figures"].items():
        if art["exists"]:
            lines += [f"![{_md_text(caption)}]({art['path']})", ""]
        else:
            lines += [f"*{_md_text(caption)}: missing ({art['path']})*", ""]

    if summary["videos"]:
        lines += ["## Videos", ""]
        for caption, art in summary["videos"].items():
            missing = "" if art["exists"] else " (missing)"
            lines.append(f"- [{_md_text(caption)}]({art['path']}){missing}")
        lines.append("")

    for heading, data in (("Configuration", summary["config"]), ("Dataset", summary["dataset"])):
        if data is None:
            continue
        lines += [f"## {heading}", ""]
        lines += _key_value_table(data)
        lines.append("")

    if summary["timings_s"]:
        lines += ["## Timings", "", "| stage | wall time (s) |", "|---|---:|"]
        for stage, seconds in summary["timings_s"].items():
            lines.append(f"| {_md_cell(stage)} | {seconds:.1f} |")
        lines += [f"| **total** | **{summary['total_time_s']:.1f}** |", ""]

    if report.notes:
        lines += ["## Notes", "", report.notes.strip(), ""]
    return "\n".join(lines)


def _eval_table(evaluations: Mapping[str, EvalResult | EpisodeStats]) -> list[str]:
    rows = []
    levels = set()
    for name, ev in evaluations.items():
        stats = ev.stats if isinstance(ev, EvalResult) else ev
        levels.add(stats.confidence)
        if isinstance(ev, EvalResult) and ev.n_episodes > 0:
            seeds = f"{ev.seed}–{ev.seed + ev.n_episodes - 1}"
        else:
            seeds = "–"
        lo, hi = stats.success_ci
        success = f"{_pct(stats.success_rate)} [{_pct(lo)}, {_pct(hi)}]"
        rlo, rhi = stats.return_ci
        ret = f"{_num(stats.mean_return)} [{_num(rlo)}, {_num(rhi)}]"
        rows.append(
            f"| {_md_cell(name)} | {stats.n} | {seeds} | {success} | {ret} | "
            f"{_num(stats.mean_length, 1)} |"
        )
    level = "/".join(f"{c:.0%}" for c in sorted(levels))
    return [
        f"| policy | episodes | seeds | success rate [{level} CI] | mean return [{level} CI] "
        "| mean length (steps) |",
        "|---|---:|---|---:|---:|---:|",
        *rows,
        "",
        'Success: `info["is_success"]` true at any step of the episode; interval: Wilson '
        "score. Return: undiscounted sum of rewards; interval: percentile bootstrap.",
    ]


def _safety_table(evaluations: Mapping[str, EvalResult | EpisodeStats]) -> list[str]:
    """Safety-filter interventions per constraint: steps, and episodes touched."""
    runs = {
        n: safety_summary(ev.episodes)
        for n, ev in evaluations.items()
        if isinstance(ev, EvalResult)
    }
    names = sorted({k for s in runs.values() for k in s["steps"]})
    if not runs:
        return []
    lines = ["### Safety filter", ""]
    if not names:
        return [*lines, "The safety filter changed no command in these runs.", ""]
    lines += [
        "| policy | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for policy, s in runs.items():
        cells = [f"{s['steps'].get(k, 0)} ({s['episodes'].get(k, 0)})" for k in names]
        lines.append(f"| {_md_cell(policy)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Control steps on which each constraint of the safety filter changed the command "
        "(episodes it acted in).",
        "",
    ]
    return lines


def _key_value_table(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return [f"`{_truncate(json.dumps(data))}`"]
    flat = _flatten(data)
    if not flat:
        return ["(empty)"]
    lines = ["| key | value |", "|---|---|"]
    for key, value in flat.items():
        text = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"| `{_md_cell(key)}` | {_md_cell(_truncate(text))} |")
    return lines


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys (``{"algo": {"lr": 1e-3}}`` -> ``{"algo.lr": 1e-3}``)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _to_jsonable(value: Any) -> Any:
    """Dataclasses, mappings, numpy values, paths and enums to plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _to_jsonable(value.item())
    if isinstance(value, enum.Enum):
        return _to_jsonable(value.value)
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    # Anything else (a callable, a custom object) is recorded by its text form rather than
    # failing the whole report.
    return str(value)


def _pct(p: float | None) -> str:
    return "–" if p is None or not math.isfinite(p) else f"{100.0 * p:.1f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _truncate(text: str) -> str:
    if len(text) <= _MAX_MD_VALUE_CHARS:
        return text
    return text[: _MAX_MD_VALUE_CHARS - 1] + "…"


def _md_text(text: str) -> str:
    return " ".join(str(text).split()).replace("[", "\\[").replace("]", "\\]")


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
