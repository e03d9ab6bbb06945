"""robot-rl-data info / validate / stats on real stores."""

import numpy as np
import pytest

from robot_rl.cli.data import main
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "demo.zarr"
    store = EpisodeStore.create(
        path,
        obs_spec={"joint_pos": ((7,), "float32")},
        action_dim=4,
        control_hz=20.0,
        robot="panda",
        task="reach",
        chunk_steps=10,
    )
    rng = np.random.default_rng(0)
    for t in (10, 10, 10):
        store.append_episode(
            {
                "joint_pos": rng.normal(size=(t, 7)).astype(np.float32),
                "action": rng.uniform(-1, 1, (t, 4)).astype(np.float32),
                "reward": rng.normal(size=t).astype(np.float32),
                "terminated": np.zeros(t, bool),
                "truncated": np.eye(1, t, t - 1, dtype=bool)[0],
            },
            EpisodeProvenance(source="scripted", success=True),
        )
    store.close()
    return path


def test_info_and_stats(store_path, capsys):
    assert main(["info", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "3 episodes, 30 steps" in out and "joint_pos" in out and "content hash" in out
    assert main(["stats", str(store_path), "-k", "reward"]) == 0
    assert "reward" in capsys.readouterr().out


def test_validate_reports_the_corrupted_episode_and_key(store_path, capsys):
    assert main(["validate", str(store_path)]) == 0
    chunk = next(
        p
        for p in (store_path / "data" / "action").rglob("*")
        if p.is_file() and p.name != "zarr.json" and p.stat().st_size > 16 and "c" in p.parts
    )
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    assert main(["validate", str(store_path)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "action" in out and "episode" in out


def test_not_a_store_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "not an episode store" in capsys.readouterr().out
