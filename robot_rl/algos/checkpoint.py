"""Checkpoints of the offline training loop, and resuming from them.

Checkpoints (under ``<log_dir>/checkpoints/step_<N>/``) hold ``state.safetensors`` (every
module's ``state_dict``, optimizer tensors, RNG states) and ``trainer.json`` (step count,
algorithm name and config, optimizer hyper-parameters, the batch source's state, logged
history). Nothing is pickled. Each checkpoint is written to a hidden temp dir and renamed
into place, so a crash never leaves a half checkpoint that resume would pick up.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from robot_rl.algos.algorithm import AlgorithmState, OfflineAlgorithm

CHECKPOINT_FORMAT = "robot_rl.offline_checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.torch_cuda.{i}"] = state
    np_state = np.random.get_state()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    return tensors, meta


def _set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.torch_cuda.")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def iter_checkpoints(log_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint dirs under ``<log_dir>/checkpoints``, oldest first."""
    root = Path(log_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if p.is_dir() and (p / "trainer.json").is_file()]
    return sorted(done, key=lambda p: int(p.name.removeprefix("step_")))


def latest_checkpoint(log_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint dir under ``<log_dir>/checkpoints``, or ``None``."""
    done = iter_checkpoints(log_dir)
    return done[-1] if done else None


def write_checkpoint(
    log_dir: Path,
    step: int,
    algo: OfflineAlgorithm,
    source: Any,
    history: Mapping[str, list[tuple[int, float]]],
    keep: int,
) -> Path:
    """Writes the checkpoint of ``step`` under ``<log_dir>/checkpoints`` (the algorithm's
    state, the RNG states, ``source``'s state if it has a ``state_dict``, and the logged
    ``history``), then prunes all but the ``keep`` newest.

    Returns:
        The checkpoint directory.
    """
    root = log_dir / "checkpoints"
    final = root / f"step_{step:09d}"
    tmp = root / f".step_{step:09d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    algo_state = algo.state_dict()
    rng_tensors, rng_meta = _rng_state()
    tensors = {**{f"algo.{k}": v for k, v in algo_state.tensors.items()}, **rng_tensors}
    save_file(tensors, str(tmp / "state.safetensors"))
    source_state = source.state_dict() if callable(getattr(source, "state_dict", None)) else None
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "step": step,
        "algorithm": algo.name,
        "algo_config": algo.config_dict(),
        "algo_state": algo_state.metadata,
        "rng": rng_meta,
        "source_state": source_state,
        "history": {k: [list(e) for e in v] for k, v in history.items()},
    }
    (tmp / "trainer.json").write_text(json.dumps(meta))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)

    for old in iter_checkpoints(log_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(
    checkpoint_dir: str | os.PathLike[str],
    algo: OfflineAlgorithm,
    source: Any,
    device: torch.device,
) -> tuple[int, dict[str, list[tuple[int, float]]]]:
    """Restores ``algo`` (then on ``device``), the RNG states and ``source``'s state (if it
    has a ``load_state_dict``) from a checkpoint.

    Returns:
        The checkpoint's step and its logged history (a ``defaultdict(list)``).

    Raises:
        ValueError: Wrong format, another algorithm, or a different algorithm config.
    """
    ckpt = Path(checkpoint_dir)
    meta_path = ckpt / "trainer.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{meta_path}: unreadable checkpoint metadata ({exc})") from exc
    if (
        meta.get("format") != CHECKPOINT_FORMAT
        or meta.get("format_version") != CHECKPOINT_FORMAT_VERSION
    ):
        raise ValueError(
            f"{meta_path}: format {meta.get('format')!r} v{meta.get('format_version')!r}; "
            f"expected {CHECKPOINT_FORMAT!r} v{CHECKPOINT_FORMAT_VERSION}"
        )
    if meta["algorithm"] != algo.name:
        raise ValueError(
            f"{ckpt}: checkpoint is for algorithm {meta['algorithm']!r}, "
            f"not {algo.name!r}; use another log dir or resume=False"
        )
    # Compare through JSON so tuples and lists compare equal.
    current = json.loads(json.dumps(algo.config_dict()))
    if meta["algo_config"] != current:
        diff = sorted(
            k
            for k in set(current) | set(meta["algo_config"])
            if current.get(k) != meta["algo_config"].get(k)
        )
        raise ValueError(
            f"{ckpt}: algorithm config differs from the checkpoint's in {diff}; "
            "use another log dir or resume=False"
        )
    tensors = load_file(str(ckpt / "state.safetensors"))
    algo_tensors = {k[5:]: v for k, v in tensors.items() if k.startswith("algo.")}
    algo.load_state_dict(AlgorithmState(algo_tensors, meta["algo_state"]))
    algo.to(device)
    _set_rng_state(tensors, meta["rng"])
    if meta.get("source_state") is not None and callable(getattr(source, "load_state_dict", None)):
        source.load_state_dict(meta["source_state"])
    history: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for tag, entries in meta.get("history", {}).items():
        history[tag] = [(int(s), float(v)) for s, v in entries]
    return int(meta["step"]), history
