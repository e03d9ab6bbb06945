"""robot-rl-pipeline: scripted demonstrations -> episode store -> offline learning ->
evaluation in sim -> report (Markdown), plots (PNG), rollout video (mp4), summary (JSON).

Parsing and wiring only: the stages live in :mod:`robot_rl.pipeline`.
"""

from __future__ import annotations

import logging
import sys
import time
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
from robot_rl.config.commands import PipelineConfig
from robot_rl.config.store import check_overrides, register_configs, to_object
from robot_rl.paths import CONF_DIR

log = logging.getLogger(__name__)


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
    from robot_rl.pipeline import run_pipeline

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
