"""Offline training speed: robot_rl's trainer loop against a minimal plain-torch update.

For each algorithm, in one run and interleaved (so machine load hits both alike):

- ``robot_rl``: :class:`~robot_rl.algos.OfflineTrainer` driving the algorithm on a real
  episode store through :class:`~robot_rl.data.sampler.TransitionSampler` (batches
  sampled every step, metrics collected, no TensorBoard/checkpoints), the sampler on the
  training device as ``robot-rl-pretrain`` puts it (on a GPU: arrays there, batches
  gathered there; ``--host-sampler``: gathered on the host and copied);
- ``plain``: a hand-written update of the same math (2x256 MLPs, batch 256) on one
  pre-built batch already on the device, CORL-style: no trainer, no sampler, no
  normalization, no checks, no metrics. It uses the same best practice as the trainer,
  so that the ratio measures the trainer's overhead and nothing else: fused Adam (as
  ``robot_rl.algos.algorithm.adam``, on the CPU and on CUDA), twin critics with their
  weights stacked per layer and run as robot_rl's ``QEnsemble`` runs them (one batched
  matmul per layer on CUDA, a member at a time on the CPU), one fused multi-tensor
  Polyak update, and CQL's policy samples at s and s' drawn in one pass and all its
  Q-values (data actions and the 3 x 10 proposals) in one critic pass.

Before timing, each algorithm's plain update is checked against robot_rl's: from the
same weights, on the same batch (normalized for the plain one) and with the same random
draws, three updates must give the same losses (relative difference <= 1e-4) and move
every weight the same way (<= 1e-3 of its change), or the script stops; the largest
differences are recorded (``loss_max_rel_diff``, ``weight_max_rel_diff``).

Reported per algorithm: updates/s of both (the best window of each), their ratio (goal
>= 0.9), and the share of robot_rl's step time spent getting the batch (sampling +
transfer; goal <= 5%), timed separately over as many batches. ``--repeats`` windows of
``--steps`` updates per side, the sides taking turns going first; the ratio is the
median of the windows' ratios (each window's two sides run back to back, so a burst of
load on a shared machine skews one window, not the result), its range recorded too.

    python benchmarks/offline_speed.py                  # CPU, 1 torch thread
    python benchmarks/offline_speed.py --device cuda    # on a GPU machine
    python benchmarks/offline_speed.py --device cuda --host-sampler
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR, write_result

HIDDEN, BATCH, GAMMA, TAU = 256, 256, 0.99, 0.005
LOG_2PI = math.log(2 * math.pi)


def adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam as the trainer builds it (``robot_rl.algos.algorithm.adam``): the fused
    implementation, on the CPU and on CUDA alike."""
    return torch.optim.Adam(params, lr, fused=True)


def mlp(n_in: int, n_out: int, layer_norm: bool = False) -> nn.Sequential:
    """2x256 ReLU MLP, with LayerNorm after each hidden layer where robot_rl's default
    network of that role has it (all of IQL's networks). Same layout (and state_dict
    keys) as ``robot_rl.policies.network.build_mlp``."""
    layers: list[nn.Module] = []
    for fan_in in (n_in, HIDDEN):
        layers += [nn.Linear(fan_in, HIDDEN), *([nn.LayerNorm(HIDDEN)] if layer_norm else [])]
        layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.Linear(HIDDEN, n_out))


class Critics(nn.Module):
    """``n`` 2x256 Q-networks with their weights stacked per layer (as CORL/EDAC vectorize
    critics, and as robot_rl's ``QEnsemble`` does): all members in one batched matmul
    per layer on CUDA, one member at a time (slices of the same weights) on the CPU, the
    choice ``QEnsemble`` makes. ``(s, a) -> (n, B)``, or ``(B,)`` for one ``member``."""

    def __init__(self, n_in: int, n: int = 2, layer_norm: bool = False) -> None:
        super().__init__()
        self.n, self.layer_norm = n, layer_norm
        params = []  # in QEnsemble's parameter order, so weights copy across one to one
        for k, (fan_in, fan_out) in enumerate(((n_in, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1))):
            bound = 1 / math.sqrt(fan_in)
            params.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            params.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))
            if layer_norm and k < 2:
                params += [
                    nn.Parameter(torch.ones(n, 1, fan_out)),
                    nn.Parameter(torch.zeros(n, 1, fan_out)),
                ]
        self.params = nn.ParameterList(params)

    def forward(self, s, a, member: int | None = None):
        x = torch.cat([s, a], -1)
        if member is not None:
            return self._run(x, member)
        if x.is_cuda:
            return self._run(x.expand(self.n, *x.shape).contiguous(), None)
        return torch.stack([self._run(x, i) for i in range(self.n)])

    def _run(self, h, i: int | None):
        p = iter(self.params)
        for k in range(3):
            w, b = next(p), next(p)
            h = torch.baddbmm(b, h, w) if i is None else torch.addmm(b[i], h, w[i])
            if k < 2:
                if self.layer_norm:
                    g, beta = (next(p), next(p)) if i is None else (next(p)[i], next(p)[i])
                    h = F.layer_norm(h, h.shape[-1:]) * g + beta
                h = F.relu(h)
        return h.squeeze(-1)


def polyak(target: nn.Module, source: nn.Module) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), TAU)


class PlainBC:
    def __init__(self, o: int, a: int) -> None:
        self.actor = mlp(o, a)
        self.opt = adam(self.actor.parameters(), 3e-4)

    def update(self, s, a, r, s2, d, step):
        loss = F.mse_loss(torch.tanh(self.actor(s)), a)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach()}

    def load_from(self, algo) -> None:
        self.actor.load_state_dict(algo.policy.net.state_dict())


class PlainTD3BC:
    def __init__(self, o: int, a: int) -> None:
        self.actor, self.critic = mlp(o, a), Critics(o + a)
        self.actor_t, self.critic_t = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.opt_a = adam(self.actor.parameters(), 3e-4)
        self.opt_c = adam(self.critic.parameters(), 3e-4)

    def update(self, s, a, r, s2, d, step):
        with torch.no_grad():
            noise = (torch.randn_like(a) * 0.2).clamp(-0.5, 0.5)
            a2 = (torch.tanh(self.actor_t(s2)) + noise).clamp(-1, 1)
            y = r + GAMMA * (1 - d) * self.critic_t(s2, a2).amin(0)
        loss = (self.critic(s, a) - y).pow(2).mean(1).sum()
        self.opt_c.zero_grad()
        loss.backward()
        self.opt_c.step()
        if step % 2:
            return {"critic_loss": loss.detach()}
        pi = torch.tanh(self.actor(s))
        q = self.critic(s, pi, member=0)
        actor_loss = -2.5 / q.abs().mean().detach().clamp_min(1e-6) * q.mean() + F.mse_loss(pi, a)
        self.opt_a.zero_grad()
        actor_loss.backward()
        self.opt_a.step()
        polyak(self.critic_t, self.critic)
        polyak(self.actor_t, self.actor)
        return {"critic_loss": loss.detach(), "actor_loss": actor_loss.detach()}

    def load_from(self, algo) -> None:
        self.actor.load_state_dict(algo.policy.net.state_dict())
        self.actor_t.load_state_dict(algo.policy_target.net.state_dict())
        copy_params(self.critic, algo.critic)
        copy_params(self.critic_t, algo.critic_target)


class PlainIQL:
    def __init__(self, o: int, a: int, schedule_steps: int) -> None:
        self.actor, self.v = mlp(o, a, layer_norm=True), mlp(o, 1, layer_norm=True)
        self.log_std = nn.Parameter(torch.zeros(a))
        self.critic = Critics(o + a, layer_norm=True)
        self.critic_t = copy.deepcopy(self.critic)
        self.opt_a = adam([*self.actor.parameters(), self.log_std], 3e-4)
        self.opt_v = adam(self.v.parameters(), 3e-4)
        self.opt_q = adam(self.critic.parameters(), 3e-4)
        self.schedule_steps = schedule_steps  # the actor's cosine learning-rate decay

    def update(self, s, a, r, s2, d, step):
        with torch.no_grad():
            tq = self.critic_t(s, a).amin(0)
            y = r + GAMMA * (1 - d) * self.v(s2).squeeze(-1)
        diff = tq - self.v(s).squeeze(-1)
        v_loss = ((0.7 - (diff < 0).float()).abs() * diff**2).mean()
        self.opt_v.zero_grad()
        v_loss.backward()
        self.opt_v.step()
        w = torch.exp(3.0 * diff.detach()).clamp_max(100.0)
        log_std = self.log_std.clamp(-5, 2)
        z = (a - torch.tanh(self.actor(s))) * torch.exp(-log_std)
        a_loss = -(w * (-0.5 * z**2 - log_std - 0.5 * LOG_2PI).sum(-1)).mean()
        lr = 3e-4 * 0.5 * (1 + math.cos(math.pi * min(step / self.schedule_steps, 1.0)))
        self.opt_a.param_groups[0]["lr"] = lr
        self.opt_a.zero_grad()
        a_loss.backward()
        self.opt_a.step()
        q_loss = (self.critic(s, a) - y).pow(2).mean(1).sum()
        self.opt_q.zero_grad()
        q_loss.backward()
        self.opt_q.step()
        polyak(self.critic_t, self.critic)
        return {
            "value_loss": v_loss.detach(),
            "actor_loss": a_loss.detach(),
            "critic_loss": q_loss.detach(),
        }

    def load_from(self, algo) -> None:
        self.actor.load_state_dict(algo.policy.mean_actor.net.state_dict())
        with torch.no_grad():
            self.log_std.copy_(algo.policy.log_std)
        self.v.load_state_dict(algo.value.net.state_dict())
        copy_params(self.critic, algo.critic)
        copy_params(self.critic_t, algo.critic_target)


class PlainCQL:
    N = 10

    def __init__(self, o: int, a: int) -> None:
        self.a_dim = a
        self.actor = mlp(o, 2 * a)  # mean and log std from one output layer
        self.critic = Critics(o + a)
        self.critic_t = copy.deepcopy(self.critic)
        self.log_alpha = nn.Parameter(torch.zeros(()))
        self.opt_a = adam(self.actor.parameters(), 1e-4)
        self.opt_t = adam([self.log_alpha], 1e-4)
        self.opt_q = adam(self.critic.parameters(), 3e-4)

    def pi(self, s):
        """A tanh-Gaussian sample and its log density (the stable form of the squashing
        correction, as robot_rl's ``GaussianActor.sample``)."""
        mean, log_std = self.actor(s).chunk(2, -1)
        log_std = log_std.clamp(-5, 2)
        noise = torch.randn_like(mean)
        u = mean + noise * log_std.exp()
        logp = (-0.5 * noise**2 - log_std - 0.5 * LOG_2PI).sum(-1)
        return torch.tanh(u), logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)

    def update(self, s, a, r, s2, d, step):
        b, n, ad = s.shape[0], self.N, self.a_dim
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():  # n policy actions at s and at s' in one pass
            both = torch.cat([s, s2]).unsqueeze(1).expand(-1, n, -1).reshape(2 * b * n, -1)
            sampled, logp_s = self.pi(both)
            sampled, logp_s = sampled.view(2, b, n, ad), logp_s.view(2, b, n)
            y = r + GAMMA * (1 - d) * self.critic_t(s2, sampled[1, :, 0]).amin(0)
        act, logp = self.pi(s)
        actor_loss = (alpha * logp - self.critic(s, act).amin(0)).mean()
        t_loss = -(self.log_alpha * (logp.detach() - ad)).mean()
        self.opt_a.zero_grad()
        actor_loss.backward()
        self.opt_a.step()
        self.opt_t.zero_grad()
        t_loss.backward()
        self.opt_t.step()
        # Q of the data's actions and of every proposal in one critic pass.
        a_rand = torch.rand(b, n, ad, device=s.device) * 2 - 1
        proposals = torch.cat([a_rand, sampled[0], sampled[1]], 1).reshape(b * 3 * n, ad)
        s_all = torch.cat([s, s.unsqueeze(1).expand(-1, 3 * n, -1).reshape(b * 3 * n, -1)])
        q_all = self.critic(s_all, torch.cat([a, proposals]))
        q_data = q_all[:, :b]
        q_rand, q_cur, q_next = q_all[:, b:].view(2, b, 3 * n).split(n, 2)
        ood = torch.cat([q_rand + ad * math.log(2), q_cur - logp_s[0], q_next - logp_s[1]], 2)
        gap = (torch.logsumexp(ood, 2) - q_data).mean(1)
        loss = (q_data - y).pow(2).mean(1).sum() + 5.0 * gap.sum()
        self.opt_q.zero_grad()
        loss.backward()
        self.opt_q.step()
        polyak(self.critic_t, self.critic)
        return {"actor_loss": actor_loss.detach(), "critic_loss": loss.detach()}

    def load_from(self, algo) -> None:
        net, head = algo.policy.mean_actor.net, algo.policy.log_std_head
        state = dict(net.state_dict())
        last = str(len(net) - 1)
        for key in ("weight", "bias"):
            state[f"{last}.{key}"] = torch.cat([state[f"{last}.{key}"], getattr(head, key)])
        self.actor.load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(algo.log_alpha.log_value)
        copy_params(self.critic, algo.critic)
        copy_params(self.critic_t, algo.critic_target)


def copy_params(dst: nn.Module, src: nn.Module) -> None:
    """Copies ``src``'s parameters into ``dst``'s, in order (shapes must agree)."""
    with torch.no_grad():
        for d, s in zip(dst.parameters(), src.parameters(), strict=True):
            if d.shape != s.shape:
                raise ValueError(f"parameter shapes differ: {tuple(d.shape)} vs {tuple(s.shape)}")
            d.copy_(s)


PLAIN = {"bc": PlainBC, "td3bc": PlainTD3BC, "iql": PlainIQL, "cql": PlainCQL}


def build_plain(name: str, o: int, a: int, steps: int):
    """The plain update of ``name``; ``steps``: the length of IQL's learning-rate decay."""
    return PlainIQL(o, a, steps) if name == "iql" else PLAIN[name](o, a)


def check_same_update(name: str, learner, batch, steps: int = 3) -> dict[str, float]:
    """Runs ``learner`` (a fresh robot_rl algorithm) and the plain update of the same
    algorithm from the same weights on ``batch`` for ``steps`` updates with the same
    random draws, the plain one given the batch normalized as the learner normalizes it;
    then every weight of the plain update (networks, targets, log-std, entropy
    temperature) must have moved as the learner's did, which checks the optimizers and
    target updates too.

    Returns:
        The largest relative difference of a loss, and of a weight tensor's change (the
        norm of the difference over the norm of the learner's change).

    Raises:
        SystemExit: A loss differs by more than 1e-4 (relative), or a weight tensor's
            change by more than 1e-3 of it: the two would not be doing the same work,
            and their speeds could not be compared. (Float rounding alone gave at most
            2e-5, from CQL's actor, whose mean and log-std heads are one layer in the
            plain update.)
    """
    device = batch.obs.device
    with device:
        plain = build_plain(name, learner.policy.normalizer.dim, batch.action.shape[1], steps)
    plain.load_from(learner)
    start = {k: v.clone() for k, v in _tensors(plain).items()}
    worst_w = 0.0
    learner.on_train_start(steps)
    norm = learner.policy.normalizer
    with torch.no_grad():
        normalized = (
            norm(batch.obs),
            batch.action,
            batch.reward,
            norm(batch.next_obs),
            batch.terminated,
        )
    worst = 0.0
    for step in range(steps):
        torch.manual_seed(step)
        ours = learner.update(batch, step)
        torch.manual_seed(step)
        theirs = plain.update(*normalized, step)
        for key, value in theirs.items():
            ref = float(ours[key])
            diff = abs(float(value) - ref) / max(abs(ref), 1e-6)
            if diff > 1e-4:
                raise SystemExit(
                    f"{name}: the plain update's {key} at step {step} is {float(value):.6g}, "
                    f"robot_rl's is {ref:.6g}: they do not compute the same update"
                )
            worst = max(worst, diff)
    with device:
        reference = build_plain(name, learner.policy.normalizer.dim, batch.action.shape[1], steps)
    reference.load_from(learner)
    ours, theirs = _tensors(reference), _tensors(plain)
    for key, value in theirs.items():
        moved = (ours[key] - start[key]).norm()
        gap = (value - ours[key]).norm()
        if gap > 1e-3 * moved + 1e-6:
            raise SystemExit(
                f"{name}: after {steps} updates the plain update's {key} is {gap:.3g} away "
                f"from robot_rl's, which moved {moved:.3g} from the shared start: they do "
                "not compute the same update"
            )
        worst_w = max(worst_w, float(gap / moved) if moved > 0 else 0.0)
    return {"loss_max_rel_diff": worst, "weight_max_rel_diff": worst_w}


def _tensors(plain) -> dict[str, torch.Tensor]:
    """Every parameter of a plain update, by attribute name."""
    out = {}
    for attr, value in vars(plain).items():
        if isinstance(value, nn.Parameter):
            out[attr] = value.detach()
        elif isinstance(value, nn.Module):
            out.update({f"{attr}.{k}": v.detach() for k, v in value.state_dict().items()})
    return out


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
    ap.add_argument("--steps", type=int, default=100, help="updates per timed window")
    ap.add_argument("--repeats", type=int, default=9, help="timed windows per side")
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
        first = sampler.sample()
        fixed = type(first)(*(t.to(device) for t in first))
        same = check_same_update(name, algo_cls(o, a, config_cls(), normalizer).to(device), fixed)
        learner = algo_cls(o, a, config_cls(), normalizer).to(device)
        with device:  # every tensor the plain update owns, IQL's log-std parameter too
            plain = build_plain(name, o, a, args.steps)
        times: dict[str, list[float]] = {"robot_rl": [], "plain": [], "data": []}
        done = 0
        for i in range(args.repeats + 1):  # round 0 warms up and is dropped
            trainer = OfflineTrainer(
                learner,
                sampler,
                TrainerConfig(
                    num_steps=done + args.steps,
                    log_every=args.steps,
                    device=str(device),
                    progress=False,
                ),
            )
            trainer.step = done
            done += args.steps
            # The sides take turns going first, so a drift in machine load favours neither.
            for side in ("robot_rl", "plain") if i % 2 == 0 else ("plain", "robot_rl"):
                t0 = time.perf_counter()
                if side == "robot_rl":
                    trainer.train()
                else:
                    for step in range(args.steps):
                        plain.update(*fixed, step)
                _sync(device)
                times[side].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                batch = sampler.sample()
                _ = [t.to(device, non_blocking=True) for t in batch]
            _sync(device)
            times["data"].append(time.perf_counter() - t0)
        times = {k: v[1:] for k, v in times.items()}
        ratios = [p / o for p, o in zip(times["plain"], times["robot_rl"], strict=True)]
        rows[name] = {
            "robot_rl_updates_per_s": args.steps / min(times["robot_rl"]),
            "plain_updates_per_s": args.steps / min(times["plain"]),
            "ratio": statistics.median(ratios),
            "ratio_min_max": [min(ratios), max(ratios)],
            "data_share_of_step": statistics.median(
                d / o for d, o in zip(times["data"], times["robot_rl"], strict=True)
            ),
            "window_s": times,
            **same,
        }
        r = rows[name]
        print(
            f"{name:6s} robot_rl {r['robot_rl_updates_per_s']:7.1f}/s  plain "
            f"{r['plain_updates_per_s']:7.1f}/s  ratio {r['ratio']:.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f})  data {r['data_share_of_step']:.1%}",
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
