"""Crash safety of recording: a process running the real recorder (scripted expert, writer
thread, real store on disk) is SIGKILLed at random moments, over and over, into the same
store. After every kill the store opens and validates, every episode committed before is
unchanged, and no partial episode is visible."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import zarr

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore

N_KILLS = 60
HORIZON = 8  # every episode has exactly this many rows (no early termination)


def _record_forever(path: str, ready, error_file: str) -> None:
    """The recording process: appends scripted episodes until it is killed."""
    try:
        from robot_rl.sim.env import RobotEnv
        from robot_rl.teleop.devices import scripted_device
        from robot_rl.teleop.recorder import Recorder

        env = RobotEnv("reach", horizon_steps=HORIZON, terminate_on_success=False)
        store = EpisodeStore.open(path, mode="a")
        seed = store.n_episodes
        ready.set()
        Recorder(
            env,
            scripted_device("reach", action_noise_std=0.2, seed=seed),
            store,
            provenance=EpisodeProvenance(source="scripted", robot_id="sim:panda"),
            n_episodes=0,  # until killed
            seed=seed,
            realtime=False,
            block_steps=3,
        ).run()
    except BaseException:
        with open(error_file, "w") as f:
            f.write(traceback.format_exc())
        os._exit(3)
    os._exit(4)  # n_episodes=0 never ends by itself


def _check(path, hashes: list[str]) -> bool:
    """Checks the store after a kill and extends ``hashes``; True if the kill left an
    uncommitted tail behind (rows past the committed count)."""
    store = EpisodeStore.open(path, mode="r")
    report = store.validate()
    assert report.ok, str(report)
    n = store.n_episodes
    assert n >= len(hashes), f"committed episodes went from {len(hashes)} to {n}"
    lengths = np.diff(store.episode_ends, prepend=0)
    assert np.all(lengths == HORIZON), f"episode lengths {lengths.tolist()}"
    data = {k: store.array(k) for k in store.data_keys}
    done = data["terminated"] | data["truncated"]
    expected_done = np.zeros(n * HORIZON, dtype=bool)
    expected_done[HORIZON - 1 :: HORIZON] = True
    np.testing.assert_array_equal(done, expected_done)  # whole episodes only
    provenance = zarr.open_group(path, mode="r")["meta/provenance"][:n]
    for i in range(n):
        h = hashlib.sha256()
        for k in sorted(data):
            h.update(k.encode() + data[k][i * HORIZON : (i + 1) * HORIZON].tobytes())
        h.update(str(provenance[i]).encode())
        if i < len(hashes):
            assert h.hexdigest() == hashes[i], f"committed episode {i} changed"
        else:
            hashes.append(h.hexdigest())
    return store.zarr_array("action").shape[0] > store.n_steps


@pytest.mark.slow
def test_sigkill_at_random_moments_never_corrupts_or_exposes_a_partial_episode(tmp_path, reach_env):
    path = tmp_path / "crash.zarr"
    spaces = reach_env.observation_space.spaces
    EpisodeStore.create(
        path,
        obs_spec={k: (s.shape, "float32") for k, s in spaces.items()},
        action_dim=4,
        control_hz=20.0,
        robot="panda",
        task="reach",
        chunk_steps=20,  # chunk boundaries fall inside episodes
        timestamps=True,
    ).close()
    seed = int(os.environ.get("CRASH_TEST_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("fork")  # the child skips re-importing the stack
    hashes: list[str] = []
    torn_kills = 0
    start = time.monotonic()
    for kill in range(N_KILLS):
        ready = ctx.Event()
        error_file = str(tmp_path / "child_error.txt")
        proc = ctx.Process(target=_record_forever, args=(str(path), ready, error_file))
        proc.start()
        assert ready.wait(60), f"kill {kill}: the recorder did not start"
        time.sleep(rng.uniform(0.0, 0.8))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
        if proc.exitcode != -signal.SIGKILL:
            msg = Path(error_file).read_text() if os.path.exists(error_file) else ""
            pytest.fail(f"kill {kill} (seed {seed}): recorder exited {proc.exitcode}\n{msg}")
        try:
            torn = _check(path, hashes)
        except AssertionError as e:
            raise AssertionError(f"after kill {kill} (CRASH_TEST_SEED={seed}): {e}") from None
        torn_kills += torn
    elapsed = time.monotonic() - start
    print(f"{N_KILLS} kills in {elapsed:.0f} s, {len(hashes)} episodes, {torn_kills} torn tails")
    # The kills really hit recording: episodes accumulated, and many kills left an
    # uncommitted tail behind (killed mid-episode or mid-commit) that readers ignored.
    assert len(hashes) >= N_KILLS // 5
    assert torn_kills >= 5

    # The store is still appendable: a clean session adds exactly its episodes.
    from robot_rl.teleop.devices import scripted_device
    from robot_rl.teleop.recorder import Recorder

    store = EpisodeStore.open(path, mode="a")
    before = store.n_episodes
    Recorder(
        reach_env,
        scripted_device("reach"),
        store,
        provenance=EpisodeProvenance(source="scripted"),
        n_episodes=2,
        seed=before,
        max_episode_steps=HORIZON,
    ).run()
    store.close()
    store = EpisodeStore.open(path)
    assert store.n_episodes == before + 2 and store.validate().ok
