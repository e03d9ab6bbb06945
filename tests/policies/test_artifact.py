"""Tests of the policy artifact: save/load round trip, validation, and no unpickling."""

import json
import pickle
import re

import numpy as np
import pytest
import torch

from robot_rl.policies.artifact import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    LoadedPolicy,
    PolicyManifest,
    load_policy,
    read_manifest,
    save_policy,
    update_manifest,
)
from robot_rl.policies.base import Policy
from robot_rl.policies.network import DeterministicActor
from robot_rl.policies.normalization import Normalizer

OBS_KEYS = ["joint_pos", "ee_pos", "goal"]
SHAPES = {"joint_pos": (7,), "ee_pos": (3,), "goal": (3,)}
STATS = {
    "joint_pos": {"mean": np.linspace(-1, 1, 7), "std": np.full(7, 0.4)},
    "ee_pos": {"mean": np.array([0.5, 0.0, 0.3]), "std": np.array([0.1, 0.2, 0.05])},
    # A goal that never varied in the data: std 0 on every dim.
    "goal": {"mean": np.array([0.6, 0.1, 0.05]), "std": np.zeros(3)},
}


def make_actor(seed=0):
    torch.manual_seed(seed)
    norm = Normalizer.from_stats(STATS, OBS_KEYS, SHAPES)
    return DeterministicActor(norm, action_dim=4, hidden_sizes=(16, 16))


def make_manifest(**overrides):
    fields = dict(
        algorithm="bc",
        obs_keys=OBS_KEYS,
        obs_shapes=SHAPES,
        action_dim=4,
        dataset_hash="sha256:abc123",
        episode_range=[0, 40],
        config={"algo": {"lr": 3e-4, "hidden_sizes": [16, 16]}, "seed": 0},
        metrics={"train/loss": 0.01},
    )
    fields.update(overrides)
    return PolicyManifest(**fields)


def random_obs(rng, batch=None):
    lead = () if batch is None else (batch,)
    return {k: rng.normal(size=lead + SHAPES[k]).astype(np.float32) for k in OBS_KEYS}


@pytest.fixture
def saved(tmp_path):
    actor = make_actor()
    directory = tmp_path / "policy"
    manifest = save_policy(directory, actor, make_manifest())
    return directory, actor, manifest


def test_round_trip_reproduces_actions_exactly(saved):
    directory, actor, _ = saved
    policy = load_policy(directory)
    assert isinstance(policy, Policy)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs = random_obs(rng)
        flat = np.concatenate([obs[k].reshape(-1) for k in OBS_KEYS])
        with torch.no_grad():
            expected = actor(torch.from_numpy(flat)).numpy()
        got = policy.act(obs)
        assert got.dtype == np.float32 and got.shape == (4,)
        assert np.array_equal(got, expected)
    batch = torch.randn(32, 13)
    with torch.no_grad():
        assert torch.equal(policy.act_batch(batch), actor(batch))
    assert np.array_equal(policy.act_batch(batch.numpy()), actor(batch).detach().numpy())
    policy.reset()  # no state; must not fail


def test_batched_dict_obs_matches_single_obs(saved):
    policy = load_policy(saved[0])
    obs = random_obs(np.random.default_rng(1), batch=6)
    batched = policy.act(obs)
    assert batched.shape == (6, 4)
    single = policy.act({k: v[2] for k, v in obs.items()})
    np.testing.assert_allclose(batched[2], single, rtol=1e-6, atol=1e-6)


def test_manifest_records_provenance_and_normalization(saved):
    directory, _, written = saved
    data = json.loads((directory / MANIFEST_FILE).read_text())
    assert data["format"] == "robot_rl.policy"
    assert data["format_version"] == FORMAT_VERSION
    assert data["algorithm"] == "bc"
    assert data["obs_keys"] == OBS_KEYS
    assert data["obs_shapes"] == {k: list(v) for k, v in SHAPES.items()}
    assert data["action_low"] == [-1.0] * 4 and data["action_high"] == [1.0] * 4
    assert data["dataset_hash"] == "sha256:abc123" and data["episode_range"] == [0, 40]
    assert data["config"]["algo"]["lr"] == 3e-4
    assert data["gate"] is None and data["parent_policy_id"] is None
    assert data["code_version"] and data["created"].endswith("+00:00")
    assert data["policy_id"].startswith("bc-") and data["policy_id"] == written.policy_id
    assert data["architecture"]["type"] == "DeterministicActor"
    assert data["architecture"]["hidden_sizes"] == [16, 16]
    goal = data["normalization"]["obs"]["goal"]
    assert goal["mean"] == pytest.approx([0.6, 0.1, 0.05])
    assert goal["std"] == pytest.approx([1e-3] * 3)  # floored, as used
    assert read_manifest(directory) == written


def test_zero_variance_goal_gives_finite_actions_off_distribution(saved):
    policy = load_policy(saved[0])
    obs = random_obs(np.random.default_rng(2))
    obs["goal"] = np.array([5.0, -5.0, 1.0], np.float32)  # far from the constant seen in training
    assert np.isfinite(policy.act(obs)).all()


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda o: o.pop("goal"), r"missing \['goal'\]"),
        (lambda o: o.update(ee_pos=np.zeros(4)), r"'ee_pos' has shape \(4,\).*expects \(3,\)"),
    ],
)
def test_obs_mismatch_errors_name_the_key(saved, mutate, pattern):
    policy = load_policy(saved[0])
    obs = random_obs(np.random.default_rng(3))
    mutate(obs)
    with pytest.raises(ValueError, match=pattern):
        policy.act(obs)


def test_keys_the_policy_does_not_use_are_ignored(saved):
    policy = load_policy(saved[0])
    obs = random_obs(np.random.default_rng(3))
    more = {**obs, "wrist_cam": np.zeros((4, 4, 3), np.uint8), "gripper": np.zeros(1)}
    np.testing.assert_array_equal(policy.act(more), policy.act(obs))


def test_act_batch_rejects_wrong_width(saved):
    with pytest.raises(ValueError, match=r"expects \(13,\)"):
        load_policy(saved[0]).act_batch(np.zeros((2, 12), np.float32))


def test_loader_never_unpickles(saved, monkeypatch):
    directory, actor, _ = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("the loader must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    policy = load_policy(directory)
    x = torch.randn(3, 13)
    with torch.no_grad():
        assert torch.equal(policy.act_batch(x), actor(x))


class _Payload:
    """Unpickling this runs code (creates a marker file): what a malicious file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_in_place_of_weights_is_refused_without_running_it(saved, tmp_path):
    directory, _, _ = saved
    marker = tmp_path / "pwned"
    weights = directory / WEIGHTS_FILE
    weights.write_bytes(pickle.dumps({"net.0.weight": _Payload(marker)}))
    with pytest.raises(ValueError, match="sha256"):
        load_policy(directory)
    # Even with a manifest whose hash matches the pickle, it is not a safetensors file.
    import hashlib

    data = json.loads((directory / MANIFEST_FILE).read_text())
    data["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (directory / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_policy(directory)
    assert not marker.exists()


def test_unknown_format_version_is_refused(saved):
    directory = saved[0]
    data = json.loads((directory / MANIFEST_FILE).read_text())
    data["format_version"] = 99
    (directory / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unsupported format_version 99"):
        load_policy(directory)


def test_missing_files_and_corrupt_manifest_are_reported_with_paths(saved, tmp_path):
    directory = saved[0]
    (directory / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(directory / WEIGHTS_FILE))):
        load_policy(directory)
    (directory / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="corrupt manifest"):
        load_policy(directory)
    (directory / MANIFEST_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=MANIFEST_FILE):
        load_policy(directory)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(tmp_path / "nowhere")


def test_manifest_missing_or_unknown_fields_are_named(saved):
    directory = saved[0]
    data = json.loads((directory / MANIFEST_FILE).read_text())
    del data["action_dim"]
    data["colour"] = "blue"
    (directory / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"missing fields \['action_dim'\].*unknown.*'colour'"):
        load_policy(directory)


def test_weights_manifest_mismatch_is_refused(tmp_path):
    # Weights of a wider net described by a manifest saved for a narrower one.
    small, wide = tmp_path / "small", tmp_path / "wide"
    save_policy(small, make_actor(), make_manifest())
    torch.manual_seed(0)
    wide_actor = DeterministicActor(Normalizer.from_stats(STATS, OBS_KEYS), 4, (32, 32))
    save_policy(wide, wide_actor, make_manifest())
    data = json.loads((small / MANIFEST_FILE).read_text())
    data["weights_sha256"] = json.loads((wide / MANIFEST_FILE).read_text())["weights_sha256"]
    (small / MANIFEST_FILE).write_text(json.dumps(data))
    (small / WEIGHTS_FILE).write_bytes((wide / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ValueError, match=r"does not match the manifest architecture.*wrong shapes"):
        load_policy(small)


def test_edited_normalization_stats_are_refused(saved):
    directory = saved[0]
    data = json.loads((directory / MANIFEST_FILE).read_text())
    data["normalization"]["obs"]["ee_pos"]["mean"][0] += 0.01
    (directory / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="normalization stats for 'ee_pos' differ"):
        load_policy(directory)


def test_save_checks_dims_and_refuses_to_overwrite(saved, tmp_path):
    directory, actor, _ = saved
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_policy(directory, actor, make_manifest())
    save_policy(directory, actor, make_manifest(), overwrite=True)
    bad = make_manifest(obs_shapes={**SHAPES, "goal": (2,)})
    with pytest.raises(ValueError, match="obs_dim=12"):
        save_policy(tmp_path / "other", actor, bad)
    with pytest.raises(ValueError, match="action_low has 3 entries"):
        save_policy(tmp_path / "other", actor, make_manifest(action_low=[-1, -1, -1]))


def test_update_manifest_records_gate_and_metrics_keeping_weights_valid(saved):
    directory = saved[0]
    updated = update_manifest(directory, metrics={"eval/success": 0.9}, gate={"passed": True})
    assert updated.gate == {"passed": True}
    assert updated.metrics == {"train/loss": 0.01, "eval/success": 0.9}
    policy = load_policy(directory)
    assert isinstance(policy, LoadedPolicy) and policy.manifest.gate == {"passed": True}
