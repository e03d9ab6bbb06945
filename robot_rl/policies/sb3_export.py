"""Export a policy artifact to a Stable-Baselines3 TD3 or SAC zip that ``TD3.load`` /
``SAC.load`` accept.

**Security.** SB3's zip format stores part of the model (the spaces, the policy kwargs,
the learning-rate schedule) with cloudpickle, and ``TD3.load``/``SAC.load`` unpickle it:
loading an SB3 zip can run arbitrary code. Only load exports from sources you trust.
robot_rl's own loader (:func:`robot_rl.policies.artifact.load_policy`) reads safetensors
and JSON and never unpickles anything; the export is a one-way door for SB3 users.

**What the zip holds.** Plain SB3 classes only (``MultiInputPolicy``, SB3's
``CombinedExtractor``, ``torch.nn`` activations, gymnasium spaces), so it loads where SB3
is installed and robot_rl is not. robot_rl's observation normalization is expressed in the
actor's first linear layers instead of a custom module:

* SB3's ``CombinedExtractor`` flattens each key of the Dict observation space and
  concatenates them in the space's key order (gymnasium sorts the keys of a plain dict),
  which is not the manifest's ``obs_keys`` order; the first layer permutes the columns.
* ReLU actors (robot_rl's default): the first layer computes ``[obs - mean, mean - obs]``
  exactly as robot_rl does (so no cancellation for a dim whose std was floored while its
  mean is large). Without a clip, the next layer is robot_rl's first layer with its columns
  divided by ``std``. With a clip ``c``, two more layers compute ``max(z + c, 0)`` and
  ``max(2c - max(z + c, 0), 0) = c - clip(z, -c, c)`` for ``z = (obs - mean) / std``, and
  robot_rl's first layer takes that. Actions then match robot_rl's to a few float32 ulps of
  ``c`` on the normalized input, for any observation, clipped or not.
* Other activations (SB3 uses one activation for every layer, so the ReLU gadgets above
  are unavailable): the normalization is folded into the first layer
  (``W / std``, ``b - W @ (mean / std)``). That is exact up to float32 rounding at the
  scale of ``|W| * |mean| / std``, which costs precision on a dim whose std was floored
  while its mean is far from 0 (the export check measures it). A clip cannot be expressed
  and such artifacts are refused.
* LayerNorm actors are refused: SB3's TD3/SAC actors have no LayerNorm.

**What the zip does not hold.** The artifact holds the actor only, so the SB3 critics (and
TD3's target critics) are freshly initialized: fine for ``predict``, a cold start for
further SB3 training. SAC's log-std head is set to a constant ``sac_log_std`` (narrow
sampling around robot_rl's deterministic action); ``predict(obs, deterministic=True)``
returns ``tanh(mean)``, robot_rl's action. The manifest travels in the zip as the JSON
attribute ``model.robot_rl_manifest`` for lineage.

**Checked on export.** The zip is written with SB3's own ``model.save``, loaded back with
``TD3.load``/``SAC.load`` and its deterministic actions compared with robot_rl's
``LoadedPolicy.act`` on observations drawn around the normalization mean (in range, far
out, and beyond the clip); an export that differs by more than ``atol`` is deleted and
refused.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from robot_rl.policies.artifact import load_policy
from robot_rl.policies.loaded_policy import LoadedPolicy
from robot_rl.policies.network import ACTIVATIONS, DeterministicActor

ALGOS = ("td3", "sac")
#: Pickle warning repeated by the CLI help and the export report.
PICKLE_WARNING = (
    "SB3's zip format is unpickled (cloudpickle) by TD3.load/SAC.load, which can run "
    "arbitrary code: load exports only from sources you trust. robot_rl's own loader never "
    "unpickles."
)


@dataclass(frozen=True)
class SB3Export:
    """What :func:`export_sb3` wrote and how well it reproduces the artifact.

    Attributes:
        path: The SB3 zip.
        algo: ``"td3"`` or ``"sac"``.
        policy_id: The exported artifact's ``policy_id``.
        max_abs_diff: Largest ``|a_sb3 - a_robot_rl|`` over the check observations
            (normalized action units).
        n_checked: Number of check observations.
    """

    path: Path
    algo: str
    policy_id: str
    max_abs_diff: float
    n_checked: int


def _sb3_class(algo: str) -> Any:
    from stable_baselines3 import SAC, TD3

    if algo not in ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; expected one of {list(ALGOS)}")
    return TD3 if algo == "td3" else SAC


def default_observation_space(policy: LoadedPolicy) -> spaces.Dict:
    """Unbounded float32 ``Box`` per manifest key (gymnasium sorts the keys)."""
    return spaces.Dict(
        {
            k: spaces.Box(-np.inf, np.inf, tuple(policy.manifest.obs_shapes[k]), np.float32)
            for k in policy.obs_keys
        }
    )


def _check_observation_space(space: spaces.Space, policy: LoadedPolicy) -> spaces.Dict:
    if not isinstance(space, spaces.Dict):
        raise ValueError(
            f"observation_space must be a gymnasium Dict (SB3 MultiInputPolicy), got {space}"
        )
    wanted = {k: tuple(policy.manifest.obs_shapes[k]) for k in policy.obs_keys}
    got = {k: tuple(s.shape or ()) for k, s in space.spaces.items()}
    bad = [k for k, s in space.spaces.items() if not isinstance(s, spaces.Box)]
    if got != wanted or bad:
        raise ValueError(
            f"observation_space does not fit policy {policy.policy_id!r}: it has "
            f"{got} (non-Box keys {bad}); the manifest has {wanted}"
        )
    return space


def _linears(actor: DeterministicActor) -> list[tuple[np.ndarray, np.ndarray]]:
    layers = [m for m in actor.net if isinstance(m, nn.Linear)]
    return [
        (m.weight.detach().double().cpu().numpy(), m.bias.detach().double().cpu().numpy())
        for m in layers
    ]


def sb3_actor_layers(
    actor: DeterministicActor, column_order: np.ndarray
) -> tuple[list[int], list[tuple[np.ndarray, np.ndarray]]]:
    """The SB3 actor MLP reproducing ``actor`` (normalization included): hidden widths and
    ``(weight, bias)`` of every linear layer, float64.

    Args:
        actor: The robot_rl actor.
        column_order: ``column_order[j]`` is the robot_rl flat observation dim that SB3's
            flattened input column ``j`` holds.

    Raises:
        ValueError: The actor cannot be expressed with a plain SB3 MLP (LayerNorm, or an
            observation clip with a non-ReLU activation).
    """
    if actor.layer_norm:
        raise ValueError(
            "cannot export a LayerNorm actor to SB3: SB3's TD3/SAC actors have no "
            "LayerNorm; train with algo.layer_norm=false for an exportable actor "
            "(algo.critic_layer_norm=true keeps LayerNorm in the critics)"
        )
    norm = actor.normalizer
    n = norm.dim
    mean = norm.mean.detach().double().cpu().numpy()
    std = norm.std.detach().double().cpu().numpy()
    clip = float(norm.clip)
    robot = _linears(actor)
    w1, b1 = robot[0]
    hidden = list(actor.hidden_sizes)
    # to_sb3[k, j] = 1 where SB3 column j is robot_rl dim k: x_robot = to_sb3 @ x_sb3.
    to_sb3 = np.zeros((n, n))
    to_sb3[column_order, np.arange(n)] = 1.0

    if actor.activation != "relu":
        if np.isfinite(clip):
            raise ValueError(
                f"cannot export this actor to plain SB3 layers: its observation clip "
                f"({clip:g} std) needs ReLU layers, but the actor uses "
                f"{actor.activation!r} and SB3 uses one activation for every layer. "
                "Train with normalization clip=None or activation='relu'."
            )
        folded_w = (w1 / std) @ to_sb3
        folded_b = b1 - w1 @ (mean / std)
        return hidden, [(folded_w, folded_b), *robot[1:]]

    # [obs - mean, mean - obs], computed as robot_rl computes obs - mean; after ReLU one
    # half holds max(d, 0), the other max(-d, 0).
    split_w = np.concatenate([to_sb3, -to_sb3])
    split_b = np.concatenate([-mean, mean])
    inv_std = np.diag(1.0 / std)
    if not np.isfinite(clip):
        first_w = np.concatenate([w1 @ inv_std, -(w1 @ inv_std)], axis=1)
        return [2 * n, *hidden], [(split_w, split_b), (first_w, b1), *robot[1:]]
    # u = max(z + c, 0); v = max(2c - u, 0) = c - clip(z, -c, c); W1 clip(z) = W1 (c - v).
    shift_w = np.concatenate([inv_std, -inv_std], axis=1)
    shift_b = np.full(n, clip)
    flip_w = -np.eye(n)
    flip_b = np.full(n, 2.0 * clip)
    first_w = -w1
    first_b = b1 + clip * w1.sum(axis=1)
    layers = [(split_w, split_b), (shift_w, shift_b), (flip_w, flip_b), (first_w, first_b)]
    return [2 * n, n, n, *hidden], [*layers, *robot[1:]]


@torch.no_grad()
def _copy_linears(modules: list[nn.Linear], layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
    if len(modules) != len(layers):
        raise RuntimeError(f"SB3 actor has {len(modules)} linear layers, expected {len(layers)}")
    for module, (w, b) in zip(modules, layers, strict=True):
        if tuple(module.weight.shape) != w.shape:
            raise RuntimeError(
                f"SB3 layer shape {tuple(module.weight.shape)} != exported {w.shape}"
            )
        module.weight.copy_(torch.from_numpy(w))
        module.bias.copy_(torch.from_numpy(b))


def build_sb3_model(
    policy: LoadedPolicy,
    algo: Literal["td3", "sac"] = "td3",
    observation_space: spaces.Dict | None = None,
    sac_log_std: float = -5.0,
    seed: int = 0,
) -> Any:
    """Builds (without saving) an SB3 TD3/SAC model whose actor reproduces ``policy``.

    Args:
        policy: A loaded robot_rl policy (a ``DeterministicActor``).
        algo: ``"td3"`` or ``"sac"``.
        observation_space: The SB3 model's Dict observation space; defaults to an
            unbounded float32 ``Box`` per manifest key. Pass your env's space when it has
            bounds, since ``TD3.load(path, env=env)`` checks that the spaces are equal.
        sac_log_std: SAC only: the constant log std of the pre-tanh Gaussian.
        seed: Seeds the fresh critic initialization (global RNG state is restored).

    Returns:
        A ``stable_baselines3.TD3`` or ``SAC`` with freshly initialized critics.

    Raises:
        ValueError: Unknown ``algo``, an actor SB3 cannot express, or an observation
            space that does not fit the manifest.
    """
    cls = _sb3_class(algo)
    actor = policy.actor
    if type(actor) is not DeterministicActor:
        raise ValueError(
            f"policy {policy.policy_id!r} has a {type(actor).__name__}; only "
            "DeterministicActor artifacts can be exported to SB3"
        )
    manifest = policy.manifest
    obs_space = (
        default_observation_space(policy)
        if observation_space is None
        else _check_observation_space(observation_space, policy)
    )
    offsets, start = {}, 0
    for key in policy.obs_keys:
        size = int(np.prod(manifest.obs_shapes[key], dtype=np.int64))
        offsets[key] = np.arange(start, start + size)
        start += size
    column_order = np.concatenate([offsets[k] for k in obs_space.spaces])
    net_arch, layers = sb3_actor_layers(actor, column_order)

    policy_kwargs = {
        "net_arch": {"pi": net_arch, "qf": list(actor.hidden_sizes) or [256, 256]},
        "activation_fn": ACTIVATIONS[actor.activation],
    }
    model = cls(
        "MultiInputPolicy",
        env=None,
        policy_kwargs=policy_kwargs,
        device="cpu",
        _init_setup_model=False,
        # SAC's "auto" target entropy reads it from an env, which there is none of here.
        **({"target_entropy": -float(manifest.action_dim)} if algo == "sac" else {}),
    )
    model.observation_space = obs_space
    # SB3 maps its actor's tanh output onto this Box in predict(), as LoadedPolicy maps
    # robot_rl's onto the manifest's bounds.
    model.action_space = spaces.Box(
        np.asarray(manifest.action_low, np.float32),
        np.asarray(manifest.action_high, np.float32),
        dtype=np.float32,
    )
    model.n_envs = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # What SB3's own load does after restoring the spaces: build policy and buffers.
        model._setup_model()
    sb3_actor = model.policy.actor
    if algo == "td3":
        _copy_linears([m for m in sb3_actor.mu if isinstance(m, nn.Linear)], layers)
        model.policy.actor_target.load_state_dict(sb3_actor.state_dict())
    else:
        hidden = [m for m in sb3_actor.latent_pi if isinstance(m, nn.Linear)]
        _copy_linears([*hidden, sb3_actor.mu], layers)
        with torch.no_grad():
            sb3_actor.log_std.weight.zero_()
            sb3_actor.log_std.bias.fill_(float(sac_log_std))
    model.robot_rl_manifest = manifest.to_json_dict()
    return model


def check_observations(policy: LoadedPolicy, n: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` batched observations ``mean + std * z`` around the normalization mean: a third
    with ``z ~ N(0, 1)``, a third with ``z ~ N(0, 3^2)``, a third far out with
    ``z ~ U(-3 clip, 3 clip)`` (``U(-30, 30)`` without a clip), so a clip binds."""
    rng = np.random.default_rng(seed)
    norm = policy.actor.normalizer
    mean = norm.mean.detach().cpu().numpy().astype(np.float64)
    std = norm.std.detach().cpu().numpy().astype(np.float64)
    clip = float(norm.clip)
    far = 3.0 * clip if np.isfinite(clip) else 30.0
    third = n // 3
    z = np.concatenate(
        [
            rng.normal(size=(n - 2 * third, mean.size)),
            3.0 * rng.normal(size=(third, mean.size)),
            rng.uniform(-far, far, size=(third, mean.size)),
        ]
    )
    flat = (mean + std * z).astype(np.float32)
    out, start = {}, 0
    for key in policy.obs_keys:
        shape = tuple(policy.manifest.obs_shapes[key])
        size = int(np.prod(shape, dtype=np.int64))
        out[key] = flat[:, start : start + size].reshape(n, *shape)
        start += size
    return out


def max_action_diff(model: Any, policy: LoadedPolicy, obs: dict[str, np.ndarray]) -> float:
    """Largest ``|model.predict(obs, deterministic=True) - policy.act(obs)|``, in
    normalized action units (each dim divided by half its bounds' width)."""
    sb3_actions, _ = model.predict(obs, deterministic=True)
    diff = np.abs(np.asarray(sb3_actions, np.float64) - policy.act(obs))
    half = (np.asarray(policy.manifest.action_high) - np.asarray(policy.manifest.action_low)) / 2
    return float(np.max(diff / half))


def export_sb3(
    policy_dir: str | os.PathLike[str],
    out_zip: str | os.PathLike[str],
    algo: Literal["td3", "sac"] = "td3",
    *,
    observation_space: spaces.Dict | None = None,
    sac_log_std: float = -5.0,
    atol: float = 1e-5,
    n_check: int = 256,
    seed: int = 0,
    overwrite: bool = False,
) -> SB3Export:
    """Exports a robot_rl policy artifact to an SB3 TD3/SAC zip and checks it.

    SB3's zip format is unpickled by ``TD3.load``/``SAC.load`` (cloudpickle), which can
    run arbitrary code: load such zips only from trusted sources. robot_rl's own loader
    never unpickles. The zip uses plain SB3 classes only, so loading it needs SB3, not
    robot_rl. The SB3 critics are freshly initialized (the artifact holds only the actor).
    See the module docstring for how normalization and clipping are expressed.

    The zip is written with SB3's ``model.save``, loaded back with ``TD3.load``/``SAC.load``
    and compared with ``load_policy(policy_dir).act`` on ``n_check`` observations before it
    is moved to ``out_zip``; nothing is left behind when the check fails.

    Args:
        policy_dir: The policy artifact directory.
        out_zip: Where to write the zip; must end in ``.zip`` (SB3 appends it otherwise).
        algo: ``"td3"`` or ``"sac"``.
        observation_space: The SB3 Dict observation space (e.g. your env's, bounds
            included); defaults to unbounded float32 ``Box`` es with the manifest's shapes.
        sac_log_std: SAC only: constant log std of the pre-tanh Gaussian (narrow sampling
            around the deterministic action).
        atol: Largest allowed action difference (normalized action units).
        n_check: Number of check observations.
        seed: Seeds the critic initialization and the check observations.
        overwrite: Replace an existing ``out_zip``.

    Returns:
        An :class:`SB3Export` with the measured difference.

    Raises:
        FileNotFoundError: The artifact is missing.
        FileExistsError: ``out_zip`` exists and ``overwrite`` is False.
        ValueError: An invalid artifact, an actor SB3 cannot express, a bad ``out_zip``
            name, or an export whose actions differ from robot_rl's by more than ``atol``.
    """
    cls = _sb3_class(algo)
    out = Path(out_zip)
    if out.suffix != ".zip":
        raise ValueError(f"out_zip {out} must end in .zip (SB3's load appends .zip otherwise)")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True or choose another path")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"directory {out.parent} for {out.name} does not exist")
    policy = load_policy(policy_dir)
    model = build_sb3_model(policy, algo, observation_space, sac_log_std, seed)

    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".zip")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model.save(tmp)
        loaded = cls.load(tmp, device="cpu")
        obs = check_observations(policy, n_check, seed)
        diff = max_action_diff(loaded, policy, obs)
        if not diff <= atol:
            raise ValueError(
                f"SB3 {algo} export of {policy_dir} does not reproduce robot_rl's actions: "
                f"max |difference| {diff:.3g} > atol {atol:g} on {n_check} observations"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return SB3Export(out, algo, policy.policy_id, diff, n_check)
