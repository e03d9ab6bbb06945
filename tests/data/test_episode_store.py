"""Tests of the episode store: round trip, commit protocol, validation, stats, hashing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

from robot_rl.data import episode_store as es
from robot_rl.data import episode_writer as ew
from robot_rl.data import store_commit, store_create
from robot_rl.data.episode_store import (
    EpisodeProvenance,
    EpisodeStore,
    StoreFormatError,
    open_store,
)

# ---------------------------------------------------------------- round trip


def test_round_trip_values_exact(new_store, make_frames, make_prov, tmp_path):
    store = new_store()
    episodes = [make_frames(3, 0, seed=0), make_frames(5, 3, last="terminated", seed=1)]
    episodes[1]["clipped"] = np.array([0, 1, 0, 0, 1], dtype=bool)
    episodes[1]["intervention"] = np.array([1, 1, 0, 0, 0], dtype=bool)
    provs = [make_prov(0, success=np.True_), make_prov(1, source="policy", success=None)]
    assert [store.append_episode(f, p) for f, p in zip(episodes, provs, strict=True)] == [0, 1]
    store.close()

    with open_store(tmp_path / "store") as r:
        assert (r.n_episodes, r.n_steps) == (2, 8)
        np.testing.assert_array_equal(r.episode_ends, [3, 8])
        assert r.obs_keys == ["joint_pos", "cam"]
        assert r.obs_spec == {"joint_pos": ((3,), "float32"), "cam": ((2, 2), "uint8")}
        assert r.action_dim == 2 and r.control_hz == 20.0
        assert r.attrs["format"] == "robot_rl.episode_store" and r.attrs["format_version"] == 3
        assert (r.attrs["robot"], r.attrs["task"]) == ("panda", "reach")
        assert r.attrs["units"] == {"joint_pos": "rad"}
        for i, frames in enumerate(episodes):
            got = r.episode(i)
            for key, value in frames.items():
                expected = value.astype(r.array(key).dtype)
                np.testing.assert_array_equal(got[key], expected, err_msg=key)
            assert r.provenance(i) == provs[i]
        assert r.provenance(0).success is True  # a numpy bool label comes back as a bool
        # Optional flags default to False when omitted.
        assert not r.episode(0)["clipped"].any() and not r.episode(0)["intervention"].any()
        assert r.array("joint_pos").dtype == np.float32 and r.array("cam").dtype == np.uint8
        np.testing.assert_array_equal(r.episode(-1)["reward"], r.episode(1)["reward"])


def test_layout_readable_by_plain_zarr(filled_store, tmp_path):
    root = zarr.open_group(tmp_path / "store", mode="r")
    commit = json.loads((tmp_path / "store" / "commit.json").read_text())
    assert (commit["n_episodes"], commit["n_steps"]) == (3, 14)
    np.testing.assert_array_equal(root["meta/episode_ends"][:], [3, 8, 14])
    np.testing.assert_array_equal(root["data/action"][:14], filled_store.array("action"))
    prov = json.loads(root["meta/provenance"][1].item())
    assert prov["operator"] == "op1" and prov["source"] == "teleop"
    codecs = [type(c).__name__ for c in root["data/action"].metadata.codecs]
    assert codecs[-1] == "Crc32cCodec"


def test_episode_index_out_of_range(filled_store):
    with pytest.raises(IndexError, match=r"episode index 3 out of range.*3 committed"):
        filled_store.episode(3)
    with pytest.raises(IndexError):
        filled_store.provenance(-4)


# ---------------------------------------------------------------- commit protocol


def test_reader_sees_only_committed(filled_store, make_frames, make_prov, tmp_path):
    reader = open_store(tmp_path / "store")
    filled_store.append_episode(make_frames(4, 14), make_prov(3))
    assert reader.n_episodes == 3 and len(reader.array("action")) == 14
    reader.refresh()
    assert reader.n_episodes == 4 and len(reader.array("action")) == 18
    np.testing.assert_array_equal(reader.episode(3)["action"], filled_store.episode(3)["action"])
    reader.close()


def _crash_at_commit(monkeypatch):
    def boom(path, doc):
        raise OSError("simulated crash before the commit document")

    # The commit document is written by the commit record and, for a new store, by create.
    monkeypatch.setattr(store_commit, "atomic_write_json", boom)
    monkeypatch.setattr(store_create, "atomic_write_json", boom)
    # A killed process cleans nothing up: keep the failed episode's rows on disk.
    monkeypatch.setattr(ew, "truncate_uncommitted", lambda store: None)


def test_crash_before_commit_then_recover(
    filled_store, make_frames, make_prov, tmp_path, monkeypatch
):
    path = tmp_path / "store"
    before_hash = filled_store.content_hash()
    with monkeypatch.context() as m:
        _crash_at_commit(m)
        with pytest.raises(OSError, match="simulated crash"):
            filled_store.append_episode(make_frames(9, 14, seed=7), make_prov(3))
    filled_store.close()
    # The crashed episode's chunks reached the disk, yet nobody sees them.
    raw = zarr.open_group(path, mode="r")
    assert raw["data/action"].shape[0] == 23 and raw["meta/episode_ends"].shape[0] == 4

    with open_store(path) as r:
        assert (r.n_episodes, r.n_steps) == (3, 14)
        assert r.content_hash() == before_hash
        assert r.validate().ok

    # A shorter episode overwrites the uncommitted tail; nothing of the crash remains.
    with open_store(path, "a") as w:
        new = make_frames(2, 14, seed=8)
        assert w.append_episode(new, make_prov(4)) == 3
    with open_store(path) as r:
        assert (r.n_episodes, r.n_steps) == (4, 16)
        np.testing.assert_array_equal(r.episode(3)["action"], new["action"].astype(np.float32))
        assert r.provenance(3).episode_id == "ep0004"
        assert r.validate().ok
        assert zarr.open_group(path, mode="r")["data/action"].shape[0] == 16
        assert r.stats("reward")["count"] == 16


def test_crash_midway_through_data_arrays(
    filled_store, make_frames, make_prov, tmp_path, monkeypatch
):
    path = tmp_path / "store"
    calls = {"n": 0}
    real = ew.write_rows

    def write_some_then_die(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("simulated crash mid-episode")
        real(*args)

    with monkeypatch.context() as m:
        m.setattr(ew, "write_rows", write_some_then_die)
        with pytest.raises(OSError, match="mid-episode"):
            filled_store.append_episode(make_frames(7, 14), make_prov(3))
    # The same writer object stays usable and appends after the failure.
    filled_store.append_episode(make_frames(3, 14, seed=5), make_prov(4))
    filled_store.close()
    with open_store(path) as r:
        assert (r.n_episodes, r.n_steps) == (4, 17)
        assert r.provenance(3).episode_id == "ep0004" and r.validate().ok


def test_next_append_deletes_uncommitted_tail_chunks(
    filled_store, make_frames, make_prov, tmp_path, monkeypatch
):
    with monkeypatch.context() as m:
        _crash_at_commit(m)
        with pytest.raises(OSError):
            filled_store.append_episode(make_frames(9, 14), make_prov(3))  # rows 14-22
    chunks = tmp_path / "store" / "data" / "action" / "c"
    assert {"4", "5"} <= {p.name for p in chunks.iterdir()}  # chunks of rows 16-23
    _flip_byte(chunks / "5" / "0")  # torn, as a crash might leave it
    new = make_frames(2, 14, seed=9)  # rows 14-15: ends inside chunk 3
    filled_store.append_episode(new, make_prov(4))
    assert sorted(int(p.name) for p in chunks.iterdir()) == [0, 1, 2, 3]
    np.testing.assert_array_equal(filled_store.episode(3)["action"], new["action"].astype("f4"))
    assert filled_store.validate().ok


def test_incomplete_create_is_not_a_store(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _crash_at_commit(m)
        with pytest.raises(OSError):
            EpisodeStore.create(
                tmp_path / "s",
                obs_spec={"x": ((1,), "float32")},
                action_dim=1,
                control_hz=10,
                robot="r",
                task="t",
            )
    # Built in a hidden sibling and published only when complete: nothing is left.
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "s")


def test_single_writer_lock(filled_store, tmp_path):
    with pytest.raises(RuntimeError, match="another writer"):
        open_store(tmp_path / "store", "a")
    filled_store.close()
    open_store(tmp_path / "store", "a").close()


def test_read_only_store_refuses_append(filled_store, make_frames, make_prov, tmp_path):
    with (
        open_store(tmp_path / "store") as r,
        pytest.raises(RuntimeError, match="read-only"),
    ):
        r.append_episode(make_frames(2, 14), make_prov(3))


# ---------------------------------------------------------------- bad input


def _bad(make_frames, change):
    frames = make_frames(4, 14)
    change(frames)
    return frames


BAD_FRAMES = {
    "wrong_shape": (lambda f: f.update(action=np.zeros((4, 3))), "action", r"\(4, 3\)"),
    "wrong_kind": (lambda f: f.update(action=np.zeros((4, 2), np.int64)), "action", "float32"),
    "obs_kind": (lambda f: f.update(cam=np.zeros((4, 2, 2), np.float32)), "cam", "uint8"),
    "unknown_key": (lambda f: f.update(velocity=np.zeros((4, 3))), "velocity", "expected"),
    "missing_key": (lambda f: f.pop("joint_pos"), "joint_pos", "missing"),
    "nan_action": (lambda f: f["action"].__setitem__((2, 1), np.nan), "action", "step 2"),
    "inf_reward": (lambda f: f["reward"].__setitem__(0, np.inf), "reward", "step 0"),
    "nan_obs": (lambda f: f["joint_pos"].__setitem__((3, 0), np.nan), "joint_pos", "NaN"),
    "overflow": (lambda f: f["joint_pos"].__setitem__((1, 1), 1e300), "joint_pos", "overflow"),
    "uint8_range": (lambda f: f.update(cam=np.full((4, 2, 2), 300)), "cam", "do not fit"),
    "inconsistent_T": (lambda f: f.update(reward=np.zeros(5)), "reward", "5 steps"),
    "bad_flag": (lambda f: f.update(clipped=np.array([0, 2, 0, 0])), "clipped", "bool"),
    "empty": (lambda f: f.update({k: v[:0] for k, v in f.items()}), "joint_pos", "0 steps"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_append_raises_and_changes_nothing(
    case, filled_store, make_frames, make_prov, tmp_path
):
    change, key, detail = BAD_FRAMES[case]
    before = filled_store.content_hash()
    with pytest.raises(ValueError, match=detail) as info:
        filled_store.append_episode(_bad(make_frames, change), make_prov(3))
    assert repr(key) in str(info.value) or key in str(info.value)
    assert filled_store.n_episodes == 3 and filled_store.content_hash() == before
    raw = zarr.open_group(tmp_path / "store", mode="r")
    assert raw["data/action"].shape[0] == 14  # nothing was written, not even metadata


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"source": "human"}, "source"),
        ({"success": "yes"}, "success"),
        ({"operator": 3}, "operator"),
        ({"start_time_unix_s": float("nan")}, "start_time"),
    ],
)
def test_bad_provenance_rejected(filled_store, make_frames, make_prov, kw, field):
    with pytest.raises(ValueError, match=f"provenance.{field}"):
        filled_store.append_episode(make_frames(2, 14), make_prov(3, **kw))
    assert filled_store.n_episodes == 3


def test_create_argument_errors(tmp_path):
    kw = dict(action_dim=2, control_hz=20.0, robot="panda", task="reach")
    with pytest.raises(ValueError, match="reserved"):
        EpisodeStore.create(tmp_path / "a", obs_spec={"action": ((2,), "float32")}, **kw)
    with pytest.raises(ValueError, match="obs_spec key 'a/b'"):
        EpisodeStore.create(tmp_path / "b", obs_spec={"a/b": ((2,), "float32")}, **kw)
    with pytest.raises(ValueError, match="control_hz"):
        EpisodeStore.create(
            tmp_path / "c", obs_spec={"x": ((2,), "float32")}, **{**kw, "control_hz": 0}
        )


# ---------------------------------------------------------------- opening


def test_open_errors(tmp_path, filled_store):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_store(tmp_path / "nope")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(StoreFormatError, match="not an episode store"):
        open_store(other)
    with pytest.raises(FileExistsError, match="not an episode store"):
        EpisodeStore.create(
            other,
            obs_spec={"x": ((1,), "float32")},
            action_dim=1,
            control_hz=10,
            robot="r",
            task="t",
            overwrite=True,
        )
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="mode"):
        open_store(tmp_path / "store", "w")


def test_overwrite_replaces_a_store(new_store, filled_store):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        new_store()
    filled_store.close()
    fresh = new_store(overwrite=True)
    assert (fresh.n_episodes, fresh.n_steps) == (0, 0)
    fresh.close()


# ---------------------------------------------------------------- validation


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "chunk, episodes",
    [(0, [0, 1]), (1, [1]), (3, [2])],  # chunk_steps 4, ends 3, 8, 14
)
def test_validate_names_episode_and_key_of_corrupt_chunk(filled_store, tmp_path, chunk, episodes):
    assert filled_store.validate().ok
    _flip_byte(tmp_path / "store" / "data" / "action" / "c" / str(chunk) / "0")
    with open_store(tmp_path / "store") as r:
        report = r.validate()
    assert not report.ok
    assert report.bad_episodes == episodes
    assert {key for _, key, _ in report.problems} == {"data/action"}
    assert "data/action" in str(report)


def test_validate_detects_missing_chunk_and_bad_provenance(filled_store, tmp_path):
    (tmp_path / "store" / "data" / "reward" / "c" / "2").unlink()  # rows 8-11: episode 2
    _flip_byte(tmp_path / "store" / "meta" / "provenance" / "c" / "0")
    report = filled_store.validate()
    assert (2, "data/reward") in {(ep, key) for ep, key, _ in report.problems}
    assert any("missing" in msg for _, key, msg in report.problems if key == "data/reward")
    assert {ep for ep, key, _ in report.problems if key == "meta/provenance"} == {0, 1, 2}


def test_unreadable_episode_ends_is_a_clear_open_error(filled_store, tmp_path):
    _flip_byte(tmp_path / "store" / "meta" / "episode_ends" / "c" / "0")
    with pytest.raises(StoreFormatError, match="meta/episode_ends unreadable"):
        open_store(tmp_path / "store")


def test_validate_ignores_uncommitted_tail(
    filled_store, make_frames, make_prov, tmp_path, monkeypatch
):
    with monkeypatch.context() as m:
        _crash_at_commit(m)
        with pytest.raises(OSError):
            filled_store.append_episode(make_frames(6, 14), make_prov(3))
    _flip_byte(tmp_path / "store" / "data" / "action" / "c" / "4" / "0")  # rows 16-19
    assert filled_store.validate().ok


# ---------------------------------------------------------------- stats and hash


@pytest.mark.parametrize("key", ["joint_pos", "cam", "action", "reward"])
def test_stats_match_numpy(filled_store, tmp_path, key):
    filled_store.close()
    with open_store(tmp_path / "store") as r:
        x = r.array(key).astype(np.float64)
        s = r.stats(key)
    assert s["count"] == 14
    np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(s["min"], x.min(0))
    np.testing.assert_array_equal(s["max"], x.max(0))
    np.testing.assert_allclose(s["q01"], np.quantile(x, 0.01, axis=0))
    np.testing.assert_allclose(s["q99"], np.quantile(x, 0.99, axis=0))
    assert s["mean"].shape == x.shape[1:]


def test_stats_of_large_key_computed_from_data(tmp_path):
    # Over PERSISTED_STATS_MAX_ELEMS per step: no per-episode moments, same answers.
    n = es.PERSISTED_STATS_MAX_ELEMS + 1
    store = EpisodeStore.create(
        tmp_path / "s",
        obs_spec={"big": ((n,), "float32")},
        action_dim=1,
        control_hz=10,
        robot="r",
        task="t",
    )
    assert not (tmp_path / "s" / "meta" / "stats" / "big").exists()
    rng = np.random.default_rng(0)
    for T in (3, 4):
        store.append_episode(
            {
                "big": rng.normal(size=(T, n)),
                "action": np.zeros((T, 1)),
                "reward": np.ones(T),
                "terminated": np.zeros(T, bool),
                "truncated": np.ones(T, bool),
            },
            EpisodeProvenance("scripted"),
        )
    x = store.array("big").astype(np.float64)
    np.testing.assert_allclose(store.stats("big")["std"], x.std(0), rtol=1e-10)
    assert store.stats("big")["count"] == 7
    with pytest.raises(KeyError, match="no statistics"):
        store.stats("terminated")
    store.close()


def test_content_hash_stable_and_sensitive(new_store, make_frames, make_prov, tmp_path):
    a, b = new_store("a", chunk_steps=4), new_store("b", chunk_steps=None)
    for store in (a, b):
        store.append_episode(make_frames(5, 0), make_prov(0))
        store.append_episode(make_frames(3, 5, seed=1), make_prov(1))
    h = a.content_hash()
    # Same content, different chunking: same hash; and stable across reopening.
    assert h == b.content_hash() and len(h) == 64
    a.close()
    with open_store(tmp_path / "a") as r:
        assert r.content_hash() == h
    # Any committed value changed behind the store's back changes the hash.
    zarr.open_array(tmp_path / "a" / "data" / "reward", mode="r+")[6] = 123.0
    with open_store(tmp_path / "a") as r:
        assert r.content_hash() != h
    # So does a different provenance, and appending an episode.
    b.append_episode(make_frames(1, 8), make_prov(2))
    assert b.content_hash() != h
    b.close()


def test_episode_store_module_does_not_import_torch():
    # The hardware recorder writes through the store and must not pay for torch.
    code = (
        "import sys, robot_rl.data as d; print('torch' in sys.modules); "
        "d.TransitionSampler; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]  # samplers still load on first use
