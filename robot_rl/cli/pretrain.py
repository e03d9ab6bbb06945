"""robot-rl-pretrain: offline learning from an episode store to a policy artifact.

Example: ``robot-rl-pretrain algo=iql dataset.path=outputs/.../demos.zarr train.steps=20000``
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
from robot_rl.config.commands import PretrainConfig
from robot_rl.config.store import check_overrides, register_configs, to_object
from robot_rl.paths import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="pretrain", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    quiet_library_loggers()
    with fail_on_config_error():
        config = to_object(cfg, PretrainConfig)
    from robot_rl.algos.pretrain import pretrain
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.sampler_rows import resolve_obs_keys

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with fail_on_user_error(), EpisodeStore.open(config.dataset.path, mode="r") as store:
        report = store.validate()
        if not report.ok:
            console.print(f"[bold red]error:[/bold red] store failed validation:\n{report}")
            sys.exit(1)
        console.print(
            f"[bold]robot-rl-pretrain[/bold] {config.algo.name} on {store.path} "
            f"({store.n_episodes} episodes, {store.n_steps} steps) -> {run_dir}"
        )
        keys = resolve_obs_keys(store, config.dataset.obs_keys, images=False)
        left_out = [k for k in store.obs_keys if k not in keys]
        console.print(
            f"  observation keys: {keys}"
            + (f"; left out {left_out} (dataset.obs_keys=[...] to choose)" if left_out else "")
        )
        result = pretrain(
            store,
            config.algo,
            run_dir,
            train=config.train,
            obs_keys=keys,
            progress=show_progress(config.progress),
            run_config=OmegaConf.to_container(cfg, resolve=True),
        )
    final = {k: round(v[-1][1], 5) for k, v in result.history.items() if v}
    console.print(f"[bold green]done[/bold green]: policy -> {result.policy_dir}; {final}")
    from robot_rl.data.action_bounds import is_unit
    from robot_rl.policies.manifest import read_manifest

    manifest = read_manifest(result.policy_dir)
    if not is_unit(manifest.action_low, manifest.action_high):
        console.print(
            "  the store's actions are not in [-1, 1]: the policy learned them mapped to "
            f"[-1, 1] and acts in the store's units, low={manifest.action_low} "
            f"high={manifest.action_high}"
        )


def main() -> None:
    register_configs()
    with fail_on_config_error():
        check_overrides(sys.argv[1:], "pretrain")
    _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
