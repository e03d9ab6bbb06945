"""robot-rl-record end to end, as a user runs it: a real process, a real store on disk."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.safety import VERSION as SAFETY_VERSION
from robot_rl.teleop.events import RawEvent, read_event_log


def run_record(tmp_path, *args, env_extra=None):
    """robot-rl-record in a subprocess; ``env_extra`` values of None unset the variable."""
    env = {**os.environ, "ROBOT_RL_PSEUDONYM_SALT_FILE": str(tmp_path / "salt")}
    env.pop("ROBOT_RL_OPERATOR", None)
    for key, value in (env_extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "robot_rl.cli.record", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_scripted_records_headless_and_appends_to_the_store(tmp_path):
    store_path = tmp_path / "demos.zarr"
    common = ["task=reach", f"store.path={store_path}"]
    proc = run_record(
        tmp_path, *common, "n_episodes=2", "seed=0", f"hydra.run.dir={tmp_path / 'r1'}"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "kept 2 episode(s)" in proc.stdout

    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 2 and store.validate().ok
    before = [store.episode(i) for i in range(2)]
    p = store.provenance(0)
    assert p.source == "scripted" and p.policy_id == "scripted-expert:reach"
    assert p.robot_id == "sim:panda" and p.safety_filter_version == f"{SAFETY_VERSION} (nominal)"
    assert p.code_version.startswith("0.1.0") and len(p.config_hash) == 16
    assert p.operator == "" and p.success is True
    session = json.loads((tmp_path / "r1" / "session.json").read_text())
    assert session["first_seed"] == 0 and session["episodes_after"] == 2
    assert [e["store_index"] for e in session["episodes"]] == [0, 1]
    store.close()

    proc = run_record(
        tmp_path,
        *common,
        "n_episodes=1",
        "seed=2",
        f"hydra.run.dir={tmp_path / 'r2'}",
        env_extra={"ROBOT_RL_OPERATOR": "Jane Doe"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 3 and store.validate().ok
    for i in range(2):  # earlier episodes untouched
        for k, v in store.episode(i).items():
            np.testing.assert_array_equal(v, before[i][k])
    operator = store.provenance(2).operator
    assert operator and "Jane" not in operator  # a pseudonym, never the name
    assert (tmp_path / "salt").is_file()  # the salt lives outside the store
    # The name is nowhere in the run directory (Hydra's saved config included), and
    # the config hash does not depend on who recorded.
    for f in (tmp_path / "r2").rglob("*"):
        if f.is_file():
            assert "Jane" not in f.read_text(errors="replace"), f
    from robot_rl.cli.record import config_hash

    base = {"seed": 2, "n_episodes": 1, "operator_salt_file": ""}
    assert config_hash({**base, "operator_pseudonym": "0123456789abcdef"}) == config_hash(
        {**base, "operator_pseudonym": ""}
    )
    assert config_hash({**base, "seed": 3}) != config_hash(base)
    # Replaying episode 2 without seed= resets with its stored seed and reproduces it.
    assert store.provenance(2).reset_seed == 2
    original = store.episode(2)
    store.close()
    proc = run_record(
        tmp_path,
        "task=reach",
        "teleop=replay",
        f"teleop.replay_store={store_path}",
        "teleop.replay_episode=2",
        "n_episodes=1",
        f"store.path={tmp_path / 'replayed.zarr'}",
        f"hydra.run.dir={tmp_path / 'r3'}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replayed = EpisodeStore.open(tmp_path / "replayed.zarr").episode(0)
    for k in original:
        if k != "timestamp":
            np.testing.assert_array_equal(replayed[k], original[k], err_msg=k)


def test_the_operator_name_is_no_config_value(tmp_path):
    common = ["task=reach", f"store.path={tmp_path / 's.zarr'}", "n_episodes=1", "seed=0"]
    proc = run_record(tmp_path, *common, "operator=alice", f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode != 0 and not (tmp_path / "s.zarr").exists()
    proc = run_record(
        tmp_path,
        *common,
        "operator_pseudonym=0123456789abcdef",
        f"hydra.run.dir={tmp_path / 'r1'}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert EpisodeStore.open(tmp_path / "s.zarr").provenance(0).operator == "0123456789abcdef"
    proc = run_record(
        tmp_path, *common, "operator_pseudonym=alice", f"hydra.run.dir={tmp_path / 'r2'}"
    )
    assert proc.returncode == 2 and "operator_pseudonym" in proc.stdout


def test_keyboard_from_a_recorded_event_log(tmp_path):
    # The keyboard path without a keyboard: a raw-event log drives it (hold w, start,
    # stop after 4 steps, mark success in review, keep).
    events = [
        RawEvent("KeyDown", {"key": "w"}, 0.0, 0),
        RawEvent("KeyDown", {"key": "return"}, 0.0, 0),
        RawEvent("KeyDown", {"key": "return"}, 0.0, 4),
        RawEvent("KeyDown", {"key": "y"}, 0.0, 5),
        RawEvent("KeyDown", {"key": "return"}, 0.0, 6),
    ]
    log = tmp_path / "in.jsonl"
    log.write_text("".join(e.to_json() + "\n" for e in events))
    run_dir = tmp_path / "run"
    proc = run_record(
        tmp_path,
        "teleop=keyboard",
        "task=reach",
        f"store.path={tmp_path / 's.zarr'}",
        "n_episodes=1",
        "seed=4",
        f"teleop.events_in={log}",
        "teleop.events_out=events.jsonl",
        "teleop.realtime=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = EpisodeStore.open(tmp_path / "s.zarr")
    assert store.n_episodes == 1 and store.n_steps == 4
    ep = store.episode(0)
    np.testing.assert_allclose(ep["action"], [[0.5, 0, 0, 1]] * 4)
    assert ep["truncated"].tolist() == [False, False, False, True]
    p = store.provenance(0)
    assert p.source == "teleop" and p.success is True and p.policy_id == ""
    # A person recorded with no operator: said loudly (never purgeable by operator).
    assert "WARNING: no operator" in proc.stdout and p.operator == ""
    # The raw events were logged again, at the same ticks.
    logged = read_event_log(run_dir / "events.jsonl")
    assert [(e.tick, e.data["key"]) for e in logged if e.type == "KeyDown"] == [
        (e.tick, e.data["key"]) for e in events
    ]


def test_a_store_of_another_task_is_refused_by_name(tmp_path):
    store_path = tmp_path / "s.zarr"
    proc = run_record(
        tmp_path, "task=reach", f"store.path={store_path}", "n_episodes=1", "seed=0",
        f"hydra.run.dir={tmp_path / 'r1'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_record(
        tmp_path, "task=push", f"store.path={store_path}", "n_episodes=1",
        f"hydra.run.dir={tmp_path / 'r2'}",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "task: store has 'reach', this run 'push'" in proc.stdout
    assert "store.path=" in proc.stdout
    assert EpisodeStore.open(store_path).n_episodes == 1


def test_bad_teleop_settings_fail_fast_and_name_the_key(tmp_path):
    proc = run_record(tmp_path, "teleop=replay", f"store.path={tmp_path / 's.zarr'}")
    assert proc.returncode != 0 and "teleop.replay_store" in proc.stdout + proc.stderr
    proc = run_record(tmp_path, "teleop.speed=2", f"store.path={tmp_path / 's.zarr'}")
    assert proc.returncode == 2 and "teleop.speed" in proc.stdout
    assert not (tmp_path / "s.zarr").exists()


def test_chunk_size_of_an_existing_store_is_refused_not_ignored(tmp_path):
    # store.chunk_steps shapes a new store only; appending with it set used to drop it.
    import pytest

    from robot_rl.cli.record import open_or_create_store
    from robot_rl.config.schema import (
        ConfigError,
        RecordConfig,
        RecordStoreConfig,
        RobotConfig,
        SimConfig,
        TaskConfig,
        TeleopConfig,
    )
    from robot_rl.sim.env import make_env

    def config(chunk_steps):
        return RecordConfig(
            robot=RobotConfig(),
            task=TaskConfig(name="reach"),
            sim=SimConfig(),
            teleop=TeleopConfig(),
            store=RecordStoreConfig(path=str(tmp_path / "s.zarr"), chunk_steps=chunk_steps),
        )

    env = make_env(TaskConfig(name="reach"))
    open_or_create_store(config(7), env).close()  # a new store takes it
    with pytest.raises(ConfigError, match=r"store\.chunk_steps=7 sets the chunks of a new"):
        open_or_create_store(config(7), env)
    open_or_create_store(config(0), env).close()
    env.close()


# ------------------------------------------------------------ devices that cannot open

NO_DISPLAY = {"DISPLAY": None, "WAYLAND_DISPLAY": None, "SDL_VIDEODRIVER": None}


def _tree(path):
    """Every file under path with its size and modification time."""
    return {
        str(f.relative_to(path)): (f.stat().st_size, f.stat().st_mtime_ns)
        for f in sorted(path.rglob("*"))
    }


def _assert_refused(proc, device, reason):
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"teleop={device} cannot open" in proc.stdout, out
    assert reason in proc.stdout, out
    assert "teleop.events_in=<event log>" in proc.stdout and "Traceback" not in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland display")
@pytest.mark.parametrize(
    "display_env, reason",
    [
        # No display at all: refused before SDL starts.
        ({}, "there is no display to open it on (DISPLAY and WAYLAND_DISPLAY are unset)"),
        # A video driver asked for that cannot start: pygame.error.
        ({"SDL_VIDEODRIVER": "x11"}, "SDL could not open its input window (x11 not available)"),
        # A display nobody serves: SDL falls back to a window that gets no keys.
        ({"DISPLAY": ":987"}, "SDL fell back to its 'offscreen' video driver"),
    ],
    ids=["unset", "x11-driver", "unreachable"],
)
def test_a_keyboard_without_a_display_is_an_error_and_records_nothing(
    tmp_path, display_env, reason
):
    store_path = tmp_path / "kb.zarr"
    proc = run_record(
        tmp_path,
        "teleop=keyboard",
        f"store.path={store_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env_extra={**NO_DISPLAY, **display_env},
    )
    _assert_refused(proc, "keyboard", reason)
    assert "Run it in a desktop session, or set DISPLAY" in proc.stdout
    assert not store_path.exists()
    assert not (tmp_path / "run" / "session.json").exists()


def test_a_gamepad_that_is_not_there_is_an_error_and_leaves_the_store_alone(tmp_path):
    pygame = pytest.importorskip("pygame")
    pygame.joystick.init()
    try:
        if pygame.joystick.get_count():
            pytest.skip("a joystick is connected")
    finally:
        pygame.joystick.quit()
    store_path = tmp_path / "s.zarr"
    with EpisodeStore.create(
        store_path,
        obs_spec={"x": ((2,), "float32")},
        action_dim=4,
        control_hz=20.0,
        robot="panda",
        task="lift",
    ) as store:
        store.append_episode(
            {
                "x": np.zeros((3, 2), np.float32),
                "action": np.zeros((3, 4), np.float32),
                "reward": np.zeros(3, np.float32),
                "terminated": np.zeros(3, bool),
                "truncated": np.array([0, 0, 1], bool),
            },
            EpisodeProvenance(source="scripted"),
        )
    before = _tree(store_path)
    proc = run_record(
        tmp_path,
        "teleop=gamepad",
        f"store.path={store_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        env_extra=NO_DISPLAY,
    )
    _assert_refused(proc, "gamepad", "no joystick #0 (teleop.joystick_index); 0 connected")
    assert "Plug a gamepad in" in proc.stdout
    assert _tree(store_path) == before
