"""Helper for the expert-outcome check: the scripted experts on the same seeded episodes
with the safety filter on and off (one BatchedSim world per episode)."""

from __future__ import annotations

import numpy as np

from robot_rl.config.schema import SimConfig, TaskConfig
from robot_rl.sim.batched import BatchedSim
from robot_rl.sim.experts import make_expert


def expert_outcomes(task: str, seeds: list[int], safety_filter: bool) -> dict:
    """Success of each seeded episode, and the per-constraint intervention counts."""
    n = len(seeds)
    sim = BatchedSim(
        n, TaskConfig(name=task), sim_config=SimConfig(safety_filter=safety_filter), seed=0
    )
    experts = [make_expert(task) for _ in range(n)]
    obs = sim.reset(episode_seeds=seeds)
    success = np.zeros(n, dtype=bool)
    running = np.ones(n, dtype=bool)
    counts: dict[str, int] = {}
    while running.any():
        host = {k: v.cpu().numpy() for k, v in obs.items()}
        actions = np.zeros((n, 4), dtype=np.float32)
        for w in np.flatnonzero(running):
            actions[w] = experts[w].act({k: v[w] for k, v in host.items()})
        obs, _, terminated, truncated, info = sim.step(actions)
        for k, v in info.get("safety", {}).items():
            counts[k] = counts.get(k, 0) + int((v.cpu().numpy() & running).sum())
        ended = (terminated | truncated).cpu().numpy() & running
        success[ended] = info["is_success"].cpu().numpy()[ended]
        running &= ~ended
    return {"success": success, "interventions": counts}
