"""robot-rl-data subcommands on real stores: exit codes, output, and the stores they write."""

import numpy as np
import pytest
import zarr

from robot_rl.cli.data import main
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.data.governance import load_salt, operator_pseudonym, pseudonymize


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
    assert "3 episodes, 30 steps" in out and "joint_pos" in out
    assert "content hash" not in out  # reads every chunk: only with --hash
    assert main(["info", str(store_path), "--hash"]) == 0
    with EpisodeStore.open(store_path) as s:
        assert f"content hash {s.content_hash()}" in capsys.readouterr().out
    assert main(["stats", str(store_path), "-k", "reward"]) == 0
    assert "reward" in capsys.readouterr().out


def test_info_shows_action_units_and_stats_summarizes_wide_keys(tmp_path, capsys):
    store = EpisodeStore.create(
        tmp_path / "s",
        obs_spec={"img": ((4, 5), "uint8"), "q": ((2,), "float32")},
        action_dim=2,
        control_hz=10.0,
        robot="panda",
        task="reach",
        units={"action": "rad/s"},
    )
    t = 6
    store.append_episode(
        {
            "img": np.arange(t * 20, dtype=np.uint8).reshape(t, 4, 5),
            "q": np.zeros((t, 2), np.float32),
            "action": np.zeros((t, 2), np.float32),
            "reward": np.zeros(t, np.float32),
            "terminated": np.zeros(t, bool),
            "truncated": np.eye(1, t, t - 1, dtype=bool)[0],
        },
        EpisodeProvenance(source="scripted"),
    )
    store.close()
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "rad/s" in out and "normalized" not in out
    assert main(["stats", str(tmp_path / "s"), "-k", "img", "-k", "q"]) == 0
    out = capsys.readouterr().out
    assert "all 20" in out and "119" in out  # one row: max over the 20 elements
    rows = [line for line in out.splitlines() if "│" in line]
    assert len(rows) == 1 + 2  # img: one summary row; q: one row per element


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


# ---------------------------------------------------------------- label, filter, purge, ...


@pytest.fixture(autouse=True)
def salt_file(tmp_path, monkeypatch):
    """Pseudonyms use a salt file in the test's directory, never the user's."""
    path = tmp_path / "salt"
    monkeypatch.setenv("ROBOT_RL_PSEUDONYM_SALT_FILE", str(path))
    # Labelling and purging never create a salt (a new one matches no recorded operator):
    # the recorder's run would have made it.
    load_salt(path)
    return path


def _ops_store(path, operators):
    store = EpisodeStore.create(
        path,
        obs_spec={"joint_pos": ((7,), "float32")},
        action_dim=4,
        control_hz=20.0,
        robot="panda",
        task="reach",
    )
    rng = np.random.default_rng(1)
    for i, op in enumerate(operators):
        t = 4
        store.append_episode(
            {
                "joint_pos": rng.normal(size=(t, 7)),
                "action": rng.uniform(-1, 1, (t, 4)),
                "reward": rng.normal(size=t),
                "terminated": np.zeros(t, bool),
                "truncated": np.ones(t, bool),
            },
            EpisodeProvenance(
                source="teleop" if i % 2 else "scripted", operator=op, episode_id=f"e{i}"
            ),
        )
    store.close()
    return path


def test_label_success_and_preferences(store_path, capsys, salt_file):
    assert main(["label", str(store_path), "--episode", "1", "--failure", "--labeller", "Ann"]) == 0
    out = capsys.readouterr().out
    assert "episode 1" in out and "failure" in out and "Ann" not in out
    assert main(["label", str(store_path), "--prefer-index", "0", "2"]) == 0
    with EpisodeStore.open(store_path) as s:
        ids = s.episode_ids()
        assert s.provenance(1).success is False
        assert s.labels()[0].labeller == pseudonymize("Ann", salt_file.read_bytes())
        prefs = s.preferences()
        assert [(p.episode_a, p.episode_b, p.preferred) for p in prefs] == [(ids[0], ids[2], "a")]
    assert main(["label", str(store_path), "--prefer", ids[1], ids[0], "--equal"]) == 0
    with EpisodeStore.open(store_path) as s:
        assert s.preferences()[-1].preferred == "equal"
    assert main(["info", str(store_path)]) == 0
    assert "1 label entries, 2 preferences" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--episode", "9", "--success"], "episode index 9 out of range"),
        (["--episode", "0"], "give --success, --failure or --unknown"),
        (["--episode", "0", "--success", "--prefer-index", "0", "1"], "exactly one of"),
        (["--prefer", "nope", "x"], "no committed episode 'nope'"),
    ],
)
def test_label_errors_exit_2(store_path, capsys, args, message):
    assert main(["label", str(store_path), *args]) == 2
    out = capsys.readouterr().out
    assert message in out and out.count("\n") == 1


def test_filter_purge_merge_split_convert(tmp_path, capsys):
    src = _ops_store(tmp_path / "src", ["pa", "pb", "pa", "pb", "pc"])
    assert main(["filter", str(src), str(tmp_path / "f"), "--source", "teleop"]) == 0
    assert "wrote 2 episode(s)" in capsys.readouterr().out
    assert (
        main(["filter", str(src), str(tmp_path / "g"), "--operator", "pa", "--episodes", "1:"]) == 0
    )
    with EpisodeStore.open(tmp_path / "f") as f, EpisodeStore.open(tmp_path / "g") as g:
        assert f.episode_ids() == ["e1", "e3"] and g.episode_ids() == ["e2"]

    assert main(["purge", str(src), "--operator", "pb"]) == 2  # no terminal, no --yes
    assert "--yes" in capsys.readouterr().out
    assert main(["purge", str(src), "--operator", "pb", "--yes"]) == 0
    assert "removed 2 episode(s)" in capsys.readouterr().out
    with EpisodeStore.open(src) as s:
        assert s.episode_ids() == ["e0", "e2", "e4"] and s.validate().ok

    assert main(["merge", str(tmp_path / "m"), str(src), str(tmp_path / "f")]) == 0
    with EpisodeStore.open(tmp_path / "m") as m:
        assert m.episode_ids() == ["e0", "e2", "e4", "e1", "e3"]

    args = ["split", str(tmp_path / "m"), "--into", "train=0.6,val=0.4", "--seed", "1"]
    assert main([*args, "--out-dir", str(tmp_path / "sp")]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "val" in out
    with EpisodeStore.open(tmp_path / "sp" / "train.zarr") as tr:
        assert tr.n_episodes == 3

    assert main(["convert", str(src), str(tmp_path / "v2"), "--zarr-format", "2"]) == 0
    assert (tmp_path / "v2" / ".zgroup").is_file()
    v2 = zarr.open_group(tmp_path / "v2", mode="r", zarr_format=2)
    np.testing.assert_array_equal(v2["meta/episode_ends"][:], [4, 8, 12])


def test_purge_by_operator_name(tmp_path, capsys, salt_file):
    src = _ops_store(tmp_path / "src", [operator_pseudonym("Ann"), "other"])
    assert main(["purge", str(src), "--operator-name", "Ann", "--yes"]) == 0
    with EpisodeStore.open(src) as s:
        assert s.episode_ids() == ["e1"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["merge", "{t}/m", "{t}/a", "{t}/b"], "differ in control_hz"),
        (["split", "{t}/a", "--into", "train=0.9,val=0.3", "--out-dir", "{t}/o"], "sum to 1"),
        (["split", "{t}/a", "--into", "train:0.9", "--out-dir", "{t}/o"], "name=fraction"),
        (["filter", "{t}/a", "{t}/a"], "already exists"),
        (["filter", "{t}/a", "{t}/x", "--episodes", "3"], "expected A:B"),
        (["convert", "{t}/a", "{t}/a", "--zarr-format", "2"], "already exists"),
        (["purge", "{t}/nope", "--operator", "p", "--yes"], "does not exist"),
        (["purge", "{t}/a", "--yes"], "exactly one of --operator"),
    ],
)
def test_governance_errors_exit_2(tmp_path, capsys, argv, message):
    _ops_store(tmp_path / "a", ["p"])
    b = EpisodeStore.create(
        tmp_path / "b",
        obs_spec={"joint_pos": ((7,), "float32")},
        action_dim=4,
        control_hz=10.0,
        robot="panda",
        task="reach",
    )
    b.close()
    assert main([a.format(t=tmp_path) for a in argv]) == 2
    out = capsys.readouterr().out
    assert message in out and out.startswith("error:")


def test_convert_requires_format_2(store_path, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["convert", str(store_path), str(tmp_path / "o"), "--zarr-format", "3"])
    assert e.value.code == 2  # argparse's usage error


def test_commands_registry_is_extensible(monkeypatch, capsys):
    from robot_rl.cli import data

    def add(p):
        p.add_argument("thing")

    monkeypatch.setattr(
        data,
        "COMMANDS",
        [*data.COMMANDS, data.Command("hello", lambda a: print(f"hi {a.thing}") or 0, "x", add)],
    )
    assert data.main(["hello", "there"]) == 0
    assert "hi there" in capsys.readouterr().out


def test_purge_and_label_never_create_a_salt(tmp_path, capsys, salt_file, monkeypatch):
    src = _ops_store(tmp_path / "src", ["other"])
    missing = tmp_path / "no-salt-here"
    monkeypatch.setenv("ROBOT_RL_PSEUDONYM_SALT_FILE", str(missing))
    assert main(["purge", str(src), "--operator-name", "Ann", "--yes"]) == 2
    assert "no pseudonym salt file" in capsys.readouterr().out
    assert main(["label", str(src), "--episode", "0", "--success", "--labeller", "Ann"]) == 2
    assert not missing.exists()
    with EpisodeStore.open(src) as s:
        assert s.n_episodes == 1 and s.labels() == []


def test_purge_that_matches_nothing_fails_unless_allowed(tmp_path, capsys, salt_file):
    src = _ops_store(tmp_path / "src", [operator_pseudonym("Ann"), "other"])
    assert main(["purge", str(src), "--operator-name", "Bob", "--yes"]) == 1
    assert "nothing removed" in capsys.readouterr().out
    assert main(["purge", str(src), "--operator-name", "Bob", "--yes", "--allow-none"]) == 0
    # Names are stripped and case-folded: " ANN " is Ann.
    assert main(["purge", str(src), "--operator-name", " ANN ", "--yes"]) == 0
    with EpisodeStore.open(src) as s:
        assert s.episode_ids() == ["e1"]


def test_purge_warns_when_operator_is_not_a_pseudonym(tmp_path, capsys, salt_file):
    src = _ops_store(tmp_path / "src", ["Ann", "other"])
    assert main(["purge", str(src), "--operator", "Ann", "--yes"]) == 0
    assert "does not look like a pseudonym" in capsys.readouterr().out
    assert main(["purge", str(src), "--operator", "0123456789abcdef", "--yes"]) == 1
    assert "does not look like" not in capsys.readouterr().out


def test_train_reward_defaults_are_the_configs(capsys):
    # Unset options pass nothing, so each kind's config keeps its own default; --help
    # shows those defaults, read from the configs.
    from robot_rl.algos.rewards import PreferenceConfig, SuccessConfig
    from robot_rl.cli.common import given
    from robot_rl.cli.data import build_parser
    from robot_rl.cli.data_commands.labels import REWARD_OPTIONS

    parser = build_parser()
    args = parser.parse_args(["train-reward", "s", "--kind", "success", "--out", "m"])
    assert given(args, REWARD_OPTIONS) == {}
    args = parser.parse_args(
        ["train-reward", "s", "--kind", "success", "--out", "m", "--steps", "9"]
    )
    assert given(args, REWARD_OPTIONS) == {"steps": 9}
    with pytest.raises(SystemExit):
        parser.parse_args(["train-reward", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    steps = f"preference {PreferenceConfig().steps}, success {SuccessConfig().steps}"
    assert f"gradient steps (default: {steps})" in text
    assert f"seed (default: {PreferenceConfig().seed})" in text


# ---------------------------------------------------------------- import: bad sources


def _bad_sources(tmp_path):
    (tmp_path / "not.hdf5").write_text("not an HDF5 file")
    (tmp_path / "empty").mkdir()
    return [
        # (argv, what the one line must say)
        (["gym", "Pendulum-v9"], ["gym env id 'Pendulum-v9'", "close registered ids: Pendulum-v1"]),
        (["gym", "nosuchpkg/Arm-v0"], ["Namespace nosuchpkg not found", "'module:id'"]),
        (["robomimic", str(tmp_path / "none.hdf5")], ["none.hdf5: no robomimic HDF5 file"]),
        (["robomimic", str(tmp_path / "not.hdf5")], ["not.hdf5: not an HDF5 file"]),
        (["minari", str(tmp_path / "empty")], ["empty: not a Minari dataset directory"]),
        (["zarr", str(tmp_path / "none.zarr")], ["none.zarr: no such file or directory"]),
        (["zarr", str(tmp_path / "empty")], ["empty: not a zarr group"]),
        (
            ["robomimic", str(tmp_path / "not.hdf5"), "--seed", "1"],
            ["--seed applies to import gym"],
        ),
        (["gym", "Pendulum-v1", "--action-key", "a"], ["--action-key applies to import zarr"]),
    ]


def test_import_of_a_bad_source_is_one_line_and_writes_nothing(tmp_path, capsys):
    for argv, wanted in _bad_sources(tmp_path):
        dst = tmp_path / "dst.zarr"
        assert main(["import", argv[0], argv[1], str(dst), *argv[2:]]) == 2, argv
        out = capsys.readouterr()
        text = (out.out + out.err).strip()
        assert len(text.splitlines()) == 1 and text.startswith("error:"), (argv, text)
        for w in wanted:
            assert w in text, (argv, text)
        assert not dst.exists(), argv
