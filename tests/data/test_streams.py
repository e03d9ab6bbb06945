"""Streams at other rates: declaration, writing, reading, alignment by time, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore, open_store

STREAMS = {
    "robot_state": {"joint_pos": ((7,), "float32")},
    "camera": {"rgb": ((6, 5, 3), "uint8")},
}
CONTROL_HZ = 20.0


def _control(T: int, t0: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "q": rng.normal(size=(T, 2)),
        "action": rng.normal(size=(T, 1)),
        "reward": rng.normal(size=T),
        "terminated": np.zeros(T, bool),
        "truncated": np.eye(1, T, T - 1, dtype=bool)[0],
        "timestamp": t0 + np.arange(T) / CONTROL_HZ,
    }


def _state(T: int, t0: float, seed: int) -> dict[str, np.ndarray]:
    # 1 kHz: 50 rows per control period.
    rng = np.random.default_rng(100 + seed)
    return {"joint_pos": rng.normal(size=(T * 50, 7)), "timestamp": t0 + np.arange(T * 50) / 1e3}


def _camera(T: int, t0: float, seed: int) -> dict[str, np.ndarray]:
    # 30 Hz, starting 10 ms after the first control row.
    n = int(T / CONTROL_HZ * 30)
    rng = np.random.default_rng(200 + seed)
    return {
        "rgb": rng.integers(0, 256, size=(n, 6, 5, 3), dtype=np.uint8),
        "timestamp": t0 + 0.01 + np.arange(n) / 30.0,
    }


@pytest.fixture
def stream_store(tmp_path):
    store = EpisodeStore.create(
        tmp_path / "s",
        obs_spec={"q": ((2,), "float32")},
        action_dim=1,
        control_hz=CONTROL_HZ,
        robot="panda",
        task="reach",
        streams=STREAMS,
        chunks={"streams/camera/rgb": 4, "streams/camera/timestamp": 4},
    )
    yield store
    store.close()


def _record(store, T, t0, seed, *, camera=True, block=7):
    """Write an episode incrementally, as a recorder does; return what was written."""
    ctrl, state, cam = _control(T, t0, seed), _state(T, t0, seed), _camera(T, t0, seed)
    with store.begin_episode() as w:
        for s in range(0, T, block):
            w.append({k: v[s : s + block] for k, v in ctrl.items()})
            w.append_stream(
                "robot_state", {k: v[s * 50 : (s + block) * 50] for k, v in state.items()}
            )
        if camera:
            for s in range(0, len(cam["rgb"]), 3):
                w.append_stream("camera", {k: v[s : s + 3] for k, v in cam.items()})
        index = w.commit(EpisodeProvenance("teleop", episode_id=f"e{seed}"))
    return index, ctrl, state, cam if camera else {k: v[:0] for k, v in cam.items()}


def test_streams_round_trip(stream_store, tmp_path):
    written = [
        _record(stream_store, 20, 100.0, 0),
        _record(stream_store, 9, 200.0, 1, camera=False),
    ]
    written.append(_record(stream_store, 13, 300.0, 2))
    stream_store.close()
    with open_store(tmp_path / "s") as r:
        assert r.stream_names == ["robot_state", "camera"]
        assert r.stream_spec["camera"] == {"rgb": ((6, 5, 3), "uint8")}
        assert r.n_stream_rows("robot_state") == (20 + 9 + 13) * 50
        assert r.n_stream_rows("camera") == 30 + 0 + 19
        for i, (index, ctrl, state, cam) in enumerate(written):
            assert index == i
            np.testing.assert_array_equal(r.episode(i)["timestamp"], ctrl["timestamp"])
            got = r.stream("robot_state", i)
            np.testing.assert_array_equal(got["joint_pos"], state["joint_pos"].astype("f4"))
            np.testing.assert_array_equal(got["timestamp"], state["timestamp"])
            got = r.stream("camera", i)
            np.testing.assert_array_equal(got["rgb"], cam["rgb"])
            assert got["timestamp"].dtype == np.float64
        assert r.stream("camera", 1)["rgb"].shape == (0, 6, 5, 3)  # an episode without frames
        assert r.validate().ok
        # Plain zarr: the stream arrays and their episode ends, cut at the commit.
        commit = json.loads((tmp_path / "s" / "commit.json").read_text())
        assert commit["stream_rows"] == {"robot_state": 2100, "camera": 49}
        root = zarr.open_group(tmp_path / "s", mode="r")
        np.testing.assert_array_equal(root["streams/camera/episode_ends"][:], [30, 30, 49])


def test_align_stream_latest_row_at_or_before(stream_store):
    _, ctrl, state, cam = _record(stream_store, 20, 100.0, 0)
    idx = stream_store.align_stream("camera", 0)
    # Brute force: the last camera row with timestamp <= each control timestamp.
    want = [
        max((j for j, t in enumerate(cam["timestamp"]) if t <= tc), default=-1)
        for tc in ctrl["timestamp"]
    ]
    np.testing.assert_array_equal(idx, want)
    assert idx[0] == -1 and idx[1] == 1  # frame 0 at +10 ms; t=50 ms sees frames 0 and 1
    state_idx = stream_store.align_stream("robot_state", 0)
    np.testing.assert_array_equal(state_idx, np.arange(20) * 50)
    values = stream_store.align_stream("robot_state", 0, key="joint_pos")
    np.testing.assert_array_equal(values, state["joint_pos"][::50].astype("f4"))
    with pytest.raises(ValueError, match="precede the stream's first row"):
        stream_store.align_stream("camera", 0, key="rgb")
    with pytest.raises(KeyError, match="no stream 'lidar'"):
        stream_store.align_stream("lidar", 0)


def test_append_episode_with_streams(stream_store):
    ctrl, state = _control(4, 0.0, 5), _state(4, 0.0, 5)
    i = stream_store.append_episode(ctrl, EpisodeProvenance("scripted"), {"robot_state": state})
    assert stream_store.n_stream_rows("robot_state") == 200
    assert stream_store.n_stream_rows("camera") == 0  # a stream left out gets no rows
    # A stream slower than the control rate (10 Hz): frames repeat, never look ahead.
    ctrl = _control(6, 10.0, 6)
    rgb = np.arange(3 * 90, dtype=np.uint8).reshape(3, 6, 5, 3)
    cam = {"rgb": rgb, "timestamp": 10.0 + np.arange(3) / 10.0}
    j = stream_store.append_episode(ctrl, EpisodeProvenance("scripted"), {"camera": cam})
    np.testing.assert_array_equal(stream_store.align_stream("camera", j), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(
        stream_store.align_stream("camera", j, key="rgb"), rgb[[0, 0, 1, 1, 2, 2]]
    )
    np.testing.assert_array_equal(
        stream_store.stream("robot_state", i)["timestamp"], state["timestamp"]
    )


BAD_STREAMS = {
    "unknown_stream": (lambda s: {"lidar": s}, "unknown stream 'lidar'"),
    "no_timestamp": (
        lambda s: {"robot_state": {"joint_pos": s["joint_pos"]}},
        r"missing key\(s\) \['timestamp'\]",
    ),
    "wrong_shape": (
        lambda s: {"robot_state": {**s, "joint_pos": s["joint_pos"][:, :6]}},
        r"streams\['robot_state'\]\['joint_pos'\]: expected shape",
    ),
    "decreasing": (
        lambda s: {"robot_state": {**s, "timestamp": s["timestamp"][::-1].copy()}},
        "decreases at row 1",
    ),
    "nan_time": (
        lambda s: {"robot_state": {**s, "timestamp": np.full(len(s["timestamp"]), np.nan)}},
        "NaN",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_STREAMS))
def test_bad_stream_rows_change_nothing(stream_store, case, tmp_path):
    _record(stream_store, 5, 0.0, 0)
    before = stream_store.content_hash()
    make, match = BAD_STREAMS[case]
    with pytest.raises(ValueError, match=match):
        stream_store.append_episode(
            _control(3, 1.0, 1), EpisodeProvenance("scripted"), make(_state(3, 1.0, 1))
        )
    assert stream_store.content_hash() == before and stream_store.n_episodes == 1
    assert (
        zarr.open_group(tmp_path / "s", mode="r")["streams/robot_state/joint_pos"].shape[0] == 250
    )
    # Through the incremental writer too: the open episode keeps its rows.
    w = stream_store.begin_episode()
    w.append_stream("robot_state", _state(1, 1.0, 1))
    with pytest.raises(ValueError, match=match):
        for name, rows in make(_state(3, 2.0, 1)).items():
            w.append_stream(name, rows)
    assert w.n_stream_rows("robot_state") == 50
    w.discard()


def test_validate_names_stream_episode_and_key(stream_store, tmp_path):
    for seed in range(3):
        _record(stream_store, 8, 10.0 * seed, seed)  # 12 frames each, 4-frame chunks
    assert stream_store.validate().ok
    chunk = tmp_path / "s" / "streams" / "camera" / "rgb" / "c" / "4" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))  # frames 16-19: episode 1
    report = stream_store.validate()
    assert report.bad_episodes == [1]
    assert {key for _, key, _ in report.problems} == {"streams/camera/rgb"}


def test_validate_catches_time_going_backwards(stream_store, tmp_path):
    _record(stream_store, 8, 10.0, 0)
    _record(stream_store, 8, 0.0, 1)  # earlier than episode 0: allowed across episodes
    assert stream_store.validate().ok
    ts = zarr.open_array(tmp_path / "s" / "streams" / "robot_state" / "timestamp", mode="r+")
    ts[450] = 0.0  # inside episode 1 (rows 400-799)
    report = stream_store.validate()
    assert (1, "streams/robot_state/timestamp") in {(e, k) for e, k, _ in report.problems}


def test_content_hash_covers_streams(stream_store, tmp_path):
    _record(stream_store, 6, 0.0, 0)
    h = stream_store.content_hash()
    stream_store.close()
    rgb = zarr.open_array(tmp_path / "s" / "streams" / "camera" / "rgb", mode="r+")
    rgb[2, 0, 0, 0] = (int(rgb[2, 0, 0, 0]) + 1) % 256
    with open_store(tmp_path / "s") as r:
        assert r.content_hash() != h


def test_image_streams_get_fast_codec_and_few_frame_chunks(tmp_path):
    store = EpisodeStore.create(
        tmp_path / "img",
        obs_spec={"q": ((7,), "float32")},
        action_dim=7,
        control_hz=20,
        robot="panda",
        task="reach",
        streams={"camera_front": {"rgb": ((224, 224, 3), "uint8")}},
    )
    store.close()
    rgb = zarr.open_array(tmp_path / "img" / "streams" / "camera_front" / "rgb", mode="r")
    assert 2 <= rgb.chunks[0] <= 8 and rgb.chunks[1:] == (224, 224, 3)
    blosc, crc = rgb.metadata.codecs[1:]  # after the bytes serializer
    assert (blosc.cname.value, blosc.clevel) == ("zstd", 1)
    assert type(crc).__name__ == "Crc32cCodec"
    ts = zarr.open_array(tmp_path / "img" / "streams" / "camera_front" / "timestamp", mode="r")
    assert ts.dtype == np.float64


def test_create_stream_errors(tmp_path):
    kw = dict(obs_spec={"q": ((2,), "float32")}, action_dim=1, control_hz=20, robot="r", task="t")
    with pytest.raises(ValueError, match="reserved"):
        EpisodeStore.create(tmp_path / "a", streams={"s": {"timestamp": ((), "float64")}}, **kw)
    with pytest.raises(ValueError, match="non-empty dict"):
        EpisodeStore.create(tmp_path / "b", streams={"s": {}}, **kw)
    with pytest.raises(ValueError, match="timestamps=False with streams"):
        EpisodeStore.create(
            tmp_path / "c", streams={"s": {"x": ((1,), "float32")}}, timestamps=False, **kw
        )
    with pytest.raises(ValueError, match="unknown array name"):
        EpisodeStore.create(tmp_path / "d", chunks={"streams/nope/x": 4}, **kw)
    assert not (tmp_path / "d").exists()


def test_format_version_1_store_still_opens(tmp_path, make_frames, make_prov, new_store):
    # A v1 store: no timestamps/stream attributes, no stream_rows in the commit document.
    store = new_store()
    store.append_episode(make_frames(3, 0), make_prov(0))
    store.close()
    meta = tmp_path / "store" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["format_version"] = 1
    for k in ("timestamps", "stream_keys"):
        doc["attributes"].pop(k)
    meta.write_text(json.dumps(doc))
    commit = tmp_path / "store" / "commit.json"
    c = json.loads(commit.read_text())
    c.pop("stream_rows")
    commit.write_text(json.dumps(c))
    with open_store(tmp_path / "store", "a") as s:
        assert s.stream_names == [] and not s.has_timestamps
        assert s.append_episode(make_frames(2, 3), make_prov(1)) == 1
        assert s.validate().ok


def test_discard_truncates_stream_arrays(stream_store, tmp_path):
    _record(stream_store, 5, 0.0, 0)
    h = stream_store.content_hash()
    w = stream_store.begin_episode()
    w.append(_control(3, 1.0, 1))
    w.append_stream("robot_state", _state(3, 1.0, 1))
    w.append_stream("camera", _camera(8, 1.0, 1))
    root = zarr.open_group(tmp_path / "s", mode="r")
    assert root["streams/camera/rgb"].shape[0] > 7  # rows reached the disk
    w.discard()
    root = zarr.open_group(tmp_path / "s", mode="r")
    assert root["streams/robot_state/joint_pos"].shape[0] == 250
    assert root["streams/camera/rgb"].shape[0] == root["streams/camera/timestamp"].shape[0] == 7
    assert sorted(p.name for p in (tmp_path / "s/streams/camera/rgb/c").iterdir()) == ["0", "1"]
    assert stream_store.content_hash() == h and stream_store.validate().ok
