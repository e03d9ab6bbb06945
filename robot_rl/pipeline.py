"""The pipeline: scripted demonstrations -> episode store -> offline learning ->
evaluation in sim -> report (Markdown), plots (PNG), rollout video (mp4), summary (JSON).

:func:`run_pipeline` runs the four stages into a run directory from a
:class:`~robot_rl.config.commands.PipelineConfig`; ``robot-rl-pipeline``
(:mod:`robot_rl.cli.pipeline`) parses its Hydra config into one and calls it. Each stage
prints what it did and how long it took.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from robot_rl.config.commands import PipelineConfig
from robot_rl.paths import code_version

console = Console(highlight=False, soft_wrap=True)


@contextlib.contextmanager
def stage(
    index: int, total: int, name: str, timings: dict[str, float]
) -> Iterator[Callable[[str], None]]:
    """Times one pipeline stage and prints what it did (``say``) when it ends."""
    console.print(f"[bold cyan][{index}/{total}] {name}[/bold cyan] ...")
    start = time.perf_counter()
    lines: list[str] = []
    yield lines.append
    timings[name] = time.perf_counter() - start
    for line in lines:
        console.print(f"      {line}")
    console.print(f"      [dim]{name} took {timings[name]:.1f} s[/dim]")


def check_store_fits(store: Any, cfg: PipelineConfig) -> None:
    """An existing store must come from the robot, task and control rate being run."""
    wanted = {"robot": cfg.robot.name, "task": cfg.task.name, "control_hz": cfg.task.control_hz}
    bad = store.mismatches(wanted, theirs="config has")
    if bad:
        raise ValueError(f"episode store {store.path} does not fit this run: " + "; ".join(bad))


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: str | os.PathLike[str],
    resolved: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs every stage into ``run_dir`` and returns the JSON summary it wrote.

    Args:
        cfg: the pipeline's settings (``robot-rl-pipeline`` builds them from its Hydra
            config; a Python user builds the dataclasses directly).
        run_dir: the run directory (created if missing): store, policy, report, plots.
        resolved: the config as plain data, recorded in the report and hashed into the
            demonstrations' provenance; None: ``dataclasses.asdict(cfg)``.
    """
    # Heavy imports here, so that `--help` and config errors answer instantly.
    from robot_rl.algos.pretrain import pretrain
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.eval import RunReport, write_report
    from robot_rl.eval.suite import evaluate_policies, scripted_expert, write_evaluation_outputs
    from robot_rl.policies import load_policy, update_manifest
    from robot_rl.sim.env import make_env
    from robot_rl.sim.rendering import rendering_unavailable_reason
    from robot_rl.teleop.expert_store import record_scripted_expert

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if resolved is None:
        resolved = dataclasses.asdict(cfg)
    timings: dict[str, float] = {}
    notes = []
    if cfg.eval.video_episodes > 0 and (reason := rendering_unavailable_reason()):
        console.print(f"[yellow]warning:[/yellow] no video: {reason}")
        notes.append(f"Video skipped: {reason}.")
        cfg.eval.video_episodes = 0
    config_hash = hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]

    env_fn = functools.partial(
        make_env,
        cfg.task,
        cfg.robot,
        cfg.sim,
        camera=cfg.eval.camera,
        width=cfg.eval.width,
        height=cfg.eval.height,
        randomization=cfg.randomization,
    )

    store_path = Path(cfg.dataset.path)
    if not store_path.is_absolute() and cfg.dataset.source == "scripted":
        store_path = run_dir / store_path

    # 1. demonstrations -------------------------------------------------------------------
    with stage(1, 4, "record", timings) as say:
        if cfg.dataset.source == "scripted":
            env = env_fn()
            try:
                summary = record_scripted_expert(
                    env,
                    store_path,
                    robot=cfg.robot.name,
                    task=cfg.task.name,
                    control_hz=cfg.task.control_hz,
                    max_ee_step_m=cfg.task.max_ee_step_m,
                    n_episodes=cfg.dataset.n_episodes,
                    seed=cfg.dataset.seed,
                    operator=cfg.dataset.operator,
                    config_hash=config_hash,
                    action_noise_std=cfg.dataset.action_noise_std,
                )
            finally:
                env.close()
            say(
                f"{summary.n_episodes} episodes ({summary.n_steps} steps) of the scripted "
                f"{cfg.task.name} expert, action noise σ={cfg.dataset.action_noise_std}, "
                f"success {summary.success_rate:.0%} -> {store_path}"
            )
        else:
            say(f"using existing store {store_path}")
        store = EpisodeStore.open(store_path, mode="r")
        check_store_fits(store, cfg)
        report = store.validate()
        if not report.ok:
            raise ValueError(f"episode store {store_path} failed validation:\n{report}")
        dataset_info = {
            "path": str(store_path.relative_to(run_dir))
            if store_path.is_relative_to(run_dir)
            else str(store_path),
            "episodes": store.n_episodes,
            "steps": store.n_steps,
            "content_hash": store.content_hash(),
            "source": cfg.dataset.source,
            "action_noise_std": cfg.dataset.action_noise_std,
            "demo_success_rate": sum(
                bool(store.provenance(i).success) for i in range(store.n_episodes)
            )
            / max(store.n_episodes, 1),
        }

    # 2. offline learning -----------------------------------------------------------------
    with stage(2, 4, "train", timings) as say:
        result = pretrain(
            store,
            cfg.algo,
            run_dir,
            train=cfg.train,
            obs_keys=cfg.dataset.obs_keys,
            progress=cfg.progress,
            run_config=resolved,
        )
        losses = {k: v for k, v in result.history.items() if k.endswith("loss") and v}
        final = ", ".join(f"{k} {v[-1][1]:.4f}" for k, v in losses.items())
        say(
            f"{cfg.algo.name.upper()} for {cfg.train.steps} steps on {result.n_transitions} "
            f"transitions ({result.device}); final {final} -> "
            f"{result.policy_dir.relative_to(run_dir)}/"
        )
        store.close()

    # 3. evaluation in sim ----------------------------------------------------------------
    with stage(3, 4, "evaluate", timings) as say:
        learned_name = f"{cfg.algo.name.upper()} policy"
        policies = {learned_name: load_policy(result.policy_dir)}
        if cfg.eval.include_expert:
            policies["scripted expert"] = scripted_expert(cfg.task)
        evaluations = evaluate_policies(
            policies,
            cfg.eval,
            task=cfg.task,
            robot=cfg.robot,
            sim=cfg.sim,
            randomization=cfg.randomization,
            video_of=learned_name,
            progress=cfg.progress,
        )
        for name, ev in evaluations.items():
            s = ev.stats
            say(
                f"{name}: success {s.success_rate:.0%} "
                f"[{s.success_ci[0]:.0%}, {s.success_ci[1]:.0%}] over {s.n} held-out episodes, "
                f"return {s.mean_return:.2f}"
            )

    # 4. report ---------------------------------------------------------------------------
    with stage(4, 4, "report", timings) as say:
        learned = evaluations[learned_name]
        figures, videos = write_evaluation_outputs(
            evaluations,
            run_dir,
            title=f"{cfg.task.name}: sim evaluation",
            fps=cfg.task.control_hz,
            training_curves=losses,
        )
        update_manifest(
            result.policy_dir,
            metrics={
                "eval/success_rate": learned.stats.success_rate,
                "eval/mean_return": learned.stats.mean_return,
                "eval/n_episodes": learned.stats.n,
            },
        )
        files = write_report(
            RunReport(
                title=f"robot_rl pipeline: {cfg.task.name} ({cfg.profile} profile)",
                evaluations=evaluations,
                config=resolved,
                dataset=dataset_info,
                timings_s=timings,
                figures=figures,
                videos=videos,
                notes=" ".join(
                    [
                        f"Policy artifact: `policy/` (safetensors + manifest.json). Episode "
                        f"store: `{store_path.name}`. Code version {code_version()}.",
                        *notes,
                    ]
                ),
            ),
            run_dir,
            stem="report",
        )
        summary_path = files.json.replace(run_dir / "summary.json")
        say(f"{files.markdown.name}, summary.json, {len(figures)} plots, {len(videos)} video")
    return json.loads(summary_path.read_text())
