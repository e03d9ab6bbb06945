"""Integrity of an episode store across rewrites, crashes and tampering: store generations,
missing chunks, safe (re)creation, stale rewrite siblings, digests and moments."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from robot_rl.data import governance as gov
from robot_rl.data.episode_store import (
    COMMIT_FILE,
    EpisodeStore,
    MissingChunkError,
    StoreRewrittenError,
    open_store,
)


def _two_operators(new_store, make_frames, make_prov) -> EpisodeStore:
    store = new_store()
    store.append_episode(make_frames(5, 0), make_prov(0, operator="pa"))
    store.append_episode(make_frames(6, 5, seed=1), make_prov(1, operator="pb"))
    store.append_episode(make_frames(4, 11, seed=2), make_prov(2, operator="pa"))
    store.close()
    return store


# ---------------------------------------------------------------- 1: rewritten under a reader


def test_reader_open_across_purge_raises(new_store, make_frames, make_prov, tmp_path):
    _two_operators(new_store, make_frames, make_prov)
    path = tmp_path / "store"
    reader = open_store(path)
    gen = json.loads((path / COMMIT_FILE).read_text())["generation"]
    gov.purge(path, "pa")
    assert json.loads((path / COMMIT_FILE).read_text())["generation"] != gen
    # Before the fix the reader returned the new store's rows (or zeros) for its old counts.
    with pytest.raises(StoreRewrittenError, match=r"rewritten .* reopen it"):
        reader.episode(2)
    with pytest.raises(StoreRewrittenError, match="reopen it"):
        reader.zarr_array("action")[0:3]
    with pytest.raises(StoreRewrittenError):
        reader.refresh()
    reader.close()
    with open_store(path) as r:
        assert r.n_episodes == 1 and r.episode(0)["action"].shape == (6, 2)


def test_missing_committed_chunk_raises_not_zeros(filled_store, tmp_path):
    filled_store.close()
    chunk = tmp_path / "store" / "data" / "action" / "c" / "1" / "0"
    chunk.unlink()
    with open_store(tmp_path / "store") as r:
        with pytest.raises(MissingChunkError, match=r"data/action/c/1/0 is missing"):
            r.array("action")
        r.array("reward")  # other keys still read
        assert not r.validate().ok


# ---------------------------------------------------------------- 3: create


def _create(path, **kw):
    return EpisodeStore.create(
        path, obs_spec={"x": ((1,), "float32")}, action_dim=1, control_hz=10, robot="r",
        task="t", **kw,
    )  # fmt: skip


def test_overwrite_validates_before_deleting(filled_store, tmp_path):
    filled_store.close()
    path = tmp_path / "store"
    with pytest.raises(ValueError, match="chunks: unknown array name"):
        _create(path, overwrite=True, chunks={"data/nope": 4})
    with pytest.raises(ValueError, match=r"chunks\['data/action'\]"):
        _create(path, overwrite=True, chunks={"data/action": 0})
    with open_store(path) as r:  # the old store is untouched
        assert r.n_episodes == 3 and r.validate().ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_overwrite_respects_the_writer_lock(filled_store, tmp_path):
    with pytest.raises(RuntimeError, match="another writer"):
        _create(tmp_path / "store", overwrite=True)
    assert filled_store.n_episodes == 3
    filled_store.close()
    with open_store(tmp_path / "store") as r:
        assert r.n_episodes == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    with _create(tmp_path / "store", overwrite=True) as s:
        assert s.n_episodes == 0 and s.obs_keys == ["x"]


def test_overwrite_gives_readers_a_clear_error(filled_store, tmp_path):
    filled_store.close()
    reader = open_store(tmp_path / "store")
    _create(tmp_path / "store", overwrite=True).close()
    with pytest.raises(StoreRewrittenError):
        reader.episode(0)
    reader.close()


# ---------------------------------------------------------------- 7: stale rewrite siblings


def test_stale_purge_sibling_reported_and_cleaned(filled_store, tmp_path):
    filled_store.close()
    path = tmp_path / "store"
    stale = tmp_path / ".store.purge-0123456789ab"
    shutil.copytree(path, stale)  # what a crash after the swap leaves: old, purged data
    (stale / ".writer.lock").unlink(missing_ok=True)
    unrelated = tmp_path / ".other.purge-0123456789ab"
    unrelated.mkdir()
    with open_store(path) as r:  # a read-only open reports, never deletes
        report = r.validate()
        assert not report.ok and any(p[1] == stale.name for p in report.problems)
    assert stale.exists()
    open_store(path, "a").close()  # the writer's open deletes it
    assert not stale.exists() and unrelated.exists()
    with open_store(path) as r:
        assert r.validate().ok


# ---------------------------------------------------------------- 5: validate


def test_validate_requires_every_stats_array(filled_store, tmp_path):
    filled_store.close()
    shutil.rmtree(tmp_path / "store" / "meta" / "stats" / "joint_pos")
    with open_store(tmp_path / "store") as r:
        report = r.validate()
    assert any(p[1] == "meta/stats/joint_pos" and "missing" in p[2] for p in report.problems)


def test_validate_finds_swapped_chunk_files(filled_store, tmp_path):
    filled_store.close()
    c = tmp_path / "store" / "data" / "reward" / "c"
    a, b = (c / "0").read_bytes(), (c / "2").read_bytes()
    (c / "0").write_bytes(b)
    (c / "2").write_bytes(a)  # both crcs valid, each chunk in the other's place
    with open_store(tmp_path / "store") as r:
        report = r.validate()
    assert not report.ok
    assert {ep for ep, key, _ in report.problems if key == "data/reward"} == {0, 1, 2}


def test_validate_finds_a_value_rewritten_with_a_valid_crc(filled_store, tmp_path):
    filled_store.close()
    zarr.open_array(tmp_path / "store" / "data" / "reward", mode="r+")[4] = 123.0
    with open_store(tmp_path / "store") as r:
        report = r.validate()
    assert (1, "data/reward") in {(ep, key) for ep, key, _ in report.problems}
    # The persisted moments no longer match the data either.
    assert (1, "meta/stats/reward") in {(ep, key) for ep, key, _ in report.problems}
    assert report.bad_episodes == [1]


def test_validate_finds_tampered_moments(filled_store, tmp_path):
    filled_store.close()
    stats = zarr.open_array(tmp_path / "store" / "meta" / "stats" / "action", mode="r+")
    row = np.asarray(stats[2])
    row[0] += 1.0  # the mean
    stats[2] = row
    with open_store(tmp_path / "store") as r:
        report = r.validate()
    assert report.problems == [(2, "meta/stats/action", report.problems[0][2])]


# ---------------------------------------------------------------- 6: bounded stats


def test_stats_quantiles_from_a_bounded_deterministic_subsample(
    new_store, make_frames, make_prov, monkeypatch
):
    from robot_rl.data import episode_store as es

    store = new_store(chunk_steps=16)
    store.append_episode(make_frames(300, 0), make_prov(0))
    store.append_episode(make_frames(100, 300, seed=1), make_prov(1))
    data = store.array("joint_pos").astype(np.float64)
    exact = store.stats("joint_pos")  # 400 rows <= QUANTILE_MAX_ROWS: exact
    np.testing.assert_allclose(exact["q01"], np.quantile(data, 0.01, axis=0))
    np.testing.assert_allclose(exact["q99"], np.quantile(data, 0.99, axis=0))
    # Above the bound: never the whole key in memory, quantiles from a seeded subsample.
    monkeypatch.setattr(es, "QUANTILE_MAX_ROWS", 100)
    monkeypatch.setattr(store, "array", lambda key: pytest.fail(f"loaded all of {key}"))
    store._cache.clear()
    approx = store.stats("joint_pos")
    for k in ("mean", "std", "min", "max"):  # still exact, from the persisted moments
        np.testing.assert_array_equal(approx[k], exact[k])
    # joint_pos[:, 0] is the row index 0..399: q01 of 100 uniform rows is within ~1%.
    assert abs(approx["q01"][0] - exact["q01"][0]) < 20
    assert abs(approx["q99"][0] - exact["q99"][0]) < 20
    store._cache.clear()
    np.testing.assert_array_equal(store.stats("joint_pos")["q01"], approx["q01"])
    store.close()
