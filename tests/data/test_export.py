"""Export to zarr format 2 in Diffusion Policy's replay-buffer layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore, open_store
from robot_rl.data.export import export_zarr2


@pytest.fixture
def source(filled_store, tmp_path):
    filled_store.set_success_label(2, False, "lab1")
    filled_store.add_preference("ep0000", "ep0001", "a", "lab1")
    filled_store.close()
    return tmp_path / "store"


def test_export_is_zarr2_with_the_same_values(source, tmp_path):
    out = export_zarr2(source, tmp_path / "dp.zarr")
    assert (out / ".zgroup").is_file() and (out / "data" / ".zgroup").is_file()
    assert (out / "data" / "action" / ".zarray").is_file()
    assert not (out / "zarr.json").exists()
    for meta in out.rglob(".zarray"):
        doc = json.loads(meta.read_text())
        assert doc["zarr_format"] == 2
        if doc["dtype"] != "|O":
            assert doc["compressor"]["id"] == "blosc", meta
        assert "crc32c" not in meta.read_text()
    root = zarr.open_group(out, mode="r", zarr_format=2)
    with open_store(source) as s:
        assert sorted(root["data"].array_keys()) == sorted(s.data_keys)
        for key in s.data_keys:
            got = root[f"data/{key}"][:]
            assert got.dtype == s.array(key).dtype
            np.testing.assert_array_equal(got, s.array(key), err_msg=key)
        np.testing.assert_array_equal(root["meta/episode_ends"][:], [3, 8, 14])
        assert root["meta/episode_ends"].dtype == np.int64
        prov = [json.loads(t) for t in root["meta/provenance"][:]]
        assert [p["episode_id"] for p in prov] == ["ep0000", "ep0001", "ep0002"]
        assert prov[2]["success"] is False  # the latest label, not the recorded one
        assert root.attrs["source_content_hash"] == s.content_hash()
        assert root.attrs["preferences"][0]["preferred"] == "a"
        assert root.attrs["control_hz"] == 20.0 and root.attrs["obs_keys"] == s.obs_keys
    # Diffusion Policy's ReplayBuffer checks every data array against the last end.
    for key in root["data"].array_keys():
        assert root[f"data/{key}"].shape[0] == root["meta/episode_ends"][-1]


def test_export_streams_and_uncommitted_tail(tmp_path):
    store = EpisodeStore.create(
        tmp_path / "s",
        obs_spec={"q": ((2,), "float32")},
        action_dim=1,
        control_hz=20,
        robot="r",
        task="t",
        streams={"cam": {"rgb": ((4, 4, 3), "uint8")}},
    )
    T = 4
    frames = {
        "q": np.ones((T, 2)),
        "action": np.zeros((T, 1)),
        "reward": np.zeros(T),
        "terminated": np.zeros(T, bool),
        "truncated": np.ones(T, bool),
        "timestamp": np.arange(T) * 0.05,
    }
    rgb = np.arange(6 * 48, dtype=np.uint8).reshape(6, 4, 4, 3)
    store.append_episode(
        frames, EpisodeProvenance("teleop"), {"cam": {"rgb": rgb, "timestamp": np.arange(6) / 30}}
    )
    w = store.begin_episode()  # an open episode: never exported
    w.append(frames)
    export_zarr2(tmp_path / "s", tmp_path / "out")
    w.discard()
    store.close()
    root = zarr.open_group(tmp_path / "out", mode="r", zarr_format=2)
    assert root["data/q"].shape == (4, 2)
    np.testing.assert_array_equal(root["streams/cam/rgb"][:], rgb)
    np.testing.assert_array_equal(root["streams/cam/episode_ends"][:], [6])
    np.testing.assert_array_equal(root["data/timestamp"][:], frames["timestamp"])


def test_export_refuses_existing_output(source, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        export_zarr2(source, tmp_path / "taken")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
