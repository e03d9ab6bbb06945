"""SB3 export: TD3.load / SAC.load of the zip reproduce robot_rl's actions; the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import SAC, TD3

from robot_rl.cli.policy import main
from robot_rl.policies import sb3_export
from robot_rl.policies.artifact import MANIFEST_FILE, PolicyManifest, load_policy, save_policy
from robot_rl.policies.network import DeterministicActor
from robot_rl.policies.normalization import Normalizer
from robot_rl.policies.sb3_export import export_sb3
from robot_rl.sim.env import OBS_SPEC, RobotEnv

# The env's keys, in its (unsorted) order: SB3 sees them sorted, so columns get permuted.
SHAPES = {k: shape for k, (shape, _) in OBS_SPEC.items()}
OBS_KEYS = list(SHAPES)
SB3_CLASSES = {"td3": TD3, "sac": SAC}


def make_stats(seed=0):
    rng = np.random.default_rng(seed)
    stats = {
        k: {"mean": rng.normal(0.3, 1.0, s), "std": rng.uniform(0.02, 2.0, s)}
        for k, s in SHAPES.items()
    }
    # A goal that never varied in the data: std floored to 1e-3, mean far from 0.
    stats["goal"] = {"mean": np.array([0.6, 0.1, 0.05]), "std": np.zeros(3)}
    return stats


def save_artifact(directory, activation="relu", clip=10.0, layer_norm=False, **manifest_kw):
    torch.manual_seed(0)
    norm = Normalizer.from_stats(make_stats(), OBS_KEYS, SHAPES, clip=clip)
    actor = DeterministicActor(
        norm, action_dim=4, hidden_sizes=(32, 32), activation=activation, layer_norm=layer_norm
    )
    fields = dict(
        algorithm="td3_bc",
        obs_keys=OBS_KEYS,
        obs_shapes=SHAPES,
        action_dim=4,
        dataset_hash="sha256:feedbeef",
        episode_range=[3, 43],
        parent_policy_id="bc-20250101T000000Z-0123abcd",
        env={"robot": "panda", "task": "reach", "control_hz": 20.0},
        metrics={"eval/success_rate": 0.75},
    )
    fields.update(manifest_kw)
    return save_policy(directory, actor, PolicyManifest(**fields))


def random_obs(n, seed, clip=10.0):
    """Observations around the normalization mean, a fifth of them beyond the clip."""
    rng = np.random.default_rng(seed)
    stats = make_stats()
    out = {}
    for k, s in SHAPES.items():
        std = np.maximum(stats[k]["std"], 1e-3)
        z = 2.0 * rng.normal(size=(n, *s))
        z[: n // 5] *= 2.0 * clip
        out[k] = (stats[k]["mean"] + std * z).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sb3") / "policy"
    save_artifact(directory)
    return directory


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_sb3_load_reproduces_robot_rl_actions(artifact, tmp_path, algo):
    out = tmp_path / f"{algo}.zip"
    result = export_sb3(artifact, out, algo)
    assert result.path == out and out.is_file() and result.max_abs_diff <= 1e-5
    assert not [p for p in tmp_path.iterdir() if p != out]  # no temp files left
    policy = load_policy(artifact)
    model = SB3_CLASSES[algo].load(out, device="cpu")
    assert list(model.observation_space.spaces) == sorted(OBS_KEYS) != OBS_KEYS
    obs = random_obs(50, seed=1)
    expected = policy.act(obs)
    got, _ = model.predict(obs, deterministic=True)
    assert got.shape == (50, 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 0.1  # a real action, not a saturated or zero one
    one = {k: v[7] for k, v in obs.items()}
    np.testing.assert_allclose(model.predict(one, deterministic=True)[0], expected[7], atol=1e-5)
    assert model.robot_rl_manifest["policy_id"] == policy.policy_id
    assert model.robot_rl_manifest["dataset_hash"] == "sha256:feedbeef"
    if algo == "sac":  # narrow sampling around the deterministic action
        sampled, _ = model.predict(obs, deterministic=False)
        np.testing.assert_allclose(sampled, expected, atol=0.05)


def test_export_loads_without_robot_rl(artifact, tmp_path):
    for algo in ("td3", "sac"):
        export_sb3(artifact, tmp_path / f"{algo}.zip", algo)
    script = (
        "import sys; sys.modules['robot_rl'] = None\n"  # any robot_rl import now fails
        "import numpy as np\n"
        "from stable_baselines3 import SAC, TD3\n"
        "for cls, name in ((TD3, 'td3'), (SAC, 'sac')):\n"
        f"    m = cls.load({str(tmp_path)!r} + f'/{{name}}.zip', device='cpu')\n"
        "    obs = {k: np.zeros(s.shape, np.float32) for k, s in m.observation_space.items()}\n"
        "    a, _ = m.predict(obs, deterministic=True)\n"
        "    assert a.shape == (4,) and np.all(np.abs(a) <= 1), a\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_env_observation_space_and_rollout(artifact, tmp_path):
    env = RobotEnv("reach")
    out = tmp_path / "td3.zip"
    export_sb3(artifact, out, "td3", observation_space=env.observation_space)
    model = TD3.load(out, env=env, device="cpu")  # SB3 checks the spaces are equal
    policy = load_policy(artifact)
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action, _ = model.predict(obs, deterministic=True)
        np.testing.assert_allclose(action, policy.act(obs), atol=1e-5)
        obs, *_ = env.step(action)
    env.close()


def test_unclipped_tanh_actor_is_folded(tmp_path):
    save_artifact(tmp_path / "p", activation="tanh", clip=None)
    export_sb3(tmp_path / "p", tmp_path / "sac.zip", "sac")
    model = SAC.load(tmp_path / "sac.zip", device="cpu")
    assert model.policy.actor.latent_pi[1].__class__ is torch.nn.Tanh
    obs = random_obs(50, seed=2)
    got, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(got, load_policy(tmp_path / "p").act(obs), atol=1e-5)


def test_custom_key_order_and_wrong_space(artifact, tmp_path):
    order = ["goal", "joint_vel", *[k for k in OBS_KEYS if k not in ("goal", "joint_vel")]]
    space = spaces.Dict([(k, spaces.Box(-5.0, 5.0, SHAPES[k], np.float32)) for k in order])
    out = tmp_path / "td3.zip"
    export_sb3(artifact, out, "td3", observation_space=space)
    model = TD3.load(out, device="cpu")
    assert list(model.observation_space.spaces) == order
    obs = random_obs(20, seed=3)
    np.testing.assert_allclose(
        model.predict(obs, deterministic=True)[0], load_policy(artifact).act(obs), atol=1e-5
    )
    wrong = spaces.Dict({k: spaces.Box(-1, 1, (2,), np.float32) for k in OBS_KEYS})
    with pytest.raises(ValueError, match="does not fit"):
        export_sb3(artifact, tmp_path / "x.zip", "td3", observation_space=wrong)


def test_refuses_what_plain_sb3_cannot_express(tmp_path):
    save_artifact(tmp_path / "elu", activation="elu", clip=10.0)
    with pytest.raises(ValueError, match=r"clip.*ReLU"):
        export_sb3(tmp_path / "elu", tmp_path / "a.zip", "td3")
    save_artifact(tmp_path / "ln", layer_norm=True)
    with pytest.raises(ValueError, match="LayerNorm"):
        export_sb3(tmp_path / "ln", tmp_path / "b.zip", "sac")
    assert not list(tmp_path.glob("*.zip"))


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_action_bounds_carry_over_to_sb3(tmp_path, algo):
    """A policy trained on raw-unit actions acts in those units, and so does SB3's
    predict (SB3 rescales its squashed output onto the Box the export writes)."""
    low, high = [-2.0, 0.0, -0.5, 10.0], [2.0, 1.0, 0.5, 3000.0]  # one wide dim
    save_artifact(tmp_path / "bounds", action_low=low, action_high=high)
    policy = load_policy(tmp_path / "bounds")
    obs = random_obs(64, seed=4)
    actions = policy.act(obs)
    save_artifact(tmp_path / "unit")  # the same weights, acting in [-1, 1]
    unit = load_policy(tmp_path / "unit").act(obs)
    half = (np.array(high) - np.array(low)) / 2.0
    np.testing.assert_allclose((actions - np.array(low)) / half - 1.0, unit, atol=1e-5)
    assert np.all(actions >= np.array(low) - 1e-6) and np.all(actions <= np.array(high) + 1e-6)
    export_sb3(tmp_path / "bounds", tmp_path / "b.zip", algo)
    model = SB3_CLASSES[algo].load(tmp_path / "b.zip", device="cpu")
    np.testing.assert_array_equal(model.action_space.low, np.array(low, np.float32))
    sb3_actions = model.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose((sb3_actions - actions) / half, 0.0, atol=1e-5)


def test_export_errors(artifact, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_sb3(tmp_path / "nope", tmp_path / "a.zip", "td3")
    with pytest.raises(ValueError, match="unknown SB3 algorithm"):
        export_sb3(artifact, tmp_path / "a.zip", "ppo")
    with pytest.raises(ValueError, match=r"must end in \.zip"):
        export_sb3(artifact, tmp_path / "a.pkl", "td3")
    (tmp_path / "exists.zip").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_sb3(artifact, tmp_path / "exists.zip", "td3")
    assert (tmp_path / "exists.zip").read_bytes() == b"keep"
    # A mismatch found by the load-back check leaves nothing behind.
    monkeypatch.setattr(sb3_export, "max_action_diff", lambda *a: 0.5)
    with pytest.raises(ValueError, match="does not reproduce"):
        export_sb3(artifact, tmp_path / "bad.zip", "td3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.zip"]


def test_cli_info(artifact, capsys):
    assert main(["info", str(artifact), "--verify"]) == 0
    out = capsys.readouterr().out
    for text in (
        "td3_bc",
        "sha256:feedbeef",
        "episodes [3, 43)",
        "parent bc-20250101T000000Z-0123abcd",
        "task reach",
        "eval/success_rate: 0.75",
        "not judged yet",
        "verified",
    ):
        assert text in out, text
    assert main(["info", str(artifact), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads((artifact / MANIFEST_FILE).read_text())


def test_cli_export_end_to_end(artifact, tmp_path, capsys):
    out = tmp_path / "policy.zip"
    assert main(["export-sb3", str(artifact), "--algo", "sac", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "sources you trust" in text and "unpickle" in text
    obs = random_obs(10, seed=4)
    np.testing.assert_allclose(
        SAC.load(out, device="cpu").predict(obs, deterministic=True)[0],
        load_policy(artifact).act(obs),
        atol=1e-5,
    )
    assert main(["export-sb3", str(artifact), "--algo", "td3", "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().out
    assert (
        main(["export-sb3", str(artifact), "--algo", "td3", "--out", str(out), "--overwrite"]) == 0
    )
    assert TD3.load(out, device="cpu").robot_rl_manifest["algorithm"] == "td3_bc"


def test_cli_help_warns_about_pickle(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export-sb3", "--help"])
    assert exc.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "unpickled (cloudpickle) on load" in help_text and "sources you trust" in help_text


def test_cli_errors(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / MANIFEST_FILE).write_text("{not json")
    assert main(["info", str(bad)]) == 1
    assert "not valid JSON" in capsys.readouterr().out
    assert main(["export-sb3", str(bad), "--algo", "td3", "--out", str(tmp_path / "a.zip")]) == 1
    assert "not valid JSON" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export-sb3", str(bad), "--algo", "ppo", "--out", "a.zip"])
