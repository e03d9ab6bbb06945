"""Governance: pseudonyms, purge (atomic in-place rewrite), filter, split, merge."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data import atomic_fs
from robot_rl.data import governance as gov
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore, open_store
from robot_rl.data.governance import EpisodeFilter, filter_episodes, merge, purge, split

# ---------------------------------------------------------------- pseudonyms


def test_pseudonym_deterministic_per_salt():
    a = gov.pseudonymize("Alice Example", b"s" * 32)
    assert a == gov.pseudonymize("  Alice Example ", b"s" * 32)  # same name typed again
    assert len(a) == 16 and set(a) <= set("0123456789abcdef")  # 64 bits, hex
    assert a != gov.pseudonymize("Alice Example", b"t" * 32)
    assert a != gov.pseudonymize("Bob Example", b"s" * 32)
    assert "alice" not in a.lower()
    with pytest.raises(ValueError, match="operator_name"):
        gov.pseudonymize(" ", b"s" * 32)


def test_salt_file_created_private_and_reused(tmp_path, monkeypatch):
    salt_file = tmp_path / "cfg" / "robot_rl" / "pseudonym_salt"
    monkeypatch.setenv(gov.SALT_FILE_ENV, str(salt_file))
    assert gov.salt_file_path() == salt_file
    first = gov.operator_pseudonym("Alice")
    assert salt_file.is_file()
    assert stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    assert len(salt_file.read_bytes()) == gov.SALT_BYTES
    assert gov.operator_pseudonym("Alice") == first  # the same salt is read back
    other = tmp_path / "other_salt"
    assert gov.operator_pseudonym("Alice", other) != first  # a new random salt
    monkeypatch.delenv(gov.SALT_FILE_ENV)
    assert gov.salt_file_path() == Path.home() / ".config" / "robot_rl" / "pseudonym_salt"


def test_short_or_open_salt_file(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    with pytest.raises(ValueError, match="3 bytes"):
        gov.load_salt(short)
    open_ = tmp_path / "open"
    open_.write_bytes(b"x" * 32)
    os.chmod(open_, 0o644)
    with pytest.warns(UserWarning, match="readable by others"):
        gov.load_salt(open_)


# ---------------------------------------------------------------- a store with everything

STREAMS = {"state": {"jp": ((3,), "float32")}}


def _make_store(path, operators, *, seed=0, control_hz=20.0, id_prefix="e"):
    store = EpisodeStore.create(
        path,
        obs_spec={"q": ((2,), "float32")},
        action_dim=1,
        control_hz=control_hz,
        robot="panda",
        task="reach",
        streams=STREAMS,
        chunk_steps=4,
    )
    rng = np.random.default_rng(seed)
    for i, op in enumerate(operators):
        T = 3 + i % 4
        frames = {
            "q": rng.normal(size=(T, 2)),
            "action": rng.normal(size=(T, 1)),
            "reward": rng.normal(size=T),
            "terminated": np.zeros(T, bool),
            "truncated": np.eye(1, T, T - 1, dtype=bool)[0],
            "timestamp": np.arange(T) * 0.05,
        }
        n = 5 * T if i % 3 else 0  # some episodes without stream rows
        rows = {"jp": rng.normal(size=(n, 3)), "timestamp": np.arange(n) * 0.01}
        prov = EpisodeProvenance(
            "teleop" if i % 2 else "scripted",
            operator=op,
            robot_id=f"fr3-{i % 2}",
            episode_id=f"{id_prefix}{i}",
            start_time_unix_s=1.7e9 + i,
        )
        store.append_episode(frames, prov, {"state": rows})
    return store


def _content(store, i):
    """Everything of one episode: data, stream rows, provenance as recorded."""
    out = {f"data/{k}": v for k, v in store.episode(i).items()}
    out.update({f"state/{k}": v for k, v in store.stream("state", i).items()})
    out["provenance"] = store.recorded_provenance(i).to_json()
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], str):
            assert a[k] == b[k], k
        else:
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


@pytest.fixture(scope="module")
def _ops_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "s"
    store = _make_store(path, ["pa", "pb", "pa", "pc", "pb", "pa", "pc"])
    store.set_success_label(0, True, "lab1")
    store.set_success_label(1, False, "pb")  # pb labels an episode of its own
    store.set_success_label(3, True, "pb")  # ...and one of pc
    store.add_preference("e0", "e1", "a", "lab1")
    store.add_preference("e0", "e3", "b", "lab1")
    store.add_preference("e2", "e3", "equal", "pb")
    store.close()
    return path


@pytest.fixture
def ops_store(_ops_template, tmp_path):
    """Seven episodes of operators pa, pb, pc with a stream, labels and preferences."""
    shutil.copytree(_ops_template, tmp_path / "s")
    return tmp_path / "s"


# ---------------------------------------------------------------- purge


def test_purge_removes_exactly_the_operator(ops_store):
    with open_store(ops_store) as before:
        kept_before = {
            before.recorded_provenance(i).episode_id: _content(before, i)
            for i in range(before.n_episodes)
            if before.recorded_provenance(i).operator != "pb"
        }
    result = purge(ops_store, "pb")
    assert result == gov.PurgeResult(
        episodes_removed=2, episodes_kept=5, labels_removed=2, preferences_removed=2
    )
    with open_store(ops_store) as after:
        assert after.validate().ok
        assert after.episode_ids() == ["e0", "e2", "e3", "e5", "e6"]
        for i, eid in enumerate(after.episode_ids()):
            _assert_same(_content(after, i), kept_before[eid])  # bit for bit
        assert all(after.recorded_provenance(i).operator != "pb" for i in range(5))
        # Labels about pb's episodes and by pb are gone; the rest stays.
        assert [(e.episode_id, e.labeller) for e in after.labels()] == [("e0", "lab1")]
        assert [(p.episode_a, p.episode_b) for p in after.preferences()] == [("e0", "e3")]
        assert after.provenance(3 - 1).success is None  # e3's label was pb's
        assert after.n_stream_rows("state") == sum(
            len(kept_before[e]["state/timestamp"]) for e in kept_before
        )
    # No hidden copy of the old store is left behind.
    assert sorted(p.name for p in ops_store.parent.iterdir()) == ["s"]


def test_purge_of_nobody_leaves_the_store_alone(ops_store):
    inode = ops_store.stat().st_ino
    assert purge(ops_store, "nobody").episodes_removed == 0
    assert ops_store.stat().st_ino == inode


def test_purge_needs_the_writer_lock(ops_store):
    with open_store(ops_store, "a"), pytest.raises(RuntimeError, match="another writer"):
        purge(ops_store, "pa")


def test_crash_at_the_swap_leaves_the_original(ops_store, monkeypatch):
    with open_store(ops_store) as s:
        h, n = s.content_hash(), s.n_episodes

    def crash(new, path):
        raise OSError("simulated crash at the swap")

    monkeypatch.setattr(gov, "_swap_into_place", crash)
    with pytest.raises(OSError, match="simulated crash"):
        purge(ops_store, "pa")
    with open_store(ops_store) as s:
        assert (s.content_hash(), s.n_episodes) == (h, n) and s.validate().ok
    assert sorted(p.name for p in ops_store.parent.iterdir()) == ["s"]


def test_error_between_journal_renames_rolls_back(ops_store, monkeypatch):
    # Without renameat2's exchange the swap is two renames under a journal.
    with open_store(ops_store) as s:
        h = s.content_hash()
    monkeypatch.setattr(atomic_fs, "_renameat2_exchange", lambda a, b: False)

    def fail(new, path):
        raise OSError("simulated error between the renames")

    monkeypatch.setattr(atomic_fs, "_rename_second", fail)
    with pytest.raises(OSError, match="between the renames"):
        purge(ops_store, "pa")
    with open_store(ops_store) as s:
        assert s.content_hash() == h
    assert sorted(p.name for p in ops_store.parent.iterdir()) == ["s"]


_KILL_BETWEEN_RENAMES = """
import os, signal, sys
from robot_rl.data import atomic_fs, governance
atomic_fs._renameat2_exchange = lambda a, b: False
atomic_fs._rename_second = lambda new, path: os.kill(os.getpid(), signal.SIGKILL)
governance.purge(sys.argv[1], "pa")
"""


def test_kill_between_journal_renames_recovers_the_new_store(ops_store):
    proc = subprocess.run([sys.executable, "-c", _KILL_BETWEEN_RENAMES, str(ops_store)])
    assert proc.returncode == -signal.SIGKILL
    assert not ops_store.exists()  # killed with the old store moved away, the new not in
    with pytest.raises(FileNotFoundError, match="interrupted"):
        open_store(ops_store)  # a read-only open never finishes a swap
    with open_store(ops_store, "a") as s:  # the writer's open finishes it: the new store
        assert s.validate().ok
        assert s.episode_ids() == ["e1", "e3", "e4", "e6"]
    assert sorted(p.name for p in ops_store.parent.iterdir()) == ["s"]


def test_journal_swap_without_exchange(ops_store, monkeypatch):
    monkeypatch.setattr(atomic_fs, "_renameat2_exchange", lambda a, b: False)
    purge(ops_store, "pc")
    with open_store(ops_store) as s:
        assert s.validate().ok and "e3" not in s.episode_ids() and s.n_episodes == 5
    assert sorted(p.name for p in ops_store.parent.iterdir()) == ["s"]


# ---------------------------------------------------------------- filter


@pytest.mark.parametrize(
    "predicate, expected",
    [
        (EpisodeFilter(source="teleop"), ["e1", "e3", "e5"]),
        (EpisodeFilter(success=True), ["e0", "e3"]),  # latest labels
        (EpisodeFilter(success=False), ["e1"]),
        (EpisodeFilter(operator="pa"), ["e0", "e2", "e5"]),
        (EpisodeFilter(robot_id="fr3-0"), ["e0", "e2", "e4", "e6"]),
        (EpisodeFilter(episodes=(2, 5)), ["e2", "e3", "e4"]),
        (EpisodeFilter(operator="pa", episodes=(1, None)), ["e2", "e5"]),
        (lambda i, prov: prov.episode_id.endswith(("4", "6")), ["e4", "e6"]),
    ],
)
def test_filter(ops_store, tmp_path, predicate, expected):
    assert filter_episodes(ops_store, tmp_path / "out", predicate) == len(expected)
    with open_store(ops_store) as src, open_store(tmp_path / "out") as out:
        assert out.episode_ids() == expected and out.validate().ok
        for i, eid in enumerate(expected):
            _assert_same(_content(out, i), _content(src, src.episode_index(eid)))
            assert out.provenance(i).success == src.provenance(src.episode_index(eid)).success
        kept = set(expected)
        assert all(p.episode_a in kept and p.episode_b in kept for p in out.preferences())
        assert out.schema == src.schema


def test_filter_refuses_an_existing_destination(ops_store, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists"):
        filter_episodes(ops_store, tmp_path / "taken", EpisodeFilter())
    assert (tmp_path / "taken" / "x").read_text() == "mine"


def test_filter_keeping_everything_keeps_the_hash(ops_store, tmp_path):
    filter_episodes(ops_store, tmp_path / "all", EpisodeFilter())
    with open_store(ops_store) as a, open_store(tmp_path / "all") as b:
        assert a.content_hash() == b.content_hash()


# ---------------------------------------------------------------- split


def test_split_deterministic_disjoint_complete(ops_store, tmp_path):
    paths = split(ops_store, {"train": 0.7, "val": 0.3}, seed=3, out_dir=tmp_path / "a")
    assert set(paths) == {"train", "val"} and paths["val"] == tmp_path / "a" / "val.zarr"
    with open_store(paths["train"]) as tr, open_store(paths["val"]) as va:
        train, val = tr.episode_ids(), va.episode_ids()
        assert (len(train), len(val)) == (5, 2)  # 4.9 -> 5, 2.1 -> 2
        assert tr.validate().ok and va.validate().ok
        assert sorted(train + val) == sorted(f"e{i}" for i in range(7))
        assert train == sorted(train, key=lambda e: int(e[1:]))  # source order kept
        ids = set(val)
        assert all(p.episode_a in ids and p.episode_b in ids for p in va.preferences())
    again = split(ops_store, {"train": 0.7, "val": 0.3}, seed=3, out_dir=tmp_path / "b")
    with open_store(again["val"]) as va2:
        assert va2.episode_ids() == val
    other = split(ops_store, {"train": 0.7, "val": 0.3}, seed=4, out_dir=tmp_path / "c")
    with open_store(other["val"]) as va3:
        assert va3.episode_ids() != val  # the seed matters


def test_split_counts_and_errors(ops_store, tmp_path):
    assert gov.split_counts(10, {"a": 0.5, "b": 0.25, "c": 0.25}) == {"a": 5, "b": 3, "c": 2}
    assert sum(gov.split_counts(7, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}).values()) == 7
    with pytest.raises(ValueError, match="sum to 1"):
        split(ops_store, {"train": 0.9, "val": 0.2}, 0, tmp_path / "x")
    with pytest.raises(ValueError, match="split name"):
        split(ops_store, {"../up": 1.0}, 0, tmp_path / "x")


# ---------------------------------------------------------------- merge


def test_merge_concatenates_with_labels(ops_store, tmp_path):
    other = _make_store(tmp_path / "o", ["pz", "pz"], seed=9, id_prefix="o")
    other.set_success_label(1, True, "lab2")
    other.close()
    assert merge([ops_store, tmp_path / "o"], tmp_path / "m") == 9
    with (
        open_store(ops_store) as a,
        open_store(tmp_path / "o") as b,
        open_store(tmp_path / "m") as m,
    ):
        assert m.validate().ok
        assert m.episode_ids() == [*a.episode_ids(), *b.episode_ids()]
        for i in range(a.n_episodes):
            _assert_same(_content(m, i), _content(a, i))
        _assert_same(_content(m, 8), _content(b, 1))
        assert m.provenance(8).success is True and m.provenance(0).success is True
        assert len(m.labels()) == len(a.labels()) + len(b.labels())
        assert m.preferences() == a.preferences()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"control_hz": 10.0}, "control_hz"),
        ({"obs": ((3,), "float32")}, "obs_spec"),
        ({"reward_source": "none"}, "reward_source"),
    ],
)
def test_merge_schema_mismatch_names_the_field(ops_store, tmp_path, change, field):
    kw = dict(
        obs_spec={"q": change.get("obs", ((2,), "float32"))},
        action_dim=1,
        control_hz=change.get("control_hz", 20.0),
        robot="panda",
        task="reach",
        streams=STREAMS,
        reward_source=change.get("reward_source", "recorded"),
    )
    EpisodeStore.create(tmp_path / "odd", **kw).close()
    with pytest.raises(ValueError, match=f"differ in {field}"):
        merge([ops_store, tmp_path / "odd"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_duplicate_episodes(ops_store, tmp_path):
    with pytest.raises(ValueError, match="episode_id 'e0' is in both"):
        merge([ops_store, ops_store], tmp_path / "m")


def test_salt_creation_is_announced_and_can_be_refused(tmp_path, capsys):
    path = tmp_path / "salt"
    with pytest.raises(FileNotFoundError, match=str(path)):
        gov.load_salt(path, create=False)
    assert not path.exists()
    gov.load_salt(path)
    assert "created a new pseudonym salt file" in capsys.readouterr().err
    gov.load_salt(path, create=False)
    assert capsys.readouterr().err == ""


def test_merge_keeps_label_logs_in_store_order(ops_store, tmp_path):
    from robot_rl.data.labels import LabelLog, SuccessLabel

    other = _make_store(tmp_path / "o", ["pz"], seed=9, id_prefix="o")
    eid = other.episode_ids()[0]
    # The later entry carries an earlier wall-clock time (a machine with a skewed clock).
    other._write_labels(
        LabelLog([SuccessLabel(eid, True, "l1", 200.0), SuccessLabel(eid, False, "l2", 100.0)])
    )
    other.close()
    merge([tmp_path / "o"], tmp_path / "m")
    with open_store(tmp_path / "m") as m:
        assert m.provenance(0).success is False
        assert [e.labeller for e in m.labels()] == ["l1", "l2"]
