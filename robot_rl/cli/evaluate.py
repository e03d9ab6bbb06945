"""robot-rl-eval: evaluation runs in sim for a policy artifact or the scripted expert.

Examples: ``robot-rl-eval task=push policy=outputs/pipeline/<run>/policy``,
``robot-rl-eval task=lift policy=expert eval.n_episodes=200``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robot_rl.cli.common import (
    console,
    fail_on_config_error,
    fail_on_user_error,
    quiet_library_loggers,
    show_progress,
)
from robot_rl.config.commands import EvaluateConfig
from robot_rl.config.store import register_configs, to_object
from robot_rl.paths import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="evaluate", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    quiet_library_loggers()
    with fail_on_config_error():
        config = to_object(cfg, EvaluateConfig)
    from robot_rl.eval import RunReport, write_report
    from robot_rl.eval.suite import evaluate_policies, scripted_expert, write_evaluation_outputs
    from robot_rl.policies import load_policy
    from robot_rl.sim.env import make_env
    from robot_rl.sim.rendering import rendering_unavailable_reason

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if config.eval.video_episodes > 0 and (reason := rendering_unavailable_reason()):
        console.print(f"[yellow]warning:[/yellow] no video: {reason}")
        config.eval.video_episodes = 0
    policies = {}
    if config.policy == "expert":
        name = "scripted expert"
    else:
        with fail_on_user_error():
            loaded = load_policy(config.policy)
        probe = make_env(config.task, config.robot, config.sim)
        try:
            loaded.manifest.check_env(
                robot=config.robot.name,
                task=config.task.name,
                control_hz=config.task.control_hz,
                action_dim=probe.action_space.shape[0],
            )
        except ValueError as e:
            console.print(f"[bold red]error:[/bold red] {e}")
            sys.exit(2)
        finally:
            probe.close()
        name = loaded.policy_id
        policies[name] = loaded
    if config.policy == "expert" or config.eval.include_expert:
        policies["scripted expert"] = scripted_expert(config.task)
    console.print(f"[bold]robot-rl-eval[/bold] {name} on {config.task.name} -> {run_dir}")
    evaluations = evaluate_policies(
        policies,
        config.eval,
        task=config.task,
        robot=config.robot,
        sim=config.sim,
        randomization=config.randomization,
        video_of=name,
        progress=show_progress(config.progress),
    )
    figures, videos = write_evaluation_outputs(
        evaluations,
        run_dir,
        title=f"{config.task.name}: sim evaluation",
        fps=config.task.control_hz,
    )
    files = write_report(
        RunReport(
            title=f"robot_rl evaluation: {name} on {config.task.name}",
            evaluations=evaluations,
            config=OmegaConf.to_container(cfg, resolve=True),
            figures=figures,
            videos=videos,
        ),
        run_dir,
    )
    s = evaluations[name].stats
    console.print(
        f"success {s.success_rate:.1%} [{s.success_ci[0]:.1%}, {s.success_ci[1]:.1%}] over "
        f"{s.n} episodes; mean return {s.mean_return:.3f}. Report: {files.markdown}"
    )


def main() -> None:
    register_configs()
    _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
