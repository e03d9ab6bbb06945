"""Tests of the transition and window samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.data import sampler_cache
from robot_rl.data.batch import TransitionBatch, WindowBatch
from robot_rl.data.sampler import PICK_BLOCK, TransitionSampler, WindowSampler, resolve_obs_keys


@pytest.fixture
def mixed_store(new_store, make_frames, make_prov):
    """Episodes: 4 steps truncated (rows 0-3), 3 terminated (4-6), 2 with no flag (7-8)."""
    store = new_store()
    store.append_episode(make_frames(4, 0, last="truncated", seed=0), make_prov(0))
    store.append_episode(make_frames(3, 4, last="terminated", seed=1), make_prov(1))
    store.append_episode(make_frames(2, 7, last="none", seed=2), make_prov(2))
    yield store
    store.close()


def _rows_of(obs: torch.Tensor) -> np.ndarray:
    # make_frames puts the global row index in joint_pos[:, 0], the first obs column.
    return obs[:, 0].numpy().astype(np.int64)


def test_shapes_and_dtypes(mixed_store):
    s = TransitionSampler(mixed_store, batch_size=16)
    assert (s.obs_dim, s.action_dim) == (3 + 4, 2)
    b = s.sample()
    assert isinstance(b, TransitionBatch)
    assert b.obs.shape == b.next_obs.shape == (16, 7)
    assert b.action.shape == (16, 2) and b.reward.shape == b.terminated.shape == (16,)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in b)


def test_flat_obs_order_follows_obs_keys(mixed_store):
    s = TransitionSampler(mixed_store, obs_keys=["cam", "joint_pos"])
    b = s.gather(np.array([5]))
    ep = mixed_store.episode(1)
    expected = np.concatenate([ep["cam"][1].reshape(-1), ep["joint_pos"][1]]).astype(np.float32)
    np.testing.assert_array_equal(b.obs[0].numpy(), expected)
    with pytest.raises(ValueError, match="not observation keys"):
        TransitionSampler(mixed_store, obs_keys=["gripper"])


def test_valid_rows_exclude_truncated_and_unflagged_last_rows(mixed_store):
    s = TransitionSampler(mixed_store, batch_size=4096, seed=3)
    # Row 3 (truncated end) and row 8 (end without a flag) have no s'; row 6 is terminal.
    np.testing.assert_array_equal(s.valid_rows, [0, 1, 2, 4, 5, 6, 7])
    assert s.n_transitions == 7
    rows = _rows_of(s.sample().obs)
    assert set(rows) == {0, 1, 2, 4, 5, 6, 7}
    # Uniform over valid transitions: each of 7 rows near 1/7 of 4096 draws.
    counts = np.bincount(rows, minlength=9)[[0, 1, 2, 4, 5, 6, 7]]
    assert counts.min() > 4096 / 7 * 0.8 and counts.max() < 4096 / 7 * 1.2


def test_next_obs_and_terminated(mixed_store):
    s = TransitionSampler(mixed_store)
    b = s.gather(s.valid_rows)
    obs = np.concatenate(
        [mixed_store.array("joint_pos"), mixed_store.array("cam").reshape(9, -1)], axis=1
    ).astype(np.float32)
    for k, row in enumerate(s.valid_rows):
        nxt = row if row == 6 else row + 1  # the terminal row is its own s'
        np.testing.assert_array_equal(b.next_obs[k].numpy(), obs[nxt], err_msg=f"row {row}")
        np.testing.assert_array_equal(b.obs[k].numpy(), obs[row])
    np.testing.assert_array_equal(b.terminated.numpy(), [0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(b.action.numpy(), mixed_store.array("action")[s.valid_rows])
    np.testing.assert_array_equal(b.reward.numpy(), mixed_store.array("reward")[s.valid_rows])


def test_reproducible_by_seed(mixed_store):
    a = TransitionSampler(mixed_store, batch_size=32, seed=7)
    b = TransitionSampler(mixed_store, batch_size=32, seed=7)
    c = TransitionSampler(mixed_store, batch_size=32, seed=8)
    for _ in range(3):
        x, y, z = a.sample(), b.sample(), c.sample()
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))
    assert not torch.equal(x.obs, z.obs)


def test_out_of_memory_path_matches_in_memory(mixed_store):
    fast = TransitionSampler(mixed_store, batch_size=64, seed=1, in_memory=True)
    slow = TransitionSampler(mixed_store, batch_size=64, seed=1, in_memory=False)
    rows = np.array([7, 0, 6, 6, 2, 5, 4, 1])  # unsorted, repeated, across chunks
    for x, y in ((fast.gather(rows), slow.gather(rows)), (fast.sample(), slow.sample())):
        for name, u, v in zip(TransitionBatch._fields, x, y, strict=True):
            assert torch.equal(u, v), name


def test_sampler_uses_committed_snapshot(mixed_store, make_frames, make_prov):
    s = TransitionSampler(mixed_store)
    mixed_store.append_episode(make_frames(5, 9), make_prov(3))
    assert s.n_transitions == 7
    assert TransitionSampler(mixed_store).n_transitions == 7 + 4


def test_window_sampler_pads_and_masks_at_episode_end(mixed_store):
    w = WindowSampler(mixed_store, horizon=3, batch_size=8)
    b = w.gather(np.array([0, 2, 3, 7]))
    assert isinstance(b, WindowBatch)
    assert b.obs.shape == (4, 3, 7) and b.action.shape == (4, 3, 2) and b.mask.shape == (4, 3)
    np.testing.assert_array_equal(b.mask.numpy(), [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0]])
    # Windows never cross into the next episode: padding repeats the last real step.
    np.testing.assert_array_equal(
        b.obs[:, :, 0].numpy(), [[0, 1, 2], [2, 3, 3], [3, 3, 3], [7, 8, 8]]
    )
    actions = mixed_store.array("action")
    np.testing.assert_array_equal(b.action[1].numpy(), actions[[2, 3, 3]])
    assert w.n_windows == 9 and w.sample().obs.shape == (8, 3, 7)


def test_sampler_state_round_trip_resumes_the_batch_sequence(tmp_path):
    from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
    from robot_rl.data.sampler import TransitionSampler

    store = EpisodeStore.create(
        tmp_path / "s.zarr",
        obs_spec={"x": ((2,), "float32")},
        action_dim=1,
        control_hz=20.0,
        robot="r",
        task="t",
    )
    t = 30
    store.append_episode(
        {
            "x": np.random.default_rng(0).normal(size=(t, 2)).astype(np.float32),
            "action": np.zeros((t, 1), np.float32),
            "reward": np.arange(t, dtype=np.float32),
            "terminated": np.eye(1, t, t - 1, dtype=bool)[0],
            "truncated": np.zeros(t, bool),
        },
        EpisodeProvenance(source="scripted"),
    )
    # Picks are drawn PICK_BLOCK batches at a time: resume at a block's start, inside
    # it, at its end, and from a state saved before any draw.
    a = TransitionSampler(store, batch_size=8, seed=3)
    states, rewards = [], []
    for _ in range(2 * PICK_BLOCK + 3):
        states.append(a.state_dict())
        rewards.append(a.sample().reward)
    for k in (0, 1, 5, PICK_BLOCK - 1, PICK_BLOCK, PICK_BLOCK + 1, 2 * PICK_BLOCK):
        b = TransitionSampler(store, batch_size=8, seed=99)
        b.load_state_dict(states[k])
        for i in range(k, k + 3):
            assert torch.equal(b.sample().reward, rewards[i]), (k, i)
    # The state is the generator's after the last batch, whatever the block: a sampler
    # of another batch size goes on from there (4 + 4 picks are the next batch's 8).
    half = TransitionSampler(store, batch_size=4, seed=0)
    half.load_state_dict(states[5])
    assert torch.equal(torch.cat([half.sample().reward, half.sample().reward]), rewards[5])
    # The blocks draw the stream that one draw per batch would (so a checkpoint from
    # before the blocks, which saved the generator at a batch boundary, resumes alike).
    rng = np.random.default_rng(3)
    for reward in rewards:
        rows = a.valid_rows[rng.integers(0, a.n_transitions, size=8)]
        assert torch.equal(reward, torch.from_numpy(np.arange(t, dtype=np.float32)[rows]))


def test_window_sampler_out_of_memory_matches_in_memory(mixed_store, monkeypatch):
    fast = WindowSampler(mixed_store, horizon=3, batch_size=16, seed=2)
    # The disk path never loads a whole array.
    monkeypatch.setattr(mixed_store, "array", lambda key: pytest.fail(f"loaded {key}"))
    slow = WindowSampler(mixed_store, horizon=3, batch_size=16, seed=2, in_memory=False)
    starts = np.array([8, 0, 3, 3, 5])
    for x, y in ((fast.gather(starts), slow.gather(starts)), (fast.sample(), slow.sample())):
        for name, u, v in zip(WindowBatch._fields, x, y, strict=True):
            assert torch.equal(u, v), name


@pytest.fixture
def gap_store(new_store, make_frames, make_prov):
    """Episode 0: 6 rows (0-5), rows lost after its row 2; episode 1: 4 rows (6-9), a gap
    after its row 0, terminated."""
    store = new_store()
    store.append_episode(make_frames(6, 0), make_prov(0, gap_rows=[2], dropped_rows=3))
    store.append_episode(
        make_frames(4, 6, last="terminated"), make_prov(1, gap_rows=[0], dropped_rows=1)
    )
    yield store
    store.close()


@pytest.mark.parametrize("in_memory", [True, False])
def test_transitions_skip_recording_gaps(gap_store, in_memory):
    s = TransitionSampler(gap_store, in_memory=in_memory)
    # Episode 0: rows 0-4 minus 2 (gap) and no row 5 (truncated last); episode 1: 7-9.
    np.testing.assert_array_equal(s.valid_rows, [0, 1, 3, 4, 7, 8, 9])
    b = s.gather(s.valid_rows)
    assert not np.any(_rows_of(b.next_obs) - _rows_of(b.obs) > 1)


@pytest.mark.parametrize("in_memory", [True, False])
def test_windows_stop_at_recording_gaps(gap_store, in_memory):
    w = WindowSampler(gap_store, horizon=3, in_memory=in_memory)
    b = w.gather(np.array([1, 2, 3, 6]))
    np.testing.assert_array_equal(
        b.obs[:, :, 0].numpy(), [[1, 2, 2], [2, 2, 2], [3, 4, 5], [6, 6, 6]]
    )
    np.testing.assert_array_equal(b.mask.numpy(), [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]])


def _assert_same(x, y, fields):
    for name, u, v in zip(fields, x, y, strict=True):
        assert torch.equal(u, v), name


def test_disk_cache_matches_in_memory_and_maps_flat_files(mixed_store, tmp_path):
    fast = TransitionSampler(mixed_store, batch_size=64, seed=4)
    slow = TransitionSampler(
        mixed_store, batch_size=64, seed=4, in_memory=False, cache_dir=tmp_path / "cache"
    )
    assert slow.cache.path.parent == tmp_path / "cache"
    assert sorted(p.name for p in slow.cache.path.iterdir()) == [
        "action.npy",
        "manifest.json",
        "obs.npy",
        "reward.npy",
        "terminated.npy",
    ]
    obs = np.load(slow.cache.path / "obs.npy", mmap_mode="r")
    assert obs.shape == (9, 7) and obs.dtype == np.float32
    assert sampler_cache.cache_nbytes(mixed_store, slow.obs_keys) == 9 * (4 * (7 + 2 + 1) + 1)
    for _ in range(5):
        _assert_same(fast.sample(), slow.sample(), TransitionBatch._fields)
    wf = WindowSampler(mixed_store, horizon=4, batch_size=32, seed=5)
    ws = WindowSampler(
        mixed_store, horizon=4, batch_size=32, seed=5, in_memory=False, cache_dir=tmp_path / "cache"
    )
    assert ws.cache.path == slow.cache.path  # same snapshot and keys: one cache
    for _ in range(3):
        _assert_same(wf.sample(), ws.sample(), WindowBatch._fields)


def test_disk_cache_is_reused(mixed_store, tmp_path, monkeypatch):
    first = TransitionSampler(mixed_store, in_memory=False, cache_dir=tmp_path / "cache")
    manifest = first.cache.path / "manifest.json"
    mtime = manifest.stat().st_mtime_ns
    real_build = sampler_cache._build
    monkeypatch.setattr(sampler_cache, "_build", lambda *a: pytest.fail("cache rebuilt"))
    second = TransitionSampler(mixed_store, in_memory=False, cache_dir=tmp_path / "cache", seed=1)
    assert second.cache.path == first.cache.path
    assert manifest.stat().st_mtime_ns == mtime
    # Another obs_keys selection is another cache.
    monkeypatch.setattr(sampler_cache, "_build", real_build)
    other = TransitionSampler(
        mixed_store, obs_keys=["cam"], in_memory=False, cache_dir=tmp_path / "cache"
    )
    assert other.cache.path != first.cache.path and first.cache.path.exists()


def test_disk_cache_rebuilt_when_store_gets_an_episode(
    mixed_store, tmp_path, make_frames, make_prov
):
    old = TransitionSampler(mixed_store, in_memory=False, cache_dir=tmp_path / "cache")
    old_path = old.cache.path
    mixed_store.append_episode(make_frames(5, 9, last="terminated"), make_prov(3))
    new = TransitionSampler(mixed_store, in_memory=False, cache_dir=tmp_path / "cache", seed=2)
    assert new.cache.path != old_path and not old_path.exists()  # the stale one is pruned
    assert new.cache.obs.shape == (14, 7) and new.n_transitions == 7 + 5
    fast = TransitionSampler(mixed_store, seed=2)
    _assert_same(fast.gather(fast.valid_rows), new.gather(new.valid_rows), TransitionBatch._fields)
    # The old sampler keeps its snapshot: its maps outlive the removed files.
    assert old.gather(old.valid_rows).obs.shape == (7, 7)


def test_crash_mid_build_leaves_no_trusted_cache(mixed_store, tmp_path, monkeypatch):
    real = sampler_cache._copy_rows
    calls = []

    def crash_on_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        real(*args)

    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(sampler_cache, "_copy_rows", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated crash"):
        TransitionSampler(mixed_store, in_memory=False, cache_dir=cache_dir)
    assert list(cache_dir.iterdir()) == []  # no cache, no temporary left behind
    monkeypatch.setattr(sampler_cache, "_copy_rows", real)
    # A half-built directory left by a killed process (no manifest) is not trusted either.
    name, _ = sampler_cache._identity(mixed_store, ["joint_pos", "cam"])
    (cache_dir / name).mkdir()
    np.save(cache_dir / name / "obs.npy", np.zeros((9, 7), np.float32))
    s = TransitionSampler(mixed_store, in_memory=False, cache_dir=cache_dir, seed=6)
    fast = TransitionSampler(mixed_store, seed=6)
    _assert_same(fast.sample(), s.sample(), TransitionBatch._fields)
    assert (s.cache.path / "manifest.json").is_file()


def test_disk_cache_dir_not_writable_is_a_clear_error(mixed_store, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=r"cannot write in .*cache_dir="):
        TransitionSampler(mixed_store, in_memory=False, cache_dir=blocker / "cache")


def test_default_cache_root_follows_env(mixed_store, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBOT_RL_CACHE_DIR", str(tmp_path / "env"))
    s = WindowSampler(mixed_store, horizon=2, in_memory=False)
    assert s.cache.path.parent == tmp_path / "env" / "sampler"


# ------------------------------------------------- Monte-Carlo returns (Cal-QL) and checks


def test_mc_returns_are_discounted_sums_to_the_end_of_each_episode(filled_store):
    from robot_rl.data.batch import MCTransitionBatch

    gamma = 0.9
    s = TransitionSampler(filled_store, batch_size=8, mc_return_discount=gamma)
    reward, ends = filled_store.array("reward"), filled_store.episode_ends
    start = 0
    for end in ends:
        for t in range(start, end):
            want = sum(gamma ** (k - t) * reward[k] for k in range(t, end))
            batch = s.gather(np.array([t]) if t in s.valid_rows else s.valid_rows[:1])
            if t in s.valid_rows:
                assert isinstance(batch, MCTransitionBatch)
                assert batch.mc_return[0].item() == pytest.approx(want, rel=1e-5, abs=1e-6)
        start = end
    # Same transitions as without returns: the extra field is appended, nothing else moves.
    plain = TransitionSampler(filled_store, batch_size=8, seed=3).sample()
    with_mc = TransitionSampler(filled_store, batch_size=8, seed=3, mc_return_discount=gamma)
    for a, b in zip(plain, with_mc.sample()[:5], strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="mc_return_discount"):
        TransitionSampler(filled_store, mc_return_discount=1.5)


def test_in_memory_sampler_vouches_for_finite_data_out_of_core_does_not(filled_store):
    s = TransitionSampler(filled_store, batch_size=4)
    assert s.checked_finite
    assert not TransitionSampler(filled_store, batch_size=4, in_memory=False).checked_finite


def test_reward_scale_multiplies_rewards_and_returns(filled_store):
    from robot_rl.data.sampler import return_range_scale

    reward, ends = filled_store.array("reward").astype(np.float64), filled_store.episode_ends
    returns = np.add.reduceat(reward, np.r_[0, ends[:-1]])
    scale = return_range_scale(filled_store)
    assert scale == pytest.approx(1000.0 / (returns.max() - returns.min()))
    plain = TransitionSampler(filled_store, batch_size=8, seed=1, mc_return_discount=0.9)
    scaled = TransitionSampler(
        filled_store, batch_size=8, seed=1, mc_return_discount=0.9, reward_scale=scale
    )
    a, b = plain.sample(), scaled.sample()
    torch.testing.assert_close(b.reward, a.reward * scale)
    torch.testing.assert_close(b.mc_return, a.mc_return * scale)
    torch.testing.assert_close(b.obs, a.obs, rtol=0, atol=0)
    with pytest.raises(ValueError, match="reward_scale"):
        TransitionSampler(filled_store, reward_scale=0.0)


def _device_kwargs(store) -> dict:
    """Every option that changes what a batch carries: scaled rewards, MC returns and
    actions mapped from [-2, 1] to [-1, 1]."""
    low, high = np.full(store.action_dim, -2.0), np.full(store.action_dim, 1.0)
    return dict(
        batch_size=64, seed=5, mc_return_discount=0.9, reward_scale=3.0, action_bounds=(low, high)
    )


def test_device_gather_path_gives_the_host_batches(filled_store):
    """The arrays-on-the-device path (taken on a GPU), run on the CPU: same batches."""
    host = TransitionSampler(filled_store, **_device_kwargs(filled_store))
    moved = TransitionSampler(filled_store, **_device_kwargs(filled_store))
    assert moved._on_device is None  # on the CPU the host path runs ...
    moved._on_device = moved._move_to_device()  # ... so force the other one
    for _ in range(3):
        x, y = host.sample(), moved.sample()
        _assert_same(x, y, type(x)._fields)
    # ... and those batches carry the options: actions mapped from [-2, 1], rewards x3.
    raw = TransitionSampler(filled_store, batch_size=64, seed=5)
    for _ in range(3):
        r = raw.sample()
    torch.testing.assert_close(y.action, torch.clip((r.action + 0.5) / 1.5, -1, 1))
    torch.testing.assert_close(y.reward, 3 * r.reward)
    # gather() by store rows takes the same path (rows mapped to the table's rows) ...
    rows = host.valid_rows[[0, 7, len(host.valid_rows) - 1, 7]]
    _assert_same(host.gather(rows), moved.gather(rows), type(x)._fields)
    # ... and both paths refuse a row that starts no transition: a time-limit last row
    # (not the next valid row's data), one past the store, one before it.
    last = int(filled_store.episode_ends[0]) - 1
    assert last not in host.valid_rows
    for sampler in (host, moved):
        for bad in (last, filled_store.n_steps, -1):
            with pytest.raises(ValueError, match=rf"rows \[{bad}\] start no transition"):
                sampler.gather(np.array([int(host.valid_rows[0]), bad]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("in_memory", [True, False], ids=["in_memory", "out_of_core"])
def test_gpu_sampler_gives_the_host_batches_on_the_gpu(filled_store, in_memory):
    host = TransitionSampler(filled_store, **_device_kwargs(filled_store))
    gpu = TransitionSampler(
        filled_store, device="cuda", in_memory=in_memory, **_device_kwargs(filled_store)
    )
    assert (gpu._on_device is not None) == in_memory  # in memory: gathered on the GPU
    for _ in range(3):
        x, y = host.sample(), gpu.sample()
        assert all(t.is_cuda for t in y)
        _assert_same(x, [t.cpu() for t in y], type(x)._fields)


def test_resolve_obs_keys_defaults_and_errors(new_store, tmp_path):
    store = new_store()  # joint_pos (3,), cam (2, 2)
    assert resolve_obs_keys(store) == ["joint_pos", "cam"]
    assert resolve_obs_keys(store, images=False) == ["joint_pos"]  # what an MLP gets
    assert resolve_obs_keys(store, ["cam", "joint_pos"], images=False) == ["cam", "joint_pos"]
    with pytest.raises(ValueError, match=r"\['goal'\] not observation keys"):
        resolve_obs_keys(store, ["goal"])
    with pytest.raises(ValueError, match="non-empty subset"):
        resolve_obs_keys(store, [])
    with pytest.raises(ValueError, match=r"\['joint_pos'\] named more than once"):
        resolve_obs_keys(store, ["joint_pos", "cam", "joint_pos"])
    from robot_rl.data.episode_store import EpisodeStore

    images_only = EpisodeStore.create(
        tmp_path / "img", obs_spec={"cam": ((2, 2), "uint8")}, action_dim=1, control_hz=10.0,
        robot="panda", task="reach",
    )  # fmt: skip
    with pytest.raises(ValueError, match="no observation key of at most one dimension"):
        resolve_obs_keys(images_only, images=False)
