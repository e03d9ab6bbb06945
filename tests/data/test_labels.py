"""Human feedback in the store: success labels and pairwise preferences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_rl.data import atomic_fs
from robot_rl.data.episode_store import StoreFormatError, open_store
from robot_rl.data.labels import Preference


def _data_files(path):
    """(relative path, size, mtime_ns) of every file of the data and meta arrays."""
    return sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
        for sub in ("data", "meta")
        for p in (path / sub).rglob("*")
        if p.is_file()
    )


def test_latest_label_wins_and_log_keeps_history(filled_store, tmp_path):
    path = tmp_path / "store"
    files = _data_files(path)
    assert filled_store.provenance(1).success is None
    filled_store.set_success_label(1, True, "alice-pseudo")
    filled_store.set_success_label(1, False, "bob-pseudo")
    filled_store.set_success_label(2, np.True_, "bob-pseudo")
    assert filled_store.provenance(1).success is False
    assert filled_store.provenance(2).success is True
    assert filled_store.recorded_provenance(1).success is None  # as committed
    log = filled_store.labels()
    assert [(e.episode_id, e.success, e.labeller) for e in log] == [
        ("ep0001", True, "alice-pseudo"),
        ("ep0001", False, "bob-pseudo"),
        ("ep0002", True, "bob-pseudo"),
    ]
    assert all(e.time_unix_s > 1.7e9 for e in log)
    assert _data_files(path) == files  # labelling never touched a data or meta chunk
    doc = json.loads((path / "labels.json").read_text())
    assert doc["format"] == "robot_rl.labels" and len(doc["labels"]) == 3
    filled_store.set_success_label(1, None, "carol-pseudo")  # withdraw: unknown again
    filled_store.close()
    with open_store(path) as r:
        assert r.provenance(1).success is None and r.provenance(2).success is True
        assert len(r.labels()) == 4 and r.validate().ok


def test_preferences_round_trip(filled_store, tmp_path):
    ids = filled_store.episode_ids()
    assert ids == ["ep0000", "ep0001", "ep0002"]
    filled_store.add_preference(ids[0], ids[2], "a", "alice-pseudo")
    filled_store.add_preference(ids[2], ids[1], "equal", "bob-pseudo")
    reader = open_store(tmp_path / "store")
    assert [(p.episode_a, p.episode_b, p.preferred) for p in reader.preferences()] == [
        ("ep0000", "ep0002", "a"),
        ("ep0002", "ep0001", "equal"),
    ]
    assert all(
        isinstance(p, Preference) and p.labeller.endswith("-pseudo") for p in reader.preferences()
    )
    filled_store.add_preference(ids[1], ids[0], "b", "alice-pseudo")
    assert len(reader.preferences()) == 2  # a reader sees new labels after refresh
    reader.refresh()
    assert len(reader.preferences()) == 3
    reader.close()


def test_label_errors(filled_store, tmp_path):
    with pytest.raises(KeyError, match="no committed episode 'nope'"):
        filled_store.add_preference("ep0000", "nope", "a", "x")
    with pytest.raises(ValueError, match="same episode"):
        filled_store.add_preference("ep0000", "ep0000", "a", "x")
    with pytest.raises(ValueError, match="preferred"):
        filled_store.add_preference("ep0000", "ep0001", "first", "x")
    with pytest.raises(ValueError, match="success"):
        filled_store.set_success_label(0, "yes", "x")
    with pytest.raises(ValueError, match="labeller"):
        filled_store.set_success_label(0, True, "")
    with pytest.raises(IndexError, match="episode index 7"):
        filled_store.set_success_label(7, True, "x")
    with open_store(tmp_path / "store") as r, pytest.raises(RuntimeError, match="read-only"):
        r.set_success_label(0, True, "x")
    assert not (tmp_path / "store" / "labels.json").exists()


def test_label_write_is_atomic(filled_store, tmp_path, monkeypatch):
    filled_store.set_success_label(0, True, "alice-pseudo")
    before = (tmp_path / "store" / "labels.json").read_bytes()

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(atomic_fs.os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        filled_store.set_success_label(0, False, "bob-pseudo")
    monkeypatch.undo()
    assert (tmp_path / "store" / "labels.json").read_bytes() == before
    assert filled_store.provenance(0).success is True  # in memory too
    with open_store(tmp_path / "store") as r:
        assert r.provenance(0).success is True and len(r.labels()) == 1


def test_content_hash_includes_what_learning_sees(filled_store):
    h0 = filled_store.content_hash()
    filled_store.set_success_label(0, True, "alice-pseudo")
    h1 = filled_store.content_hash()
    assert h1 != h0
    filled_store.set_success_label(0, True, "bob-pseudo")  # same verdict, other labeller
    assert filled_store.content_hash() == h1
    filled_store.add_preference("ep0000", "ep0001", "a", "bob-pseudo")
    assert filled_store.content_hash() != h1


def test_corrupt_labels_document_is_a_clear_error_but_data_stays_readable(filled_store, tmp_path):
    filled_store.set_success_label(0, True, "alice-pseudo")
    filled_store.close()
    (tmp_path / "store" / "labels.json").write_text('{"format": "robot_rl.labels", "labels": [')
    with open_store(tmp_path / "store") as r:
        assert r.n_episodes == 3 and r.episode(1)["action"].shape == (5, 2)
        report = r.validate()
        assert [(ep, key) for ep, key, _ in report.problems] == [(None, "labels.json")]
        assert "unreadable JSON" in report.problems[0][2]
    with open_store(tmp_path / "store", "a") as w, pytest.raises(StoreFormatError, match="repair"):
        w.set_success_label(1, False, "lab")
    assert (tmp_path / "store" / "labels.json").read_text().endswith('"labels": [')
