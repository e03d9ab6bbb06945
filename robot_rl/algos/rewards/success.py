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

from robot_rl.algos.rewards.model import RewardModel
from robot_rl.algos.rewards.preference import _check_config, new_model, resolve_obs_keys

if TYPE_CHECKING:
    from robot_rl.data.episode_store import EpisodeStore


@dataclass
class SuccessConfig:
    """Settings of :func:`train_success_classifier`.

    Attributes:
        obs_keys: observation keys the classifier sees, in order; None: all.
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
        hash, the episode counts and the final balanced training accuracy.

    Raises:
        ValueError: no successful or no failed labelled episode, or a bad setting.
    """
    cfg = config or SuccessConfig()
    _check_config(cfg, ("ensemble_size", "steps", "batch_size", "positive_steps"))
    if cfg.output not in ("log_prob", "prob"):
        raise ValueError(f"SuccessConfig.output: expected 'log_prob' or 'prob', got {cfg.output!r}")
    keys = resolve_obs_keys(store, cfg.obs_keys)
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
    pos_rows, neg_rows = [], []
    for i, success in sorted(labels.items()):
        s, e = store.episode_bounds(i)
        if success:
            pos_rows.append(np.arange(max(s, e - cfg.positive_steps), e))
        else:
            neg_rows.append(np.arange(s, e))
    pos = np.concatenate(pos_rows)
    neg = np.concatenate(neg_rows)
    rows = np.concatenate([pos, neg])
    obs = _gather_rows(store, keys, rows)
    act = torch.from_numpy(_gather_rows(store, ["action"], rows)) if cfg.use_action else None
    training = {
        "dataset_hash": store.content_hash(),
        "n_success_episodes": int(n_pos_ep),
        "n_failure_episodes": int(n_neg_ep),
        "config": dataclasses.asdict(cfg) | {"obs_keys": keys},
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = new_model(store, keys, "success", cfg.output, cfg, training)
    x = model.normalizer(torch.from_numpy(obs))
    if act is not None:
        x = torch.cat([x, act], dim=-1)
    n_pos = len(pos)
    y = torch.cat([torch.ones(n_pos), torch.zeros(len(neg))])
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.members.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    half = max(1, cfg.batch_size // 2)
    model.train()
    for _ in range(cfg.steps):
        loss = torch.zeros(())
        for member in model.members:
            pick = np.concatenate(
                [rng.integers(0, n_pos, size=half), n_pos + rng.integers(0, len(neg), size=half)]
            )
            idx = torch.from_numpy(pick)
            logit = member(x[idx]).squeeze(-1)
            loss = loss + F.binary_cross_entropy_with_logits(logit, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logit = torch.stack([m(x).squeeze(-1) for m in model.members]).mean(0)
        pred = logit > 0
        acc = 0.5 * (pred[:n_pos].float().mean() + (~pred[n_pos:]).float().mean())
    model.spec.training["metrics"] = {
        "train_balanced_accuracy": float(acc),
        "final_loss": float(loss.detach()) / cfg.ensemble_size,
    }
    return model


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
