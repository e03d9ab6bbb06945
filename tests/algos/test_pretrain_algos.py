"""``robot-rl-pretrain algo=<name>``: every registered algorithm is selectable from Hydra
as its own config dataclass, with that dataclass's defaults and no other algorithm's
settings; the training run's settings are ``train.<key>``."""

import dataclasses
import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from robot_rl.algos import ALGORITHMS, CQLConfig, IQLConfig
from robot_rl.algos.pretrain import pretrain
from robot_rl.config.algos import ACTIVATION_NAMES, ALGORITHM_CONFIGS
from robot_rl.config.schema import MOVED_TO_TRAIN, ConfigError, PretrainConfig, TrainConfig
from robot_rl.config.store import check_overrides, register_configs, to_object
from robot_rl.data.episode_store import EpisodeProvenance, EpisodeStore
from robot_rl.paths import CONF_DIR
from robot_rl.policies.artifact import load_policy


@pytest.fixture(scope="module", autouse=True)
def _registered():
    register_configs()


def compose_raw(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("pretrain", overrides=["dataset.path=/unused.zarr", *overrides])


def compose_pretrain(*overrides: str) -> PretrainConfig:
    return to_object(compose_raw(*overrides), PretrainConfig)


def test_the_config_layer_knows_every_registered_algorithm():
    # robot_rl.config cannot import torch, so it lists the configs itself; ALGORITHMS
    # (the registry) must pair each algorithm with exactly that config class.
    assert {n: c for n, (_, c) in ALGORITHMS.items()} == ALGORITHM_CONFIGS
    assert all(cls.name == name for name, (cls, _) in ALGORITHMS.items())


def test_activation_names_are_the_networks():
    from robot_rl.policies.network import ACTIVATIONS

    assert set(ACTIVATION_NAMES) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algo_option_is_the_algorithm_config_with_its_defaults(name):
    cfg = compose_pretrain(f"algo={name}")
    config_cls = ALGORITHMS[name][1]
    assert type(cfg.algo) is config_cls and cfg.algo == config_cls()
    assert cfg.train == TrainConfig()


def test_composed_config_shows_the_chosen_algorithms_fields_only():
    # What `robot-rl-pretrain algo=iql --cfg job` prints, and what reports record.
    raw = compose_raw("algo=iql")
    assert list(raw.algo) == [f.name for f in dataclasses.fields(IQLConfig)]
    assert set(raw.train) == {f.name for f in dataclasses.fields(TrainConfig)}
    text = OmegaConf.to_yaml(raw)
    assert (
        "expectile" in text
        and "cql_alpha" not in text
        and "null" not in text.replace("actor_lr: null", "").replace("obs_keys: null", "")
    )


def test_overrides_reach_the_algorithm_config():
    cfg = compose_pretrain("algo=cql", "algo.cql_alpha=1.0", "algo.calibrated=true")
    assert isinstance(cfg.algo, CQLConfig)
    assert cfg.algo.cql_alpha == 1.0 and cfg.algo.calibrated and cfg.algo.n_action_samples == 10


def test_settings_of_another_algorithm_are_refused_by_name():
    with pytest.raises(ConfigCompositionException, match=r"algo\.alpha"):
        compose_raw("algo=iql", "algo.alpha=1.0")
    # The command line is checked first, with a message that says where the key lives.
    with pytest.raises(ConfigError, match=r"algo\.expectile is not a setting of algo=bc "):
        check_overrides(["algo=bc", "algo.expectile=0.8", "dataset.path=x"], "pretrain")
    with pytest.raises(ConfigError, match=r"algo\.expectile .*algo=bc.*a setting of algo=iql"):
        check_overrides(["algo.expectile=0.8"], "pretrain")  # bc: pretrain.yaml's default
    with pytest.raises(ConfigError, match=r"algo\.weight_decay is not a setting of algo=td3bc"):
        check_overrides(["+algo.weight_decay=0.1", "algo=td3bc"], "pipeline")
    check_overrides(["algo=iql", "algo.expectile=0.8"], "pretrain")  # its own setting


@pytest.mark.parametrize("key", MOVED_TO_TRAIN)
def test_training_run_settings_under_algo_name_their_new_place(key):
    with pytest.raises(ConfigError, match=rf"algo\.{key} has moved to train\.{key}"):
        check_overrides(["algo=iql", f"algo.{key}=1"], "pretrain")
    with pytest.raises(ConfigCompositionException, match=key):
        compose_raw(f"algo.{key}=1")  # Hydra refuses it too, less helpfully


def test_invalid_algorithm_values_name_the_field():
    with pytest.raises(ConfigError, match=r"algo\.cql_alpha=-1"):
        compose_pretrain("algo=cql", "algo.cql_alpha=-1")
    with pytest.raises(ConfigError, match=r"algo\.expectile=1\.5"):
        compose_pretrain("algo=iql", "algo.expectile=1.5")
    with pytest.raises(ConfigError, match=r"algo\.name"):
        compose_pretrain("algo=bc", "algo.name=sac")
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        compose_pretrain("train.batch_size=0")


def test_a_setting_of_the_wrong_kind_is_named():
    # Hydra types every field; in Python the dataclass checks kinds itself.
    with pytest.raises(ConfigError, match=r"algo\.actor_lr='3e-5': expected a number"):
        CQLConfig(actor_lr="3e-5")
    assert CQLConfig(actor_lr=3e-5).actor_lr == 3e-5


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


TINY = ["train.steps=6", "algo.hidden_sizes=[16,16]", "train.batch_size=8", "train.device=cpu"]


@pytest.mark.parametrize("name", sorted(set(ALGORITHMS) - {"bc"}))
def test_pretrain_writes_a_policy_for_each_algorithm(name, store, tmp_path):
    cfg = compose_pretrain(f"algo={name}", *TINY)
    result = pretrain(store, cfg.algo, tmp_path / "run", train=cfg.train, progress=False)
    policy = load_policy(result.policy_dir)
    assert policy.manifest.algorithm == name
    # Without a Hydra run config, the manifest records the algorithm's and the run's fields.
    run = {"algo": dataclasses.asdict(cfg.algo), "train": dataclasses.asdict(cfg.train)}
    assert policy.manifest.config == json.loads(json.dumps(run))
    action = policy.act({"joint_pos": np.zeros(7, np.float32)})
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)


def test_calql_through_pretrain_gets_monte_carlo_returns(store, tmp_path):
    # pretrain asks the sampler for returns discounted with the algorithm's own discount;
    # Cal-QL then logs how often its bound lifted the policy's Q-values.
    cfg = compose_pretrain("algo=cql", "algo.calibrated=true", *TINY)
    result = pretrain(store, cfg.algo, tmp_path / "run", train=cfg.train, progress=False)
    assert "train/bound_rate" in result.history


def test_pretrain_refuses_what_is_not_an_algorithm_config(store, tmp_path):
    with pytest.raises(ConfigError, match="TrainConfig: expected the config of one of"):
        pretrain(store, TrainConfig(), tmp_path / "run", progress=False)


def test_mixed_precision_reaches_the_trainer(store, tmp_path):
    from robot_rl.policies import read_manifest

    def weights(*overrides: str) -> str:
        cfg = compose_pretrain("algo=td3bc", *TINY, *overrides)
        result = pretrain(
            store, cfg.algo, tmp_path / "-".join(overrides), train=cfg.train, progress=False
        )
        return read_manifest(result.policy_dir).weights_sha256

    fp32 = weights("train.mixed_precision=false")
    assert weights("train.mixed_precision=false") == fp32  # seeded: same run, same weights
    assert weights("train.mixed_precision=true") != fp32  # bf16 forward passes


@pytest.mark.parametrize("name", ["iql", "cql"])
def test_return_range_reward_normalization_reaches_the_sampler(name, store, tmp_path):
    from robot_rl.data.sampler import return_range_scale
    from robot_rl.policies import read_manifest

    def scale(*overrides: str) -> float:
        cfg = compose_pretrain(f"algo={name}", *TINY, *overrides)
        result = pretrain(
            store, cfg.algo, tmp_path / "-".join(overrides), train=cfg.train, progress=False
        )
        return read_manifest(result.policy_dir).metrics["train/reward_scale"]

    assert scale("algo.reward_normalization=none") == 1.0
    expected = return_range_scale(store)
    assert expected != 1.0
    assert scale("algo.reward_normalization=return_range") == pytest.approx(expected)


def test_periodic_checkpoints_are_all_kept_and_export_as_the_final_policy(store, tmp_path):
    from robot_rl.algos.pretrain import export_checkpoint
    from robot_rl.algos.trainer import iter_checkpoints
    from robot_rl.policies import read_manifest

    cfg = compose_pretrain("algo=iql", *TINY[1:], "train.steps=8", "train.checkpoint_every=2")
    result = pretrain(store, cfg.algo, tmp_path / "run", train=cfg.train, progress=False)
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
