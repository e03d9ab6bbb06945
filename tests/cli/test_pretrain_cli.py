"""robot-rl-pretrain on stores from elsewhere (Gymnasium-Robotics Fetch), and its errors."""

import json

import numpy as np
import pytest

from robot_rl.algos import ALGORITHMS
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.data.importers.gym_rollouts import record_gym_rollouts
from robot_rl.policies import load_policy
from tests.cli.test_pipeline import run_cli


@pytest.fixture(scope="module")
def fetch_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fetch") / "fetch_push.zarr"
    record_gym_rollouts("FetchPush-v4", path, n_episodes=4, seed=3, max_episode_steps=10)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_pretrain_on_a_fetch_store_with_a_constant_goal_coordinate(fetch_store, tmp_path, algo):
    # FetchPush's goal height never varies (the table): normalization must floor its zero
    # std instead of dividing by it.
    with EpisodeStore.open(fetch_store) as s:
        assert s.stats("desired_goal")["std"][2] == 0.0
    proc = run_cli(
        "pretrain",
        f"algo={algo}",
        f"dataset.path={fetch_store}",
        "train.steps=20",
        "train.batch_size=16",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    policy = load_policy(tmp_path / "policy")
    manifest = json.loads((tmp_path / "policy" / "manifest.json").read_text())
    assert manifest["algorithm"] == algo and manifest["env"]["task"] == "FetchPush-v4"
    rng = np.random.default_rng(0)
    obs = {k: rng.normal(size=shape).astype(np.float32) for k, shape in policy._shapes.items()}
    action = policy.act(obs)
    assert action.shape == (4,) and np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1)


def test_pretrain_refuses_an_empty_store(tmp_path):
    empty = tmp_path / "empty.zarr"
    EpisodeStore.create(
        empty,
        obs_spec={"x": ((2,), "float32")},
        action_dim=1,
        control_hz=10.0,
        robot="panda",
        task="reach",
    ).close()
    proc = run_cli("pretrain", f"dataset.path={empty}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "no committed episodes" in proc.stdout + proc.stderr


def test_pretrain_refuses_a_store_that_fails_validation(fetch_store, tmp_path):
    import shutil

    bad = tmp_path / "bad.zarr"
    shutil.copytree(fetch_store, bad)
    chunk = next(
        p
        for p in sorted((bad / "data" / "action").rglob("*"))
        if p.is_file() and p.name != "zarr.json"
    )
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    proc = run_cli("pretrain", f"dataset.path={bad}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "failed validation" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_rewardless_store_trains_bc_refuses_iql_and_cal_ql_gets_returns(fetch_store, tmp_path):
    from robot_rl.algos.rewards.relabel import strip_rewards

    bare = tmp_path / "bare.zarr"
    strip_rewards(fetch_store, bare)
    proc = run_cli(
        "pretrain", "algo=bc", f"dataset.path={bare}", "train.steps=10",
        f"hydra.run.dir={tmp_path / 'bc'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr  # BC never reads rewards
    proc = run_cli(
        "pretrain", "algo=iql", f"dataset.path={bare}", "train.steps=10",
        f"hydra.run.dir={tmp_path / 'iql'}",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "has no rewards" in proc.stdout and "robot-rl-data relabel" in proc.stdout
    # Cal-QL: the sampler adds each transition's Monte-Carlo return.
    proc = run_cli(
        "pretrain", "algo=cql", "algo.calibrated=true", f"dataset.path={fetch_store}",
        "train.steps=10", "train.batch_size=16", f"hydra.run.dir={tmp_path / 'calql'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pretrain_on_raw_unit_actions_gives_a_policy_in_those_units(tmp_path):
    """Pendulum's torque is in [-2, 2]: the import records it, training maps it to [-1, 1],
    and the policy (and the CLI's summary) gives actions in [-2, 2] again."""
    store = tmp_path / "pendulum.zarr"
    record_gym_rollouts("Pendulum-v1", store, n_episodes=2, seed=0, max_episode_steps=20)
    proc = run_cli(
        "pretrain",
        "algo=bc",
        f"dataset.path={store}",
        "train.steps=20",
        "train.batch_size=16",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "acts in the store's units, low=[-2.0] high=[2.0]" in proc.stdout.replace("\n", " ")
    policy = load_policy(tmp_path / "run" / "policy")
    assert (policy.manifest.action_low, policy.manifest.action_high) == ([-2.0], [2.0])
    obs = {"observation": np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)}
    assert np.all(np.abs(policy.act(obs)) <= 2.0)
    # OPE takes the raw-unit store and policy as they are (both mapped to [-1, 1]).
    proc = run_cli(
        "ope", str(store), "--policy", str(tmp_path / "run" / "policy"), "--fqe-steps", "20",
        "--fqe-hidden", "16", "--behaviour-steps", "10", "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FQE" in proc.stdout and "WIS" in proc.stdout


def test_dataset_obs_keys_choose_what_the_policy_sees(fetch_store, tmp_path):
    proc = run_cli(
        "pretrain", "algo=bc", f"dataset.path={fetch_store}", "train.steps=5",
        "dataset.obs_keys=[desired_goal,observation]", f"hydra.run.dir={tmp_path / 'two'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "left out ['achieved_goal']" in proc.stdout
    manifest = load_policy(tmp_path / "two" / "policy").manifest
    assert manifest.obs_keys == ["desired_goal", "observation"]  # in the order given
    proc = run_cli(
        "pretrain", "algo=bc", f"dataset.path={fetch_store}", "dataset.obs_keys=[goal]",
        f"hydra.run.dir={tmp_path / 'bad'}",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "obs_keys: ['goal'] not observation keys of" in proc.stdout
    proc = run_cli(
        "pretrain", f"dataset.path={fetch_store}", "dataset.obs_keys=[]",
        f"hydra.run.dir={tmp_path / 'empty'}",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "dataset.obs_keys" in proc.stdout + proc.stderr


def test_image_keys_are_left_out_unless_named(tmp_path):
    """An MLP policy gets a store's low-dimensional keys by default; an image key (2+
    dims) goes in only when named."""
    path = tmp_path / "cam.zarr"
    rng = np.random.default_rng(0)
    with EpisodeStore.create(
        path,
        obs_spec={"state": ((3,), "float32"), "cam": ((8, 8, 3), "uint8")},
        action_dim=2,
        control_hz=10.0,
        robot="panda",
        task="reach",
    ) as store:
        for _ in range(2):
            store.append_episode(
                {
                    "state": rng.normal(size=(10, 3)),
                    "cam": rng.integers(0, 255, (10, 8, 8, 3)).astype(np.uint8),
                    "action": rng.uniform(-1, 1, (10, 2)),
                    "reward": np.zeros(10),
                    "terminated": np.zeros(10, bool),
                    "truncated": np.eye(1, 10, 9, dtype=bool)[0],
                },
                EpisodeProvenance(source="scripted"),
            )
    for keys, expected in ((None, ["state"]), ("[state,cam]", ["state", "cam"])):
        run = tmp_path / f"run_{len(expected)}"
        extra = [f"dataset.obs_keys={keys}"] if keys else []
        proc = run_cli(
            "pretrain", "algo=bc", f"dataset.path={path}", "train.steps=3",
            f"hydra.run.dir={run}", *extra,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert load_policy(run / "policy").manifest.obs_keys == expected
    assert "left out ['cam']" not in proc.stdout  # the last run named it
