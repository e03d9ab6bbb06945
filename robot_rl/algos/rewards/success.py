"""Success classifier: a reward from episodes labelled success or failure.

A binary classifier of states, trained as in Singh et al., "End-to-End Robotic
Reinforcement Learning without Reward Engineering", RSS 2019 (there with a few success
examples and queries; here with labelled episodes). Labels come from
:meth:`EpisodeStore.provenance`: the episode's latest success label in ``labels.json``,
else the success recorded with the episode (by the env or the recorder), since both say
the same thing about the episode's end; ``labels_only=True`` uses ``labels.json`` alone.

Per-step targets: the last ``positive_steps`` rows of a successful episode are positives
(the states the success was judged on: episodes end at or shortly after success); every
row of a failed episode is a negative. The other rows of successful episodes are left out:
whether success already held there is unknown, and calling them failures would teach the
classifier that success states are failures. Minibatches are half positives, half
negatives, so the classes count equally however rare successes are.

The reward is ``log P(success | s)`` (``output="log_prob"``, <= 0: every step before
success costs, as a shaped version of the sparse success reward) or the probability
(``output="prob"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from robot_rl.algos.algorithm import adam
from robot_rl.algos.rewards.model import RewardModel
from robot_rl.algos.rewards.preference import BestWeights, _check_config, new_model
from robot_rl.data.sampler_rows import resolve_obs_keys

if TYPE_CHECKING:
    from robot_rl.data.episode_store import EpisodeStore


@dataclass
class SuccessConfig:
    """Settings of :func:`train_success_classifier`.

    Attributes:
        obs_keys: observation keys the classifier sees, in order; None: every key with
            at most one dimension (images are left out).
        use_action: classify (s, a) instead of s.
        positive_steps: rows at the end of each successful episode used as positives.
        output: ``"log_prob"`` or ``"prob"`` (see the module docstring).
        labels_only: use only labels from ``labels.json``, not successes recorded with
            the episodes.
        hidden_sizes: hidden widths of each member MLP.
        ensemble_size: members (rewards averaged).
        steps: gradient steps.
        batch_size: rows per minibatch (half positive, half negative), per member.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        seed: seeds initialization and minibatches.
        validation_fraction: share of the successful and of the failed labelled
            episodes held out (at random, seeded) to stop training early: every
            ``eval_every`` steps the balanced loss on their rows is measured and the
            model keeps the weights of the best check. 0, or fewer than
            ``MIN_VALIDATION_EPISODES`` held out of either class, trains on every
            labelled episode for ``steps`` steps.
        eval_every: gradient steps between validation checks.
    """

    obs_keys: list[str] | None = None
    use_action: bool = False
    positive_steps: int = 5
    output: str = "log_prob"
    labels_only: bool = False
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    ensemble_size: int = 1
    steps: int = 500
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    validation_fraction: float = 0.1
    eval_every: int = 10


#: Fewest held-out episodes of each class worth stopping on.
MIN_VALIDATION_EPISODES = 2


def episode_success_labels(store: EpisodeStore, labels_only: bool = False) -> dict[int, bool]:
    """Episode index -> success, for every episode with a known outcome (see the module
    docstring for where labels come from)."""
    if labels_only:
        latest = {}
        for entry in store.labels():
            latest[entry.episode_id] = entry.success
        ids = store.episode_ids()
        return {i: bool(latest[e]) for i, e in enumerate(ids) if latest.get(e) is not None}
    out = {}
    for i in range(store.n_episodes):
        s = store.provenance(i).success
        if s is not None:
            out[i] = bool(s)
    return out


def train_success_classifier(
    store: EpisodeStore, config: SuccessConfig | None = None
) -> RewardModel:
    """Fit a success classifier to the store's labelled episodes.

    Args:
        store: the episode store; its rewards are not used (it may have none).
        config: settings; default :class:`SuccessConfig`.

    Returns:
        The trained model (eval mode); ``spec.training`` records the store's content
        hash, the episode counts, the held-out episodes (``validation_episodes``) and
        metrics: balanced accuracy on the training and held-out rows, the held-out loss
        and the step whose weights were kept.

    Raises:
        ValueError: no successful or no failed labelled episode, or a bad setting.
    """
    cfg = config or SuccessConfig()
    _check_config(cfg, ("ensemble_size", "steps", "batch_size", "positive_steps", "eval_every"))
    if cfg.output not in ("log_prob", "prob"):
        raise ValueError(f"SuccessConfig.output: expected 'log_prob' or 'prob', got {cfg.output!r}")
    keys = resolve_obs_keys(store, cfg.obs_keys, images=False)
    labels = episode_success_labels(store, cfg.labels_only)
    n_pos_ep = sum(labels.values())
    n_neg_ep = len(labels) - n_pos_ep
    if n_pos_ep == 0 or n_neg_ep == 0:
        where = "labels.json" if cfg.labels_only else "labels.json or recorded provenance"
        raise ValueError(
            f"{store.path}: a success classifier needs successful and failed episodes; "
            f"{where} gives {n_pos_ep} success(es) and {n_neg_ep} failure(s) among "
            f"{store.n_episodes} episodes. Label more with `robot-rl-data label PATH "
            "--episode I --success/--failure`"
        )
    rng = np.random.default_rng(cfg.seed)
    held_out = _held_out_episodes(labels, cfg.validation_fraction, rng)
    parts: dict[tuple[bool, bool], list[np.ndarray]] = {
        (success, val): [] for success in (True, False) for val in (True, False)
    }
    for i, success in sorted(labels.items()):
        s, e = store.episode_bounds(i)
        rows = np.arange(max(s, e - cfg.positive_steps), e) if success else np.arange(s, e)
        parts[success, i in held_out].append(rows)
    # Rows in four blocks: training positives, training negatives, then the held-out ones.
    blocks = [parts[True, False], parts[False, False], parts[True, True], parts[False, True]]
    sizes = [sum(len(r) for r in block) for block in blocks]
    rows = np.concatenate([r for block in blocks for r in block])
    obs = _gather_rows(store, keys, rows)
    act = torch.from_numpy(_gather_rows(store, ["action"], rows)) if cfg.use_action else None
    training = {
        "dataset_hash": store.content_hash(),
        "n_success_episodes": int(n_pos_ep),
        "n_failure_episodes": int(n_neg_ep),
        "config": dataclasses.asdict(cfg) | {"obs_keys": keys},
        "validation_episodes": sorted(held_out),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = new_model(store, keys, "success", cfg.output, cfg, training)
    x = model.normalizer(torch.from_numpy(obs))
    if act is not None:
        x = torch.cat([x, act], dim=-1)
    starts = np.cumsum([0, *sizes])
    pos, neg, val_pos, val_neg = (
        torch.arange(int(starts[k]), int(starts[k + 1])) for k in range(4)
    )
    labels_of_blocks = (1.0, 0.0, 1.0, 0.0)
    y = torch.cat([torch.full((n,), v) for n, v in zip(sizes, labels_of_blocks, strict=True)])

    def mean_logit(idx: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x[idx]).squeeze(-1) for m in model.members]).mean(0)

    def balanced(per_class: tuple[torch.Tensor, torch.Tensor], fn) -> float:
        return float(0.5 * sum(fn(mean_logit(idx), y[idx]) for idx in per_class))

    best = BestWeights(model.members)

    def validate(step: int) -> None:
        with torch.no_grad():
            best.check(step, balanced((val_pos, val_neg), F.binary_cross_entropy_with_logits))

    opt = adam(model.members.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    half = max(1, cfg.batch_size // 2)
    model.train()
    for step in range(cfg.steps):
        if held_out and step % cfg.eval_every == 0:
            validate(step)
        loss = torch.zeros(())
        for member in model.members:
            pick = torch.cat(
                [
                    pos[torch.from_numpy(rng.integers(0, len(pos), size=half))],
                    neg[torch.from_numpy(rng.integers(0, len(neg), size=half))],
                ]
            )
            logit = member(x[pick]).squeeze(-1)
            loss = loss + F.binary_cross_entropy_with_logits(logit, y[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if held_out:
        validate(cfg.steps)
        best.restore()
    model.eval()

    def accuracy(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((logit > 0).float() == target).float().mean()

    with torch.no_grad():
        metrics = {
            "train_balanced_accuracy": balanced((pos, neg), accuracy),
            "final_loss": float(loss.detach()) / cfg.ensemble_size,
            "n_validation_episodes": len(held_out),
            "validation_balanced_accuracy": (
                balanced((val_pos, val_neg), accuracy) if held_out else None
            ),
            **best.metrics(),
        }
    if not held_out:
        metrics["best_step"] = cfg.steps
    model.spec.training["metrics"] = metrics
    return model


def _held_out_episodes(
    labels: dict[int, bool], fraction: float, rng: np.random.Generator
) -> set[int]:
    """Episodes held out for early stopping: ``fraction`` of each class, or none when
    either class would give fewer than ``MIN_VALIDATION_EPISODES`` (or leave none to
    train on)."""
    chosen: set[int] = set()
    for success in (True, False):
        episodes = sorted(i for i, s in labels.items() if s == success)
        n = round(len(episodes) * fraction)
        if n < MIN_VALIDATION_EPISODES or n >= len(episodes):
            return set()
        chosen.update(int(i) for i in rng.choice(episodes, size=n, replace=False))
    return chosen


def _gather_rows(store: EpisodeStore, keys: list[str], rows: np.ndarray) -> np.ndarray:
    """float32 (len(rows), dim): ``data/`` keys of the given store rows, each flattened,
    concatenated, in the rows' order (read in ascending order, as zarr's oindex wants)."""
    order = np.argsort(rows, kind="stable")
    srt = rows[order]
    parts = [
        np.asarray(store.zarr_array(k).oindex[srt], dtype=np.float32).reshape(len(srt), -1)
        for k in keys
    ]
    out = np.empty((len(rows), sum(p.shape[1] for p in parts)), np.float32)
    out[order] = np.concatenate(parts, axis=1)
    return out
