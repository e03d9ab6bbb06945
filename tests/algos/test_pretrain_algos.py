"""``robot-rl-pretrain algo=<name>``: every registered algorithm is selectable from Hydra,
its YAML restates its defaults, and settings of other algorithms are refused."""

import dataclasses

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from robot_rl.algos import ALGORITHMS
from robot_rl.algos.pretrain import algorithm_config, pretrain
from robot_rl.config.schema import ALGORITHM_NAMES, AlgoConfig, ConfigError, PretrainConfig
from robot_rl.config.store import register_configs, to_object
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.paths import CONF_DIR
from robot_rl.policies.artifact import load_policy


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_configs()


def compose_pretrain(*overrides: str) -> PretrainConfig:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("pretrain", overrides=["dataset.path=/unused.zarr", *overrides])
    return to_object(cfg, PretrainConfig)


def test_schema_names_every_registered_algorithm():
    assert sorted(ALGORITHM_NAMES) == sorted(ALGORITHMS)
    assert all((CONF_DIR / "algo" / f"{name}.yaml").is_file() for name in ALGORITHMS)


def test_every_algorithm_setting_is_reachable_from_hydra():
    schema_fields = {f.name for f in dataclasses.fields(AlgoConfig)}
    for name, (_, config_cls) in ALGORITHMS.items():
        missing = {f.name for f in dataclasses.fields(config_cls)} - schema_fields
        assert not missing, f"{name}: {sorted(missing)} cannot be set as algo.<field>"


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algo_yaml_selects_the_algorithm_with_its_defaults(name):
    cfg = compose_pretrain(f"algo={name}")
    assert cfg.algo.name == name
    # The YAML restates the config class defaults; drift between them is a bug.
    assert algorithm_config(cfg.algo) == ALGORITHMS[name][1]()


def test_overrides_reach_the_algorithm_config():
    cfg = compose_pretrain("algo=cql", "algo.cql_alpha=1.0", "algo.calibrated=true")
    config = algorithm_config(cfg.algo)
    assert config.cql_alpha == 1.0 and config.calibrated and config.n_action_samples == 10


def test_settings_of_another_algorithm_are_refused():
    with pytest.raises(ConfigError, match=r"algo\.alpha=1\.0.*'iql'"):
        algorithm_config(compose_pretrain("algo=iql", "algo.alpha=1.0").algo)
    with pytest.raises(ConfigError, match=r"algo\.weight_decay"):
        algorithm_config(compose_pretrain("algo=td3bc", "algo.weight_decay=0.1").algo)


def test_invalid_algorithm_values_name_the_algorithm_and_field():
    with pytest.raises(ConfigError, match=r"algo=cql.*cql_alpha=-1"):
        algorithm_config(compose_pretrain("algo=cql", "algo.cql_alpha=-1").algo)
    with pytest.raises(ConfigError, match=r"algo\.name"):
        compose_pretrain("algo=bc", "algo.name=sac")


@pytest.fixture
def store(tmp_path):
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
    for t in (12, 12, 12):
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
    with EpisodeStore.open(path, mode="r") as opened:
        yield opened


TINY = ["algo.steps=6", "algo.hidden_sizes=[16,16]", "algo.batch_size=8", "algo.device=cpu"]


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"bc"}))
def test_pretrain_writes_a_policy_for_each_algorithm(name, store, tmp_path):
    cfg = compose_pretrain(f"algo={name}", *TINY)
    result = pretrain(store, cfg.algo, tmp_path / "run", progress=False)
    policy = load_policy(result.policy_dir)
    assert policy.manifest.algorithm == name
    action = policy.act({"joint_pos": np.zeros(7, np.float32)})
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)


def test_calql_through_pretrain_gets_monte_carlo_returns(store, tmp_path):
    # pretrain asks the sampler for returns discounted with the algorithm's own discount;
    # Cal-QL then logs how often its bound lifted the policy's Q-values.
    cfg = compose_pretrain("algo=cql", "algo.calibrated=true", *TINY)
    result = pretrain(store, cfg.algo, tmp_path / "run", progress=False)
    assert "train/bound_rate" in result.history


def test_a_setting_of_the_wrong_kind_is_named(store, tmp_path):
    from robot_rl.algos.pretrain import algorithm_config
    from robot_rl.config.schema import AlgoConfig

    with pytest.raises(ConfigError, match=r"algo.actor_lr='3e-5' \(str, expected a number\)"):
        algorithm_config(AlgoConfig(name="cql", actor_lr="3e-5"))
    assert algorithm_config(AlgoConfig(name="cql", actor_lr=3e-5)).actor_lr == 3e-5


def test_mixed_precision_reaches_the_trainer(store, tmp_path):
    from robot_rl.policies import read_manifest

    def weights(*overrides: str) -> str:
        cfg = compose_pretrain("algo=td3bc", *TINY, *overrides)
        result = pretrain(store, cfg.algo, tmp_path / "-".join(overrides), progress=False)
        return read_manifest(result.policy_dir).weights_sha256

    fp32 = weights("algo.mixed_precision=false")
    assert weights("algo.mixed_precision=false") == fp32  # seeded: same run, same weights
    assert weights("algo.mixed_precision=true") != fp32  # bf16 forward passes


@pytest.mark.parametrize("name", ["iql", "cql"])
def test_return_range_reward_normalization_reaches_the_sampler(name, store, tmp_path):
    from robot_rl.data.sampler import return_range_scale
    from robot_rl.policies import read_manifest

    def scale(*overrides: str) -> float:
        cfg = compose_pretrain(f"algo={name}", *TINY, *overrides)
        result = pretrain(store, cfg.algo, tmp_path / "-".join(overrides), progress=False)
        return read_manifest(result.policy_dir).metrics["train/reward_scale"]

    assert scale("algo.reward_normalization=none") == 1.0
    expected = return_range_scale(store)
    assert expected != 1.0
    assert scale("algo.reward_normalization=return_range") == pytest.approx(expected)


def test_periodic_checkpoints_are_all_kept_and_export_as_the_final_policy(store, tmp_path):
    from robot_rl.algos.pretrain import export_checkpoint
    from robot_rl.algos.trainer import iter_checkpoints
    from robot_rl.policies import read_manifest

    cfg = compose_pretrain("algo=iql", *TINY[1:], "algo.steps=8", "algo.checkpoint_every=2")
    result = pretrain(store, cfg.algo, tmp_path / "run", progress=False)
    checkpoints = iter_checkpoints(tmp_path / "run" / "train")
    assert [int(c.name.split("_")[1]) for c in checkpoints] == [2, 4, 6, 8]
    # The last checkpoint's actor is the policy pretrain saved, weight for weight.
    out = export_checkpoint(
        store, cfg.algo, checkpoint_dir=checkpoints[-1], policy_dir=tmp_path / "p8"
    )
    final, exported = read_manifest(result.policy_dir), read_manifest(out)
    assert exported.weights_sha256 == final.weights_sha256
    assert exported.config["checkpoint_step"] == 8
    assert all(not k.startswith("train/train/") for k in final.metrics)
    first = read_manifest(export_checkpoint(store, cfg.algo, checkpoints[0], tmp_path / "p2"))
    assert first.weights_sha256 != final.weights_sha256
    with pytest.raises(ValueError, match="config differs"):
        other = compose_pretrain("algo=iql", *TINY[1:], "algo.expectile=0.9")
        export_checkpoint(store, other.algo, checkpoints[0], tmp_path / "bad")
