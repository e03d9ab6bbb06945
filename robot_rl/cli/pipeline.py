"""robot-rl-pipeline: scripted demonstrations -> episode store -> offline learning ->
evaluation in sim -> report (Markdown), plots (PNG), rollout video (mp4), summary (JSON).

Parsing and wiring only: each stage is a library call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robot_rl.cli.common import (
    console,
    fail_on_config_error,
    fail_on_user_error,
    quiet_library_loggers,
    show_progress,
    stage,
)
from robot_rl.config.schema import PipelineConfig
from robot_rl.config.store import check_overrides, register_configs, to_object
from robot_rl.paths import CONF_DIR, code_version

log = logging.getLogger(__name__)


def check_store_fits(store: Any, cfg: PipelineConfig) -> None:
    """An existing store must come from the robot, task and control rate being run."""
    wanted = {"robot": cfg.robot.name, "task": cfg.task.name, "control_hz": cfg.task.control_hz}
    bad = store.mismatches(wanted, theirs="config has")
    if bad:
        raise ValueError(f"episode store {store.path} does not fit this run: " + "; ".join(bad))


def run_pipeline(cfg: PipelineConfig, run_dir: Path, resolved: dict[str, Any]) -> dict[str, Any]:
    """Runs every stage into ``run_dir`` and returns the JSON summary it wrote."""
    # Heavy imports here, so that `--help` and config errors answer instantly.
    from robot_rl.algos.pretrain import pretrain
    from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
    from robot_rl.eval import RunReport, write_report
    from robot_rl.eval.suite import evaluate_policies, write_evaluation_outputs
    from robot_rl.policies import load_policy, update_manifest
    from robot_rl.sim.env import OBS_SPEC, make_env
    from robot_rl.sim.experts import make_expert
    from robot_rl.sim.rendering import rendering_unavailable_reason
    from robot_rl.teleop.recorder import record_episodes

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
            store = EpisodeStore.create(
                store_path,
                obs_spec={k: (shape, "float32") for k, (shape, _) in OBS_SPEC.items()},
                action_dim=env.action_space.shape[0],
                control_hz=cfg.task.control_hz,
                robot=cfg.robot.name,
                task=cfg.task.name,
                units={k: unit for k, (_, unit) in OBS_SPEC.items()},
            )
            provenance = EpisodeProvenance(
                source="scripted",
                operator=cfg.dataset.operator,
                robot_id=f"sim:{cfg.robot.name}",
                policy_id=f"scripted-expert:{cfg.task.name}",
                config_hash=config_hash,
                code_version=code_version(),
                safety_filter_version="none",
            )
            summary = record_episodes(
                env,
                make_expert(cfg.task.name, cfg.task.max_ee_step_m),
                store,
                n_episodes=cfg.dataset.n_episodes,
                seed=cfg.dataset.seed,
                provenance=provenance,
                action_noise_std=cfg.dataset.action_noise_std,
            )
            store.close()
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
            policies["scripted expert"] = make_expert(cfg.task.name, cfg.task.max_ee_step_m)
        evaluations = evaluate_policies(
            policies, env_fn, cfg.eval, video_of=learned_name, progress=cfg.progress
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


@hydra.main(config_path=str(CONF_DIR), config_name="pipeline", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    quiet_library_loggers()
    with fail_on_config_error():
        config = to_object(cfg, PipelineConfig)
    config.progress = show_progress(config.progress)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    console.print(
        f"[bold]robot-rl-pipeline[/bold] task={config.task.name} "
        f"profile={config.profile} -> {run_dir}"
    )
    start = time.perf_counter()
    with fail_on_user_error():
        run_pipeline(config, run_dir, resolved)
    video = "; video: rollout.mp4" if (run_dir / "rollout.mp4").exists() else ""
    console.print(
        f"[bold green]done[/bold green] in {time.perf_counter() - start:.0f} s. "
        f"Open {run_dir / 'report.md'} (plots: evaluation.png, training.png{video}; "
        "machine-readable: summary.json)."
    )


def main() -> None:
    register_configs()
    with fail_on_config_error():
        check_overrides(sys.argv[1:], "pipeline")
    _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
