"""The incremental episode writer: begin / append / commit / discard, and crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import zarr

from robot_rl.data import episode_writer as ew
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore, open_store


def _blocks(frames: dict[str, np.ndarray], sizes: list[int]):
    at = 0
    for n in sizes:
        yield {k: v[at : at + n] for k, v in frames.items()}
        at += n
    assert at == len(frames["action"])


def _chunk_files(path, key="action"):
    root = path / "data" / key / "c"
    return sorted(int(p.name) for p in root.iterdir()) if root.is_dir() else []


def test_many_small_appends_equal_one_big_append(new_store, make_frames, make_prov, tmp_path):
    whole, pieces = new_store("whole"), new_store("pieces")
    episodes = [make_frames(11, 0, seed=0), make_frames(7, 11, last="terminated", seed=1)]
    block_sizes = [[1, 0, 2, 5, 1, 2], [3, 4]]  # across 4-row chunk boundaries, one empty
    for i, frames in enumerate(episodes):
        whole.append_episode(frames, make_prov(i))
        with pieces.begin_episode() as w:
            for block in _blocks(frames, block_sizes[i]):
                w.append(block)
            assert w.n_rows == len(frames["action"])
            assert w.commit(make_prov(i)) == i
    assert pieces.content_hash() == whole.content_hash()
    for key in ("joint_pos", "action", "reward"):
        a, b = whole.stats(key), pieces.stats(key)
        np.testing.assert_allclose(b["mean"], a["mean"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b["std"], a["std"], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(b["max"], a["max"])
    assert pieces.validate().ok
    pieces.close()
    with open_store(tmp_path / "pieces") as r:
        assert (r.n_episodes, r.n_steps) == (2, 18)
        np.testing.assert_array_equal(r.episode(1)["terminated"], episodes[1]["terminated"])


def test_ended_episodes_commit_together_as_if_committed_one_by_one(
    new_store, make_frames, make_prov, tmp_path
):
    one_by_one, together = new_store("one"), new_store("together")
    episodes = [
        make_frames(11, 0, seed=0),
        make_frames(7, 11, last="terminated", seed=1),
        make_frames(5, 18, seed=2),
    ]
    for i, frames in enumerate(episodes):
        one_by_one.append_episode(frames, make_prov(i))
    reader = open_store(tmp_path / "together")
    with together.begin_episode() as w:
        for i, frames in enumerate(episodes[:-1]):
            for block in _blocks(frames, [3, len(frames["action"]) - 3]):
                w.append(block)
            w.end_episode(make_prov(i))
        assert w.n_ended == 2 and w.n_rows == 0
        # Ended episodes are not visible before the commit.
        assert together.n_episodes == 0
        reader.refresh()
        assert reader.n_episodes == 0
        w.append(episodes[-1])
        assert w.commit(make_prov(2)) == 2
    reader.refresh()
    assert reader.n_episodes == 3 and reader.episode_ends.tolist() == [11, 18, 23]
    reader.close()
    assert together.content_hash() == one_by_one.content_hash()
    for i in range(3):
        assert together.provenance(i) == one_by_one.provenance(i)
        assert together.episode_index(make_prov(i).episode_id) == i
    for key in ("joint_pos", "action", "reward"):
        a, b = one_by_one.stats(key), together.stats(key)
        np.testing.assert_allclose(b["mean"], a["mean"], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b["std"], a["std"], rtol=1e-10, atol=1e-12)
    assert together.validate().ok


def test_ended_episodes_are_dropped_with_a_discard_and_checked_like_commits(
    filled_store, make_frames, make_prov
):
    before = filled_store.content_hash()
    w = filled_store.begin_episode()
    with pytest.raises(ValueError, match="0 control rows"):
        w.end_episode(make_prov(5))
    w.append(make_frames(4, 14))
    w.end_episode(make_prov(5))
    w.append(make_frames(3, 18))
    with pytest.raises(ValueError, match="ended earlier in this writer"):
        w.end_episode(make_prov(5))
    with pytest.raises(ValueError, match="already used by episode 0"):
        w.commit(filled_store.provenance(0))
    assert w.n_rows == 3 and w.n_ended == 1  # the failed calls changed nothing
    w.discard()
    assert filled_store.n_episodes == 3 and filled_store.content_hash() == before
    assert filled_store.validate().ok


def test_chunks_reach_disk_before_commit_but_stay_invisible(filled_store, make_frames, tmp_path):
    reader = open_store(tmp_path / "store")
    w = filled_store.begin_episode()
    w.append(make_frames(13, 14))  # rows 14-26 with 4-row chunks: chunks 3-5 are full
    assert {4, 5} <= set(_chunk_files(tmp_path / "store"))  # written, not buffered
    reader.refresh()
    assert reader.n_episodes == 3 and reader.n_steps == 14
    w.discard()
    reader.close()


def test_discard_leaves_nothing(filled_store, make_frames, tmp_path):
    path = tmp_path / "store"
    before = filled_store.content_hash()
    w = filled_store.begin_episode()
    w.append(make_frames(9, 14))
    w.discard()
    assert w.closed and filled_store.n_episodes == 3
    assert filled_store.content_hash() == before
    # Nothing past the committed 14 rows survives: chunk 3 holds rows 12-15.
    assert _chunk_files(path) == [0, 1, 2, 3]
    assert zarr.open_group(path, mode="r")["data/action"].shape[0] == 14
    with pytest.raises(RuntimeError, match="closed"):
        w.append(make_frames(1, 14))
    assert filled_store.begin_episode().n_rows == 0  # the store takes a new episode


def test_exception_in_with_block_discards(filled_store, make_frames, make_prov, tmp_path):
    before = filled_store.content_hash()
    with pytest.raises(KeyError, match="operator pressed stop"), filled_store.begin_episode() as w:
        w.append(make_frames(6, 14))
        raise KeyError("operator pressed stop")
    assert w.closed and filled_store.content_hash() == before
    assert zarr.open_group(tmp_path / "store", mode="r")["data/reward"].shape[0] == 14
    assert filled_store.append_episode(make_frames(2, 14), make_prov(3)) == 3


def test_leaving_with_block_without_commit_discards(filled_store, make_frames):
    with filled_store.begin_episode() as w:
        w.append(make_frames(3, 14))
    assert w.closed and filled_store.n_episodes == 3


def test_bad_block_keeps_earlier_rows_and_store(filled_store, make_frames, make_prov, tmp_path):
    before = filled_store.content_hash()
    good = make_frames(6, 14, seed=3)
    w = filled_store.begin_episode()
    w.append({k: v[:4] for k, v in good.items()})
    bad = {k: v[4:] for k, v in good.items()}
    bad["action"] = bad["action"].copy()
    bad["action"][1, 0] = np.nan
    with pytest.raises(ValueError, match=r"frames\['action'\]: NaN"):
        w.append(bad)
    with pytest.raises(ValueError, match="missing"):
        w.append({"action": good["action"][4:]})
    assert w.n_rows == 4 and not w.closed
    assert filled_store.content_hash() == before and filled_store.n_episodes == 3
    with open_store(tmp_path / "store") as r:
        assert r.content_hash() == before
    w.append({k: v[4:] for k, v in good.items()})
    assert w.commit(make_prov(3)) == 3
    np.testing.assert_array_equal(filled_store.episode(3)["action"], good["action"].astype("f4"))
    assert filled_store.validate().ok


def test_one_writer_at_a_time(filled_store, make_frames, make_prov, tmp_path):
    w = filled_store.begin_episode()
    with pytest.raises(RuntimeError, match="already being written"):
        filled_store.begin_episode()
    with pytest.raises(RuntimeError, match="already being written"):
        filled_store.append_episode(make_frames(2, 14), make_prov(3))
    w.discard()
    with open_store(tmp_path / "store") as r, pytest.raises(RuntimeError, match="read-only"):
        r.begin_episode()


def test_commit_errors_keep_the_writer_open(filled_store, make_frames, make_prov):
    w = filled_store.begin_episode()
    with pytest.raises(ValueError, match="0 control rows"):
        w.commit(make_prov(3))
    w.append(make_frames(2, 14))
    with pytest.raises(ValueError, match=r"provenance\.source"):
        w.commit(make_prov(3, source="human"))
    with pytest.raises(ValueError, match="already used by episode 1"):
        w.commit(make_prov(1))  # episode_id ep0001 is taken
    assert not w.closed and filled_store.n_episodes == 3
    assert w.commit(make_prov(3)) == 3
    with pytest.raises(RuntimeError, match="closed"):
        w.commit(make_prov(4))


def test_close_discards_an_open_writer(filled_store, make_frames, tmp_path):
    w = filled_store.begin_episode()
    w.append(make_frames(9, 14))
    filled_store.close()
    assert w.closed
    with open_store(tmp_path / "store") as r:
        assert r.n_steps == 14 and r.validate().ok
    assert zarr.open_group(tmp_path / "store", mode="r")["data/action"].shape[0] == 14


def test_timestamps_must_not_decrease_across_blocks(tmp_path):
    store = EpisodeStore.create(
        tmp_path / "t",
        obs_spec={"x": ((1,), "float32")},
        action_dim=1,
        control_hz=10,
        robot="r",
        task="t",
        timestamps=True,
    )

    def block(ts):
        n = len(ts)
        return {
            "x": np.zeros((n, 1)),
            "action": np.zeros((n, 1)),
            "reward": np.zeros(n),
            "terminated": np.zeros(n, bool),
            "truncated": np.zeros(n, bool),
            "timestamp": np.asarray(ts, dtype=np.float64),
        }

    w = store.begin_episode()
    w.append(block([0.0, 0.1]))
    with pytest.raises(ValueError, match="before the last appended"):
        w.append(block([0.05]))
    with pytest.raises(ValueError, match="decreases at row 1"):
        w.append(block([0.3, 0.2]))
    with pytest.raises(ValueError, match=r"missing.*timestamp"):
        w.append({k: v for k, v in block([0.4]).items() if k != "timestamp"})
    w.append(block([0.1, 0.2]))
    w.commit(EpisodeProvenance("scripted"))
    np.testing.assert_array_equal(store.episode(0)["timestamp"], [0.0, 0.1, 0.1, 0.2])
    store.close()


# ---------------------------------------------------------------- crashes (SIGKILL)

_CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from robot_rl.data.episode_store import EpisodeStore, EpisodeProvenance

    def frames(ep, T):
        rng = np.random.default_rng(ep)
        return {
            "x": rng.normal(size=(T, 3)),
            "action": rng.normal(size=(T, 2)),
            "reward": rng.normal(size=T),
            "terminated": np.zeros(T, bool),
            "truncated": np.eye(1, T, T - 1, dtype=bool)[0],
        }

    store = EpisodeStore.open(sys.argv[1], mode="a")
    mode = sys.argv[2]
    ep = store.n_episodes
    while True:
        w = store.begin_episode()
        f = frames(ep, 40)
        for s in range(0, 40, 3):
            w.append({k: v[s : s + 3] for k, v in f.items()})
            if mode == "hold" and s >= 21:
                print("mid-episode", flush=True)
                sys.stdin.readline()  # wait here to be killed
        w.commit(EpisodeProvenance("scripted", episode_id=f"ep{ep}"))
        print(f"committed {ep}", flush=True)
        ep += 1
    """
)


def _frames_like_child(ep: int, T: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(ep)
    return {
        "x": rng.normal(size=(T, 3)).astype(np.float32),
        "action": rng.normal(size=(T, 2)).astype(np.float32),
        "reward": rng.normal(size=T).astype(np.float32),
    }


def _kill_child(path, mode: str, delay_s: float) -> int:
    """Run the child, SIGKILL it; return the last episode index it reported committed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    last = -1
    try:
        if mode == "hold":
            assert proc.stdout.readline().strip() == "mid-episode"
        else:
            deadline = time.monotonic() + delay_s
            # Read progress until the deadline, then kill wherever the child is.
            os.set_blocking(proc.stdout.fileno(), False)
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if line.startswith("committed"):
                    last = int(line.split()[1])
                time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        rest = proc.stdout.read() or ""
        for line in rest.splitlines():
            if line.startswith("committed"):
                last = int(line.split()[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return last


def test_sigkill_mid_episode_leaves_a_valid_store(tmp_path):
    path = tmp_path / "crash"
    EpisodeStore.create(
        path,
        obs_spec={"x": ((3,), "float32")},
        action_dim=2,
        control_hz=20,
        robot="r",
        task="t",
        chunk_steps=8,
    ).close()
    last_reported = -1
    for n, (mode, delay) in enumerate([("hold", 0.0), ("run", 1.8), ("run", 1.4)]):
        with open_store(path) as r:
            before = r.n_episodes
        last = _kill_child(path, mode, delay)
        last_reported = max(last_reported, last)
        with open_store(path) as r:
            report = r.validate()
            assert report.ok, f"kill {n}: {report}"
            # Every episode reported committed is there; at most one more (committed
            # between its print and the kill); none partial.
            assert last_reported + 1 <= r.n_episodes <= last_reported + 2
            assert r.n_episodes >= before
            for i in range(r.n_episodes):
                got, want = r.episode(i), _frames_like_child(i)
                assert r.provenance(i).episode_id == f"ep{i}"
                for key, value in want.items():
                    np.testing.assert_array_equal(got[key], value, err_msg=f"episode {i} {key}")
            last_reported = r.n_episodes - 1
            if mode == "hold":
                # The killed episode's rows are on disk past the commit.
                assert zarr.open_group(path, mode="r")["data/action"].shape[0] > r.n_steps
    assert last_reported >= 1  # the children did commit episodes between kills
    # The next episode truncates the garbage tail and writes fine.
    with open_store(path, "a") as w:
        n = w.n_episodes
        frames = _frames_like_child(n, 5)
        frames.update(terminated=np.zeros(5, bool), truncated=np.ones(5, bool))
        assert w.append_episode(frames, EpisodeProvenance("scripted")) == n
        assert zarr.open_group(path, mode="r")["data/action"].shape[0] == w.n_steps
        assert not list((path / "data" / "action").rglob("*.partial"))
        assert w.validate().ok


def test_begin_episode_truncates_every_kind_of_array(filled_store, make_frames, tmp_path):
    # A crash left rows past the commit in data/ and meta/ arrays (simulated: the
    # writer's own cleanup is switched off, as a killed process runs none).
    with pytest.MonkeyPatch.context() as m:
        m.setattr(ew, "truncate_uncommitted", lambda store: None)
        w = filled_store.begin_episode()
        w.append(make_frames(10, 14))
        w.discard()
    root = zarr.open_group(tmp_path / "store", mode="r")
    assert root["data/action"].shape[0] > 14
    (
        tmp_path / "store" / "data" / "action" / "c" / "5.0123456789abcdef0123456789abcdef.partial"
    ).write_bytes(b"torn")
    filled_store.begin_episode().discard()
    root = zarr.open_group(tmp_path / "store", mode="r")
    assert root["data/action"].shape[0] == 14 and root["meta/episode_ends"].shape[0] == 3
    assert _chunk_files(tmp_path / "store") == [0, 1, 2, 3]
    assert not list((tmp_path / "store").rglob("*.partial"))
