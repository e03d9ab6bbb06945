"""``import_zarr`` / ``robot-rl-data import zarr``: plain Zarr stores in Diffusion Policy's
replay-buffer layout (written here with plain zarr-python, zarr format 2 and 3), their
errors, and the round trip with ``robot-rl-data convert --zarr-format 2``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr

from robot_rl.cli.data import main
from robot_rl.data import open_store
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.data.importers import import_zarr
from robot_rl.data.sampler import resolve_obs_keys

ENDS = [4, 9, 12]  # three episodes of 4, 5 and 3 rows
T = ENDS[-1]


def _dp_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """What Diffusion Policy's Push-T replay buffer holds, small: positions, pixel-space
    actions (not in [-1, 1]) and camera frames."""
    rng = np.random.default_rng(seed)
    return {
        "agent_pos": rng.uniform(0, 512, size=(T, 2)).astype(np.float32),
        "action": rng.uniform(0, 512, size=(T, 2)).astype(np.float32),
        "img": rng.integers(0, 256, size=(T, 8, 8, 3)).astype(np.uint8),
    }


def write_dp_store(path, zarr_format, arrays=None, ends=ENDS, attrs=None, store=None):
    """A zarr group in Diffusion Policy's layout, written with plain zarr-python as its
    ReplayBuffer does (data/<key> chunked along time, meta/episode_ends int64)."""
    arrays = _dp_arrays() if arrays is None else arrays
    root = zarr.open_group(store if store is not None else str(path), mode="w",
                           zarr_format=zarr_format)  # fmt: skip
    root.attrs.update(attrs or {})
    data = root.require_group("data")
    for key, x in arrays.items():
        data.create_array(key, data=x, chunks=(5, *x.shape[1:]))
    if ends is not None:
        root.require_group("meta").create_array(
            "episode_ends", data=np.asarray(ends, dtype=np.int64), chunks=(len(ends),)
        )
    return arrays


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_diffusion_policy_store_imports_exactly(tmp_path, zarr_format):
    src = tmp_path / "pusht.zarr"
    arrays = write_dp_store(src, zarr_format)
    assert (src / (".zgroup" if zarr_format == 2 else "zarr.json")).is_file()
    result = import_zarr(src, tmp_path / "store", control_hz=10)
    assert result.episodes == [0, 1, 2] and result.n_steps == T
    with open_store(tmp_path / "store") as s:
        assert (s.control_hz, s.attrs["robot"], s.attrs["task"]) == (10.0, "pusht", "pusht")
        assert s.obs_spec == {"agent_pos": ((2,), "float32"), "img": ((8, 8, 3), "uint8")}
        assert s.action_dim == 2 and s.episode_ends.tolist() == ENDS
        # The camera is an image key: vector learners leave it out by default.
        assert resolve_obs_keys(s, None, images=False) == ["agent_pos"]
        assert not s.has_rewards  # DP stores have no rewards; none are made up
        for key in ("agent_pos", "img", "action"):
            np.testing.assert_array_equal(s.array(key), arrays[key], err_msg=key)
        for i, (start, end) in enumerate(zip([0, *ENDS[:-1]], ENDS, strict=True)):
            ep = s.episode(i)
            n = end - start
            # No flags in the source: each episode ends truncated (a time limit).
            assert ep["truncated"].tolist() == [False] * (n - 1) + [True]
            assert not ep["terminated"].any()
            prov = s.provenance(i)
            assert prov.source == "import" and prov.robot_id == "zarr:pusht"
            assert prov.policy_id == f"zarr{zarr_format}:pusht.zarr#episode_{i}"


def test_bc_pretrains_on_an_imported_store(tmp_path):
    from robot_rl.algos.pretrain import pretrain
    from robot_rl.config.store import register_configs
    from robot_rl.policies.artifact import load_policy
    from tests.algos.test_pretrain_algos import TINY, compose_pretrain

    register_configs()
    arrays = write_dp_store(tmp_path / "pusht.zarr", 2)
    import_zarr(tmp_path / "pusht.zarr", tmp_path / "store", control_hz=10)
    cfg = compose_pretrain("algo=bc", *TINY)
    with open_store(tmp_path / "store") as store:
        result = pretrain(store, cfg.algo, tmp_path / "run", train=cfg.train, progress=False)
    policy = load_policy(result.policy_dir)
    assert policy.manifest.obs_keys == ["agent_pos"]
    # Pixel-space actions: the policy acts within the data's range, not [-1, 1].
    low, high = arrays["action"].min(0), arrays["action"].max(0)
    np.testing.assert_allclose(policy.manifest.action_low, low, rtol=1e-6)
    np.testing.assert_allclose(policy.manifest.action_high, high, rtol=1e-6)
    action = policy.act({"agent_pos": arrays["agent_pos"][0]})
    assert action.shape == (2,) and np.all(action >= low - 1e-3) and np.all(action <= high + 1e-3)


def test_rewards_and_flags_are_honoured_and_episode_end_applies_where_none_is_set(tmp_path):
    arrays = _dp_arrays()
    arrays["reward"] = np.linspace(0, 1, T, dtype=np.float64)[:, None]  # (T, 1) as some write
    terminated = np.zeros(T, dtype=np.uint8)
    terminated[ENDS[0] - 1] = 1  # episode 0 reached a terminal state; 1 and 2 set nothing
    arrays["terminated"] = terminated
    write_dp_store(tmp_path / "src.zarr", 3, arrays)
    for episode_end in ("truncated", "terminated"):
        dst = tmp_path / episode_end
        import_zarr(tmp_path / "src.zarr", dst, control_hz=10, episode_end=episode_end)
        with open_store(dst) as s:
            assert s.has_rewards and "reward" not in s.obs_keys and "terminated" not in s.obs_keys
            np.testing.assert_array_equal(s.array("reward"), arrays["reward"][:, 0].astype("f4"))
            last = [e - 1 for e in ENDS]
            assert s.array("terminated")[last].tolist() == [
                True,
                episode_end == "terminated",
                episode_end == "terminated",
            ]
            assert s.array("truncated")[last].tolist() == [
                False,
                episode_end == "truncated",
                episode_end == "truncated",
            ]
            assert s.array("terminated").sum() + s.array("truncated").sum() == 3


def test_options_choose_keys_names_and_a_zip_file_is_read(tmp_path):
    arrays = _dp_arrays()
    arrays["act"] = arrays.pop("action")
    src = tmp_path / "pusht.zarr.zip"
    store = zarr.storage.ZipStore(src, mode="w")
    write_dp_store(src, 2, arrays, store=store)
    store.close()
    import_zarr(
        src,
        tmp_path / "s",
        control_hz=10,
        robot="pusher",
        task="push-t",
        obs_keys=["agent_pos"],
        action_key="act",
        max_episodes=2,
    )
    with open_store(tmp_path / "s") as s:
        assert (s.attrs["robot"], s.attrs["task"], s.obs_keys) == (
            "pusher",
            "push-t",
            ["agent_pos"],
        )
        assert s.episode_ends.tolist() == ENDS[:2]
        np.testing.assert_array_equal(s.array("action"), arrays["act"][: ENDS[1]])
        assert s.provenance(0).policy_id == "zarr2:pusht.zarr.zip#episode_0"


def _bad(path, case):
    arrays = _dp_arrays()
    ends = list(ENDS)
    if case == "no episode_ends":
        ends = None
    elif case == "ends not increasing":
        ends = [4, 4, 12]
    elif case == "ends short of the data":
        ends = [4, 9, 11]
    elif case == "a key of the wrong length":
        arrays["agent_pos"] = arrays["agent_pos"][:-1]
    elif case == "no action":
        arrays["actions"] = arrays.pop("action")
    elif case == "NaN":
        arrays["agent_pos"][6, 1] = np.nan
    write_dp_store(path, 3, arrays, ends)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no episode_ends", r"pusht\.zarr: no meta/episode_ends array"),
        ("ends not increasing", r"episode 1 ends at row 4 after it starts at row 4"),
        ("ends short of the data", r"data/agent_pos has 12 rows, but meta/episode_ends .* row 11"),
        ("a key of the wrong length", r"data/agent_pos has 11 rows, but meta/episode_ends"),
        ("no action", r"no data/action \(the actions\); data/ has \['actions', "),
        ("NaN", r"pusht\.zarr: episode 1 \(rows 4:9\): 'agent_pos': NaN or inf at step 2"),
    ],
)
def test_bad_stores_name_what_is_wrong_and_write_nothing(tmp_path, case, message):
    src = tmp_path / "pusht.zarr"
    _bad(src, case)
    with pytest.raises(ValueError, match=message):
        import_zarr(src, tmp_path / "dst", control_hz=10)
    assert not (tmp_path / "dst").exists()


def test_missing_facts_and_unknown_keys_are_named(tmp_path):
    src = tmp_path / "pusht.zarr"
    write_dp_store(src, 2)
    with pytest.raises(ValueError, match=r"control rate is unknown .*--control-hz"):
        import_zarr(src, tmp_path / "dst")
    with pytest.raises(ValueError, match=r"\['vel'\] not in data/"):
        import_zarr(src, tmp_path / "dst", control_hz=10, obs_keys=["vel"])
    with pytest.raises(ValueError, match="episode_end='done'"):
        import_zarr(src, tmp_path / "dst", control_hz=10, episode_end="done")
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        import_zarr(tmp_path / "none.zarr", tmp_path / "dst", control_hz=10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a zarr group"):
        import_zarr(tmp_path / "empty", tmp_path / "dst", control_hz=10)
    assert not (tmp_path / "dst").exists()


def test_cli_missing_episode_ends_is_one_line_and_writes_nothing(tmp_path):
    src = tmp_path / "pusht.zarr"
    _bad(src, "no episode_ends")
    dst = tmp_path / "dst.zarr"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli.data", "import", "zarr", str(src), str(dst),
         "--control-hz", "10"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert len(out.strip().splitlines()) == 1, out
    assert "meta/episode_ends" in out and str(src) in out
    assert not dst.exists()


def _recorded_store(path):
    """An episode store with everything an export carries: an image key, raw action
    units, rewards, timestamps, both per-frame flags and a success label."""
    store = EpisodeStore.create(
        path,
        obs_spec={"q": ((3,), "float32"), "cam": ((4, 4, 3), "uint8")},
        action_dim=2,
        control_hz=20.0,
        robot="panda",
        task="lift",
        units={"q": "rad", "action": "raw source units; bounds low=[-2.0, -2.0] high=[2.0, 2.0]"},
        timestamps=True,
    )
    rng = np.random.default_rng(1)
    for i, n in enumerate((3, 5)):
        store.append_episode(
            {
                "q": rng.normal(size=(n, 3)).astype(np.float32),
                "cam": rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8),
                "action": rng.uniform(-2, 2, (n, 2)).astype(np.float32),
                "reward": rng.normal(size=n).astype(np.float32),
                "terminated": np.eye(1, n, n - 1, dtype=bool)[0] & (i == 0),
                "truncated": np.eye(1, n, n - 1, dtype=bool)[0] & (i == 1),
                "clipped": rng.random(n) < 0.5,
                "intervention": rng.random(n) < 0.5,
                "timestamp": 100.0 * i + np.arange(n) / 20.0,
            },
            EpisodeProvenance(source="teleop", success=i == 0),
        )
    store.close()


def test_convert_then_import_gives_back_the_same_store(tmp_path, capsys):
    _recorded_store(tmp_path / "a.zarr")
    assert (
        main(["convert", str(tmp_path / "a.zarr"), str(tmp_path / "a2"), "--zarr-format", "2"]) == 0
    )
    # Everything comes from the export's attributes: no option is needed.
    assert main(["import", "zarr", str(tmp_path / "a2"), str(tmp_path / "b.zarr")]) == 0
    out = capsys.readouterr().out
    assert "imported 2 episodes (8 steps)" in out and "robot panda, task lift, 20 Hz" in out
    with open_store(tmp_path / "a.zarr") as a, open_store(tmp_path / "b.zarr") as b:
        assert b.obs_spec == a.obs_spec and b.obs_keys == a.obs_keys
        assert b.data_keys == a.data_keys
        assert (b.control_hz, b.attrs["robot"], b.attrs["task"]) == (20.0, "panda", "lift")
        assert b.attrs["units"] == a.attrs["units"] and b.has_timestamps
        assert b.episode_ends.tolist() == a.episode_ends.tolist()
        for key in a.data_keys:
            x, y = a.array(key), b.array(key)
            assert x.dtype == y.dtype, key
            np.testing.assert_array_equal(y, x, err_msg=key)
        assert [b.provenance(i).success for i in range(2)] == [True, False]
        assert b.provenance(0).source == "import"


def test_an_episode_store_is_not_imported_as_a_plain_zarr(tmp_path):
    _recorded_store(tmp_path / "a.zarr")
    with pytest.raises(ValueError, match="is an episode store already"):
        import_zarr(tmp_path / "a.zarr", tmp_path / "b")
