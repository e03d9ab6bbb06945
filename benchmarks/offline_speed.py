"""Offline training speed: robot_rl's trainer loop against a minimal plain-torch update.

For each algorithm, in one run and interleaved (so machine load hits both alike):

- ``robot_rl``: :class:`~robot_rl.algos.OfflineTrainer` driving the algorithm on a real
  episode store through :class:`~robot_rl.data.sampler.TransitionSampler` (batches
  sampled every step, metrics collected, no TensorBoard/checkpoints), the sampler on the
  training device as ``robot-rl-pretrain`` puts it (on a GPU: arrays there, batches
  gathered there; ``--host-sampler``: gathered on the host and copied);
- ``plain``: a hand-written update of the same architecture (2x256 MLPs, batch 256,
  Adam) on one pre-built batch already on the device, CORL-style: no sampler, no
  normalization, no checks, no metrics. What a user would write to time the math alone.

Reported per algorithm: updates/s of both, their ratio (goal >= 0.9), and the share of
robot_rl's step time spent getting the batch (sampling + transfer; goal <= 5%), timed
separately over as many batches. Best of ``--repeats`` interleaved windows.

    python benchmarks/offline_speed.py                  # CPU, 1 torch thread
    python benchmarks/offline_speed.py --device cuda    # on a GPU machine
    python benchmarks/offline_speed.py --device cuda --host-sampler
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, write_result

HIDDEN, BATCH, GAMMA, TAU = 256, 256, 0.99, 0.005


def mlp(n_in: int, n_out: int, layer_norm: bool = False) -> nn.Sequential:
    """2x256 ReLU MLP, with LayerNorm after each hidden layer where robot_rl's default
    network of that role has it (all of IQL's networks)."""
    norm = (lambda: nn.LayerNorm(HIDDEN)) if layer_norm else nn.Identity
    return nn.Sequential(
        nn.Linear(n_in, HIDDEN), norm(), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), norm(), nn.ReLU(),
        nn.Linear(HIDDEN, n_out),
    )  # fmt: skip


def polyak(target: nn.Module, source: nn.Module) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=True):
            t.lerp_(s, TAU)


class PlainBC:
    def __init__(self, o: int, a: int) -> None:
        self.actor = mlp(o, a)
        self.opt = torch.optim.Adam(self.actor.parameters(), 3e-4)

    def update(self, s, a, r, s2, d, step):
        loss = F.mse_loss(torch.tanh(self.actor(s)), a)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


class PlainTD3BC:
    def __init__(self, o: int, a: int) -> None:
        self.actor, self.q1, self.q2 = mlp(o, a), mlp(o + a, 1), mlp(o + a, 1)
        self.actor_t, self.q1_t, self.q2_t = (
            copy.deepcopy(m) for m in (self.actor, self.q1, self.q2)
        )
        self.opt_a = torch.optim.Adam(self.actor.parameters(), 3e-4)
        self.opt_c = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], 3e-4)

    def update(self, s, a, r, s2, d, step):
        with torch.no_grad():
            noise = (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)
            a2 = (torch.tanh(self.actor_t(s2)) + noise).clamp(-1, 1)
            x2 = torch.cat([s2, a2], 1)
            y = r + GAMMA * (1 - d) * torch.min(self.q1_t(x2), self.q2_t(x2)).squeeze(1)
        x = torch.cat([s, a], 1)
        loss = F.mse_loss(self.q1(x).squeeze(1), y) + F.mse_loss(self.q2(x).squeeze(1), y)
        self.opt_c.zero_grad()
        loss.backward()
        self.opt_c.step()
        if step % 2 == 0:
            pi = torch.tanh(self.actor(s))
            q = self.q1(torch.cat([s, pi], 1))
            actor_loss = -2.5 / q.abs().mean().detach() * q.mean() + F.mse_loss(pi, a)
            self.opt_a.zero_grad()
            actor_loss.backward()
            self.opt_a.step()
            for t, m in ((self.actor_t, self.actor), (self.q1_t, self.q1), (self.q2_t, self.q2)):
                polyak(t, m)


class PlainIQL:
    def __init__(self, o: int, a: int) -> None:
        self.actor, self.v = mlp(o, a, layer_norm=True), mlp(o, 1, layer_norm=True)
        self.log_std = nn.Parameter(torch.zeros(a))
        self.q1, self.q2 = mlp(o + a, 1, layer_norm=True), mlp(o + a, 1, layer_norm=True)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.opt_a = torch.optim.Adam([*self.actor.parameters(), self.log_std], 3e-4)
        self.opt_v = torch.optim.Adam(self.v.parameters(), 3e-4)
        self.opt_q = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], 3e-4)

    def update(self, s, a, r, s2, d, step):
        x = torch.cat([s, a], 1)
        with torch.no_grad():
            tq = torch.min(self.q1_t(x), self.q2_t(x)).squeeze(1)
            next_v = self.v(s2).squeeze(1)
        v = self.v(s).squeeze(1)
        diff = tq - v
        v_loss = ((0.7 - (diff < 0).float()).abs() * diff**2).mean()
        self.opt_v.zero_grad()
        v_loss.backward()
        self.opt_v.step()
        w = torch.exp(3.0 * diff.detach()).clamp_max(100.0)
        dist = torch.distributions.Normal(torch.tanh(self.actor(s)), self.log_std.exp())
        a_loss = -(w * dist.log_prob(a).sum(-1)).mean()
        self.opt_a.zero_grad()
        a_loss.backward()
        self.opt_a.step()
        y = r + GAMMA * (1 - d) * next_v
        q_loss = F.mse_loss(self.q1(x).squeeze(1), y) + F.mse_loss(self.q2(x).squeeze(1), y)
        self.opt_q.zero_grad()
        q_loss.backward()
        self.opt_q.step()
        polyak(self.q1_t, self.q1)
        polyak(self.q2_t, self.q2)


class PlainCQL:
    N = 10

    def __init__(self, o: int, a: int) -> None:
        self.a_dim = a
        self.actor = mlp(o, 2 * a)
        self.q1, self.q2 = mlp(o + a, 1), mlp(o + a, 1)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.opt_a = torch.optim.Adam(self.actor.parameters(), 1e-4)
        self.opt_t = torch.optim.Adam([self.log_alpha], 1e-4)
        self.opt_q = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], 3e-4)

    def pi(self, s):
        mean, log_std = self.actor(s).chunk(2, -1)
        std = log_std.clamp(-5, 2).exp()
        u = mean + std * torch.randn_like(mean)
        act = torch.tanh(u)
        logp = torch.distributions.Normal(mean, std).log_prob(u).sum(-1)
        return act, logp - torch.log(1 - act.pow(2) + 1e-6).sum(-1)

    def q(self, s, a):
        x = torch.cat([s, a], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def update(self, s, a, r, s2, d, step):
        b, n, ad = s.shape[0], self.N, self.a_dim
        alpha = self.log_alpha.exp().detach()
        act, logp = self.pi(s)
        actor_loss = (alpha * logp - torch.min(*self.q(s, act))).mean()
        self.opt_a.zero_grad()
        actor_loss.backward()
        self.opt_a.step()
        t_loss = -(self.log_alpha * (logp.detach() - ad)).mean()
        self.opt_t.zero_grad()
        t_loss.backward()
        self.opt_t.step()
        with torch.no_grad():
            a2, _ = self.pi(s2)
            x2 = torch.cat([s2, a2], 1)
            y = r + GAMMA * (1 - d) * torch.min(self.q1_t(x2), self.q2_t(x2)).squeeze(1)
            s_rep, s2_rep = s.repeat_interleave(n, 0), s2.repeat_interleave(n, 0)
            a_cur, lp_cur = self.pi(s_rep)
            a_next, lp_next = self.pi(s2_rep)
        a_rand = torch.rand(b * n, ad, device=s.device) * 2 - 1
        q1, q2 = self.q(s, a)
        gaps = []
        for qr, qc, qn, qd in zip(
            self.q(s_rep, a_rand),
            self.q(s_rep, a_cur),
            self.q(s_rep, a_next),
            (q1, q2),
            strict=True,
        ):
            cat = torch.cat(
                [(qr + ad * math.log(2)).view(b, n), (qc - lp_cur).view(b, n),
                 (qn - lp_next).view(b, n)], 1,
            )  # fmt: skip
            gaps.append((torch.logsumexp(cat, 1) - qd).mean())
        loss = F.mse_loss(q1, y) + F.mse_loss(q2, y) + 5.0 * (gaps[0] + gaps[1])
        self.opt_q.zero_grad()
        loss.backward()
        self.opt_q.step()
        polyak(self.q1_t, self.q1)
        polyak(self.q2_t, self.q2)


PLAIN = {"bc": PlainBC, "td3bc": PlainTD3BC, "iql": PlainIQL, "cql": PlainCQL}


def store_path(episodes: int) -> Path:
    from robot_rl.teleop.make_dataset import make_dataset

    path = RESULTS_DIR / "offline_data" / f"push_mixed_{episodes}.zarr"
    if not (path / "commit.json").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make_dataset("push", "mixed", path, n_episodes=episodes, seed=0, overwrite=True)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algos", default="bc,td3bc,iql,cql")
    ap.add_argument("--steps", type=int, default=300, help="updates per timed window")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--host-sampler",
        action="store_true",
        help="gather batches on the host and copy them (the out-of-core path) even on a GPU",
    )
    ap.add_argument("--episodes", type=int, default=50, help="episodes of the mixed push store")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from robot_rl.algos import ALGORITHMS, OfflineTrainer, TrainerConfig
    from robot_rl.data.episode_store import EpisodeStore
    from robot_rl.data.sampler import TransitionSampler
    from robot_rl.policies import Normalizer

    device = torch.device(args.device)
    store = EpisodeStore.open(store_path(args.episodes))
    keys = list(store.obs_keys)
    shapes = {k: tuple(store.obs_spec[k][0]) for k in keys}
    normalizer = Normalizer.from_stats({k: store.stats(k) for k in keys}, keys, shapes)
    rows = {}
    for name in args.algos.split(","):
        algo_cls, config_cls = ALGORITHMS[name]
        # Where robot-rl-pretrain puts it: on the training device (on a GPU the arrays
        # move there once and batches are gathered there).
        sampler_device = "cpu" if args.host_sampler else device
        sampler = TransitionSampler(
            store, obs_keys=keys, batch_size=BATCH, seed=0, device=sampler_device
        )
        o, a = sampler.obs_dim, sampler.action_dim
        learner = algo_cls(o, a, config_cls(), normalizer).to(device)
        with device:  # every tensor the plain update owns, IQL's log-std parameter too
            plain = PLAIN[name](o, a)
        fixed = [t.to(device) for t in sampler.sample()]
        ours_s, plain_s, data_s = [], [], []
        done = 0
        for _ in range(args.repeats + 1):  # the first round warms up and is dropped
            cfg = TrainerConfig(
                num_steps=done + args.steps, log_every=args.steps, device=str(device),
                progress=False,
            )  # fmt: skip
            trainer = OfflineTrainer(learner, sampler, cfg)
            trainer.step = done
            t0 = time.perf_counter()
            trainer.train()
            _sync(device)
            ours = time.perf_counter() - t0
            done += args.steps
            t0 = time.perf_counter()
            for step in range(args.steps):
                plain.update(*fixed, step)
            _sync(device)
            plain_t = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.steps):
                batch = sampler.sample()
                _ = [t.to(device, non_blocking=True) for t in batch]
            _sync(device)
            data_t = time.perf_counter() - t0
            ours_s.append(ours)
            plain_s.append(plain_t)
            data_s.append(data_t)
        ours, plain_t, data_t = min(ours_s[1:]), min(plain_s[1:]), min(data_s[1:])
        rows[name] = {
            "robot_rl_updates_per_s": args.steps / ours,
            "plain_updates_per_s": args.steps / plain_t,
            "ratio": plain_t / ours,
            "data_share_of_step": data_t / ours,
        }
        r = rows[name]
        print(
            f"{name:6s} robot_rl {r['robot_rl_updates_per_s']:7.1f}/s  plain "
            f"{r['plain_updates_per_s']:7.1f}/s  ratio {r['ratio']:.2f}  "
            f"data {r['data_share_of_step']:.1%}",
            flush=True,
        )
    store.close()
    suffix = ("" if device.type == "cpu" else f"_{device.type}") + (
        "_host_sampler" if args.host_sampler and device.type != "cpu" else ""
    )
    write_result(
        "offline_speed" + suffix,
        {"args": vars(args), "batch": BATCH, "hidden": [HIDDEN, HIDDEN], "algos": rows},
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
