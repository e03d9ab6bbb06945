"""Run reports: the Markdown page and the JSON summary carry the same numbers."""

import json
from dataclasses import dataclass, field

import pytest

from robot_rl.eval.metrics import summarize_episodes
from robot_rl.eval.plots import plot_evaluations
from robot_rl.eval.report import REPORT_FORMAT, RunReport, write_report
from robot_rl.eval.runner import evaluate
from robot_rl.eval.video import tile_episodes, write_mp4


@dataclass
class BCSettings:
    name: str = "bc"
    lr: float = 3e-4
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])


@dataclass
class PipelineConfig:
    task: str = "robot_rl/Reach-v0"
    algo: BCSettings = field(default_factory=BCSettings)


def test_report_end_to_end(tmp_path, env_factory, constant_policy):
    factory = env_factory(render_mode="rgb_array")
    expert = evaluate(
        factory,
        constant_policy(1.0),
        n_episodes=5,
        seed=1000,
        record_video_episodes=2,
        progress=False,
    )
    failing = evaluate(
        env_factory(), constant_policy(-1.0), n_episodes=5, seed=1000, progress=False
    )
    evals = {"scripted expert": expert, "BC | policy": failing}
    run_dir = tmp_path / "run"
    plot = plot_evaluations(evals, run_dir / "figures" / "eval.png")
    video = write_mp4(run_dir / "videos" / "expert.mp4", tile_episodes(expert.frames), fps=20)
    report = RunReport(
        title="Reach-v0: BC from scripted demos",
        evaluations=evals,
        config=PipelineConfig(),
        dataset={"episodes": 200, "steps": 9000, "source": "scripted"},
        timings_s={"collect": 1.25, "train": 10.5, "evaluate": 2.0},
        figures={"Success rate and return": plot},
        videos={"scripted expert, episodes 0-1": video, "BC policy": run_dir / "nope.mp4"},
        notes="Quick-start run.",
    )
    files = write_report(report, run_dir)
    md = files.markdown.read_text()
    summary = json.loads(files.json.read_text())

    # Markdown: the table with intervals, the relative image and video links, the facts.
    assert "# Reach-v0: BC from scripted demos" in md
    lo, hi = expert.stats.success_ci
    assert f"| scripted expert | 5 | 1000–1004 | 100.0% [{100 * lo:.1f}%, 100.0%] |" in md
    assert "| BC \\| policy | 5 | 1000–1004 | 0.0% [0.0%, " in md
    assert f"{expert.stats.mean_return:.2f} [{expert.stats.return_ci[0]:.2f}, " in md
    assert "![Success rate and return](figures/eval.png)" in md
    assert "[scripted expert, episodes 0-1](videos/expert.mp4)" in md
    assert "[BC policy](nope.mp4) (missing)" in md
    assert "| `algo.lr` | 0.0003 |" in md and "| `algo.hidden_sizes` | [256, 256] |" in md
    assert "| `episodes` | 200 |" in md
    assert "| train | 10.5 |" in md and "| **total** | **13.8** |" in md
    assert "/tmp" not in md and str(tmp_path) not in md  # only relative paths

    # JSON: the same facts, machine-readable.
    assert summary["format"] == REPORT_FORMAT
    ev = summary["evaluations"]["scripted expert"]
    assert ev["stats"]["success_ci"] == [lo, hi]
    assert ev["stats"]["mean_return"] == pytest.approx(expert.stats.mean_return)
    assert [e["seed"] for e in ev["episodes"]] == list(range(1000, 1005))
    assert summary["config"]["algo"]["hidden_sizes"] == [256, 256]
    assert summary["dataset"]["steps"] == 9000
    assert summary["total_time_s"] == pytest.approx(13.75)
    assert summary["figures"]["Success rate and return"] == {
        "path": "figures/eval.png",
        "exists": True,
    }
    assert summary["videos"]["BC policy"]["exists"] is False
    assert summary["notes"] == "Quick-start run."


def test_report_with_stats_only_and_undefined_numbers(tmp_path):
    stats = summarize_episodes([], [], [])
    files = write_report(RunReport("empty", evaluations={"nothing": stats}), tmp_path)
    summary = json.loads(files.json.read_text())  # strict JSON: NaN became null
    assert summary["evaluations"]["nothing"]["stats"]["mean_return"] is None
    assert "| nothing | 0 | – | – [0.0%, 100.0%] | – [–, –] | – |" in files.markdown.read_text()
    assert summary["config"] is None and "## Configuration" not in files.markdown.read_text()


def test_report_rejects_unknown_evaluation_type(tmp_path):
    with pytest.raises(TypeError, match="evaluation 'x' must be an EvalResult or EpisodeStats"):
        write_report(RunReport("bad", evaluations={"x": {"success_rate": 1.0}}), tmp_path)
