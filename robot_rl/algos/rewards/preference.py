"""Bradley-Terry reward model from pairwise preferences between episodes.

Christiano et al., "Deep Reinforcement Learning from Human Preferences", NeurIPS 2017:
the probability that a labeller prefers episode A to episode B is modelled as

    P(A > B) = sigmoid(sum_t r(s_t^A) - sum_t r(s_t^B)),

and the per-step reward r is fitted by minimizing the cross-entropy against the labels
(target 1 for "a", 0 for "b", 0.5 for "equal"). The preferences are those of the store's
``labels.json`` (every entry counts: a pair judged twice is two samples). Each member of
the ensemble is initialized and trained on its own minibatches, which makes the mean
reward less sensitive to flipped labels. Episodes are compared whole, as the labels are.

The reward's units are the model's own by default: a return difference of 1 between
two episodes means odds of e : 1 that the labeller prefers the higher one. Those units
are set by how consistent the labels are, which for a labeller as noisy as the synthetic
teacher (10% of verdicts flipped) puts per-step rewards on the scale of the true dense
reward. ``reward_units="unit_std"`` instead rescales them to unit standard deviation per
step over the labelled episodes (a positive factor, so every ranking is kept); on mixed
push that made them 13-17x larger than the true rewards, which matters to learners whose
settings are in reward units (IQL's advantage temperature, CQL's regularizer weight).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from robot_rl.algos.algorithm import adam
from robot_rl.algos.rewards.model import RewardModel, RewardModelSpec, reward_obs
from robot_rl.data.sampler_rows import resolve_obs_keys
from robot_rl.policies.normalization import Normalizer

if TYPE_CHECKING:
    from robot_rl.data.episode_store import EpisodeStore

_TARGET = {"a": 1.0, "b": 0.0, "equal": 0.5}


REWARD_UNITS = ("preference", "unit_std")


@dataclass
class PreferenceConfig:
    """Settings of :func:`train_preference_model`.

    Attributes:
        obs_keys: observation keys the reward sees, in flattening order; None: every
            key of the store with at most one dimension (images are left out).
        use_action: learn r(s, a) instead of r(s). r(s) is the default: a reward of the
            state alone cannot be exploited by actions the data never took.
        hidden_sizes: hidden widths of each member MLP.
        ensemble_size: members, trained on independent minibatches; rewards averaged.
        steps: gradient steps (each updates every member).
        batch_pairs: preference pairs per minibatch, per member.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay (keeps the utilities from growing without
            bound on separable labels).
        seed: seeds initialization and minibatches; same store and seed, same model.
        reward_units: "preference" (the Bradley-Terry logits as they are) or
            "unit_std" (per-step rewards rescaled to unit std); see the module docstring.
        validation_fraction: share of the preferences held out (at random, seeded) to
            stop training early: every ``eval_every`` steps the ensemble's loss on them
            is measured and the model keeps the weights of the best check. With noisy
            labels the fit to the training pairs keeps improving long after it stops
            generalizing. 0, or fewer than ``MIN_VALIDATION_PAIRS`` held-out pairs,
            trains on every pair for ``steps`` steps.
        eval_every: gradient steps between validation checks.
    """

    obs_keys: list[str] | None = None
    use_action: bool = False
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    ensemble_size: int = 3
    steps: int = 400
    batch_pairs: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    reward_units: str = "preference"
    validation_fraction: float = 0.1
    eval_every: int = 10


#: Fewest held-out pairs worth stopping on; below it every pair is used for training.
MIN_VALIDATION_PAIRS = 10


class BestWeights:
    """Early stopping on a held-out loss: remembers the weights of the lowest check.

    Args:
        module: the module whose ``state_dict`` is kept and restored.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.loss: float | None = None
        self.step: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def check(self, step: int, loss: float) -> None:
        """Record a held-out ``loss`` measured after ``step`` gradient steps."""
        if self.loss is None or loss < self.loss:
            self.loss, self.step = float(loss), int(step)
            self._state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def restore(self) -> None:
        """Load the best checked weights back (no-op when nothing was checked)."""
        if self._state is not None:
            self.module.load_state_dict(self._state)

    def metrics(self) -> dict[str, float | int | None]:
        return {"validation_loss": self.loss, "best_step": self.step}


def _check_config(cfg: Any, ints: tuple[str, ...]) -> None:
    for name in ints:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{type(cfg).__name__}.{name}: expected a positive int, got {value!r}")
    if not cfg.lr > 0 or cfg.weight_decay < 0:
        raise ValueError(
            f"{type(cfg).__name__}: lr must be > 0 and weight_decay >= 0, got "
            f"{cfg.lr!r}, {cfg.weight_decay!r}"
        )
    if not 0 <= cfg.validation_fraction < 1:
        raise ValueError(
            f"{type(cfg).__name__}.validation_fraction: expected a share in [0, 1), got "
            f"{cfg.validation_fraction!r}"
        )


def new_model(
    store: EpisodeStore, keys: list[str], kind: str, output: str, cfg: Any, training: dict
) -> RewardModel:
    """An untrained reward model over ``keys``, normalized with the store's statistics."""
    from robot_rl.paths import code_version

    shapes = {k: list(store.obs_spec[k][0]) for k in keys}
    normalizer = Normalizer.from_stats({k: store.stats(k) for k in keys}, keys, shapes)
    spec = RewardModelSpec(
        kind=kind,
        obs_keys=keys,
        obs_shapes=shapes,
        action_dim=store.action_dim,
        use_action=cfg.use_action,
        hidden_sizes=[int(h) for h in cfg.hidden_sizes],
        ensemble_size=cfg.ensemble_size,
        output=output,
        training=training,
        code_version=code_version(),
    )
    return RewardModel(spec, normalizer)


def padded_episodes(
    store: EpisodeStore, indices: list[int], keys: list[str], use_action: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(obs (N, T_max, obs_dim), action (N, T_max, action_dim) or None, mask (N, T_max))
    of the given episodes, zero-padded past each episode's end (mask 0)."""
    bounds = [store.episode_bounds(i) for i in indices]
    t_max = max(e - s for s, e in bounds)
    obs_dim = sum(int(np.prod(store.obs_spec[k][0], dtype=np.int64)) for k in keys)
    obs = np.zeros((len(indices), t_max, obs_dim), np.float32)
    act = np.zeros((len(indices), t_max, store.action_dim), np.float32) if use_action else None
    mask = np.zeros((len(indices), t_max), np.float32)
    for n, (s, e) in enumerate(bounds):
        obs[n, : e - s] = reward_obs(store, keys, s, e, use_action)
        if act is not None:
            act[n, : e - s] = store.zarr_array("action")[s:e]
        mask[n, : e - s] = 1.0
    return (
        torch.from_numpy(obs),
        None if act is None else torch.from_numpy(act),
        torch.from_numpy(mask),
    )


def _preference_pairs(store: EpisodeStore) -> tuple[list[tuple[int, int]], list[float]]:
    prefs = store.preferences()
    if not prefs:
        raise ValueError(
            f"{store.path}: no pairwise preferences to learn from; add some with "
            "`robot-rl-data label PATH --prefer ID_A ID_B` (or the synthetic teacher, "
            "robot_rl.algos.rewards.add_synthetic_preferences)"
        )
    ids = {eid: i for i, eid in enumerate(store.episode_ids())}
    pairs, targets = [], []
    for n, p in enumerate(prefs):
        for eid in (p.episode_a, p.episode_b):
            if eid not in ids:
                raise ValueError(
                    f"{store.path}/labels.json: preferences[{n}] names episode_id {eid!r}, "
                    "which is not a committed episode of this store (run validate)"
                )
        pairs.append((ids[p.episode_a], ids[p.episode_b]))
        targets.append(_TARGET[p.preferred])
    return pairs, targets


def train_preference_model(
    store: EpisodeStore, config: PreferenceConfig | None = None
) -> RewardModel:
    """Fit a Bradley-Terry reward model to the store's pairwise preferences.

    Args:
        store: the episode store; its rewards are not used (it may have none).
        config: settings; default :class:`PreferenceConfig`.

    Returns:
        The trained model (eval mode); ``spec.training`` records the store's content
        hash, the number of preferences, and metrics: accuracy on the training and the
        held-out pairs (those not judged "equal"), the held-out loss and the step whose
        weights were kept; ``validation_preferences`` lists the held-out entries
        (indices into ``store.preferences()``).

    Raises:
        ValueError: no preferences, a preference naming an episode not in the store, or
            a bad setting.
    """
    cfg = config or PreferenceConfig()
    _check_config(cfg, ("ensemble_size", "steps", "batch_pairs", "eval_every"))
    if cfg.reward_units not in REWARD_UNITS:
        raise ValueError(
            f"PreferenceConfig.reward_units: expected one of {REWARD_UNITS}, "
            f"got {cfg.reward_units!r}"
        )
    keys = resolve_obs_keys(store, cfg.obs_keys, images=False)
    pairs, targets = _preference_pairs(store)
    used = sorted({i for pair in pairs for i in pair})
    row = {ep: n for n, ep in enumerate(used)}
    pa = torch.tensor([row[a] for a, _ in pairs])
    pb = torch.tensor([row[b] for _, b in pairs])
    target = torch.tensor(targets, dtype=torch.float32)
    obs, act, mask = padded_episodes(store, used, keys, cfg.use_action)

    training = {
        "dataset_hash": store.content_hash(),
        "n_preferences": len(pairs),
        "n_episodes": len(used),
        "config": dataclasses.asdict(cfg) | {"obs_keys": keys},
    }
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = new_model(store, keys, "preference", "raw", cfg, training)
    opt = adam(model.members.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    norm_obs = model.normalizer(obs)  # fixed: normalize once
    x = norm_obs if act is None else torch.cat([norm_obs, act], dim=-1)

    def pair_logits(member: torch.nn.Module, pick: torch.Tensor) -> torch.Tensor:
        """``return(a) - return(b)`` of the pairs ``pick`` under one member."""
        eps = torch.cat([pa[pick], pb[pick]])
        ret = (member(x[eps]).squeeze(-1) * mask[eps]).sum(1)
        return ret[: len(pick)] - ret[len(pick) :]

    order = torch.from_numpy(rng.permutation(len(pairs)))
    n_val = round(len(pairs) * cfg.validation_fraction)
    if n_val < MIN_VALIDATION_PAIRS:
        n_val = 0
    val, train = order[:n_val], order[n_val:]
    training["validation_preferences"] = sorted(int(i) for i in val)
    best = BestWeights(model.members)

    def validate(step: int) -> None:
        with torch.no_grad():
            logit = torch.stack([pair_logits(m, val) for m in model.members]).mean(0)
            best.check(step, float(F.binary_cross_entropy_with_logits(logit, target[val])))

    model.train()
    for step in range(cfg.steps):
        if n_val and step % cfg.eval_every == 0:
            validate(step)
        loss = torch.zeros(())
        for member in model.members:
            pick = train[torch.from_numpy(rng.integers(0, len(train), size=cfg.batch_pairs))]
            loss = loss + F.binary_cross_entropy_with_logits(
                pair_logits(member, pick), target[pick]
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if n_val:
        validate(cfg.steps)
        best.restore()
    model.eval()
    with torch.no_grad():
        per_step = torch.stack([m(x).squeeze(-1) for m in model.members]).mean(0)  # (N, T)
        returns = (per_step * mask).sum(1)
        step_std = float(per_step[mask > 0].std()) if int(mask.sum()) > 1 else 0.0

    def accuracy(subset: torch.Tensor) -> float | None:
        decided = subset[target[subset] != 0.5]
        if not len(decided):
            return None
        return float(
            ((returns[pa[decided]] > returns[pb[decided]]).float() == target[decided])
            .float()
            .mean()
        )

    if cfg.reward_units == "unit_std" and step_std > 1e-8:
        model.spec.reward_scale = 1.0 / step_std
    model.spec.training["metrics"] = {
        "train_accuracy": accuracy(train),
        "final_loss": float(loss.detach()) / cfg.ensemble_size,
        "validation_pairs": n_val,
        "validation_accuracy": accuracy(val) if n_val else None,
        **best.metrics(),
    }
    if not n_val:
        model.spec.training["metrics"]["best_step"] = cfg.steps
    return model
