"""robot-rl-record: drive the simulated arm with a teleop device (keyboard, SpaceMouse,
gamepad), the task's scripted expert, or the replay of a stored episode, and record the
episodes into an episode store (created if missing, appended to if it exists).

Parsing and wiring only: the devices and the recording loop live in ``robot_rl.teleop``.
Besides the store, the run directory gets ``session.json`` (every episode of the session
with its seed and fate, dropped ones included) and, with ``teleop.events_out``, the raw
input events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from robot_rl.cli.common import console, fail_on_config_error, quiet_library_loggers
from robot_rl.config.commands import RecordConfig
from robot_rl.config.store import register_configs, to_object
from robot_rl.config.validation import ConfigError
from robot_rl.paths import CONF_DIR, code_version

log = logging.getLogger(__name__)

#: Version of the safety filter that vets recorded actions (none exists yet).


#: Environment variable holding the operator's name (never a config value: Hydra writes
#: the config to the run directory in plain text).
OPERATOR_ENV = "ROBOT_RL_OPERATOR"
#: Config keys left out of the config hash: who recorded is not what was recorded, and
#: an unsalted hash of a config naming the operator could be reversed by trying names.
CONFIG_HASH_EXCLUDED = ("operator_pseudonym", "operator_salt_file")
_PSEUDONYM_RE = re.compile(r"^[0-9a-f]{16}$")


def stored_operator(name: str, salt_file: str) -> str:
    """What the store keeps of the operator: a salted pseudonym, never the name."""
    if not name.strip():
        return ""
    # The single call site of the data layer's pseudonymization (governance): nothing
    # else in the recording path turns an operator's name into what is stored.
    from robot_rl.data import governance

    try:
        # Recording may create the salt (labelling and purging never do).
        kwargs = {}
        if "create" in inspect.signature(governance.load_salt).parameters:
            kwargs["create"] = True
        salt = governance.load_salt(salt_file or None, **kwargs)
        return governance.pseudonymize(name, salt)
    except (OSError, ValueError) as e:
        raise ConfigError(f"operator pseudonym salt (operator_salt_file): {e}") from None


def resolve_operator(
    cfg: RecordConfig, operator_driven: bool, prompt: Callable[[str], str] | None = None
) -> str:
    """The operator pseudonym for the provenance.

    From ``operator_pseudonym`` as is, else from ``$ROBOT_RL_OPERATOR``, else, when a
    person drives the device and stdin is a terminal, from a prompt; names are
    pseudonymized at once and never kept. A person recording with no operator gets a
    loud warning: those episodes can never be purged by operator.
    """
    name = os.environ.get(OPERATOR_ENV, "")
    if cfg.operator_pseudonym:
        if name.strip():
            raise ConfigError(
                f"operator_pseudonym and ${OPERATOR_ENV} are both set; use one of them"
            )
        if not _PSEUDONYM_RE.match(cfg.operator_pseudonym):
            raise ConfigError(
                f"operator_pseudonym={cfg.operator_pseudonym!r}: expected 16 lowercase hex "
                "digits, as robot-rl-data prints pseudonyms (a name goes in "
                f"${OPERATOR_ENV})"
            )
        return cfg.operator_pseudonym
    if not name.strip() and operator_driven:
        if prompt is None and sys.stdin.isatty():
            prompt = input
        if prompt is not None:
            try:
                name = prompt("operator name (stored only as a salted pseudonym; empty: none): ")
            except EOFError:
                name = ""
    if name.strip():
        return stored_operator(name, cfg.operator_salt_file)
    if operator_driven:
        console.print(
            "[bold red]WARNING: no operator[/bold red]: a person is recording, but neither "
            f"${OPERATOR_ENV} nor operator_pseudonym is set; these episodes can never be "
            "found or purged by operator"
        )
    return ""


def config_hash(resolved: dict[str, Any]) -> str:
    """Hash of the resolved config, without the operator fields (see
    :data:`CONFIG_HASH_EXCLUDED`)."""
    kept = {k: v for k, v in resolved.items() if k not in CONFIG_HASH_EXCLUDED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def open_or_create_store(cfg: RecordConfig, env: Any) -> Any:
    """The store at ``cfg.store.path`` opened for appending, created when missing.

    Raises:
        ConfigError: the path is no store (or another writer holds it), or the store
            does not match this robot, task, control rate, observations or action size.
    """
    from robot_rl.teleop.expert_store import sim_obs_spec

    path = Path(cfg.store.path)
    obs_spec = sim_obs_spec(env)
    action_dim = int(env.action_space.shape[0])
    try:
        return _open_or_create(cfg, path, env, obs_spec, action_dim)
    except (OSError, ValueError, RuntimeError) as e:  # not a store, locked, unwritable
        raise ConfigError(f"store.path={str(path)!r}: {e}") from None


def _open_or_create(
    cfg: RecordConfig, path: Path, env: Any, obs_spec: dict, action_dim: int
) -> Any:
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.teleop.expert_store import new_sim_store

    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return new_sim_store(
            path,
            env,
            robot=cfg.robot.name,
            task=cfg.task.name,
            control_hz=cfg.task.control_hz,
            chunk_steps=cfg.store.chunk_steps or None,
            timestamps=True,
        )
    if cfg.store.chunk_steps:
        raise ValueError(
            f"store.chunk_steps={cfg.store.chunk_steps} sets the chunks of a new store; this "
            "one exists and keeps its own chunks: leave store.chunk_steps out"
        )
    store = EpisodeStore.open(path, mode="a")
    want = {
        "robot": cfg.robot.name,
        "task": cfg.task.name,
        "control_hz": float(cfg.task.control_hz),
        "obs_spec": {k: (tuple(s), str(d)) for k, (s, d) in obs_spec.items()},
        "action_dim": action_dim,
    }
    diff = store.mismatches(want, theirs="this run")
    if diff:
        store.close()
        raise ValueError(
            "it holds other episodes than this run records ("
            + "; ".join(diff)
            + "); choose another store.path"
        )
    return store


def run_record(cfg: RecordConfig, run_dir: Path, resolved: dict[str, Any]) -> dict[str, Any]:
    """Records a session and returns what ``session.json`` holds."""
    # Heavy imports here, so that `--help` and config errors answer instantly.
    from robot_rl.data.episode_store import EpisodeProvenance
    from robot_rl.sim.env import make_env, safety_filter_version_of
    from robot_rl.teleop.devices import DeviceUnavailableError, make_device
    from robot_rl.teleop.display import LineDisplay, RichLiveDisplay
    from robot_rl.teleop.recorder import Recorder

    seed = cfg.seed if cfg.seed is not None else secrets.randbelow(2**31 - 1)
    events_out = None
    if cfg.teleop.events_out:
        events_out = Path(cfg.teleop.events_out)
        if not events_out.is_absolute():
            events_out = run_dir / events_out
        events_out.parent.mkdir(parents=True, exist_ok=True)

    # The device first: one that cannot open must leave no store behind.
    try:
        device = make_device(
            cfg.teleop,
            task=cfg.task.name,
            max_ee_step_m=cfg.task.max_ee_step_m,
            noise_seed=seed,
            events_out=events_out,
        )
    except DeviceUnavailableError:
        raise
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"teleop={cfg.teleop.device}: {e}") from None
    try:
        env = make_env(cfg.task, cfg.robot, cfg.sim)
        store = open_or_create_store(cfg, env)
    except BaseException:
        device.close()
        raise
    n_before = store.n_episodes
    if cfg.seed is None and getattr(device, "reset_seed", None) is not None:
        seed = int(device.reset_seed)  # a replay resets as its episode did
    try:
        operator = resolve_operator(cfg, bool(getattr(device, "operator_driven", False)))
    except BaseException:
        device.close()
        store.close()
        raise
    provenance = EpisodeProvenance(
        source=device.source,
        operator=operator,
        robot_id=cfg.robot_id or f"sim:{cfg.robot.name}",
        policy_id=device.policy_id,
        config_hash=config_hash(resolved),
        code_version=code_version(),
        safety_filter_version=safety_filter_version_of(env),
    )
    live = cfg.progress and sys.stderr.isatty()
    display = RichLiveDisplay(getattr(device, "bindings", None)) if live else LineDisplay(console)
    recorder = Recorder(
        env,
        device,
        store,
        provenance=provenance,
        n_episodes=cfg.n_episodes,
        seed=seed,
        control_hz=cfg.task.control_hz,
        realtime=cfg.teleop.realtime,
        review=cfg.teleop.review,
        queue_blocks=cfg.queue_blocks,
        block_steps=cfg.block_steps,
        max_episode_steps=cfg.max_episode_steps,
        on_overflow=cfg.on_overflow,
        display=display,
    )
    console.print(
        f"recording {cfg.n_episodes or 'until quit'} episode(s) of {cfg.task.name} with "
        f"{cfg.teleop.device} (seeds from {seed}) into {store.path} "
        f"({n_before} episodes already there)"
    )
    session: dict[str, Any] = {
        "store": str(store.path),
        "device": cfg.teleop.device,
        "first_seed": seed,
        "episodes_before": n_before,
    }
    summary = None
    try:
        with display:
            summary = recorder.run()
    finally:
        device.close()
        session["episodes"] = [dataclasses.asdict(r) for r in recorder.episodes]
        if summary is not None:
            session["summary"] = {
                k: v for k, v in dataclasses.asdict(summary).items() if k != "episodes"
            }
        n_after = store.n_episodes
        store.close()
        session["episodes_after"] = n_after
        (run_dir / "session.json").write_text(json.dumps(session, indent=2) + "\n")
    assert summary is not None
    console.print(
        f"[bold green]kept {summary.n_episodes}[/bold green] episode(s), {summary.n_steps} "
        f"steps, success {summary.success_rate:.0%}; discarded {summary.n_discarded}, "
        f"overflowed {summary.n_overflowed} ({summary.dropped_rows} rows dropped, "
        f"on_overflow={cfg.on_overflow}) -> "
        f"{session['store']} now has {session['episodes_after']} episodes "
        f"[dim](session log: {run_dir / 'session.json'})[/dim]"
    )
    return session


@hydra.main(config_path=str(CONF_DIR), config_name="record", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    quiet_library_loggers()
    from robot_rl.teleop.devices import DeviceUnavailableError
    from robot_rl.teleop.recorder import RecorderError

    with fail_on_config_error():
        config = to_object(cfg, RecordConfig)
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        try:
            run_record(config, run_dir, resolved)
        except DeviceUnavailableError as e:
            console.print(f"[bold red]error:[/bold red] {e} Nothing was recorded.")
            sys.exit(1)
        except RecorderError as e:
            console.print(f"[bold red]recording stopped:[/bold red] {e}")
            sys.exit(1)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/yellow]: committed episodes are kept")
            sys.exit(130)


def main() -> None:
    register_configs()
    _hydra_main()


if __name__ == "__main__":
    sys.exit(main())
