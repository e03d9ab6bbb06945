"""What every importer shares: flattening observations, checking episodes, the target store.

An importer turns its source into episodes of frames (the dict
:meth:`EpisodeStore.append_episode` takes) plus provenance, each with a ``where``
string naming its origin (file and demo, dataset and episode, env and episode) for
error messages. :func:`check_frames` checks an episode against the target's schema and
casts it; :func:`write_episodes` checks every episode of a source before it creates or
touches the target store, then appends them, so bad input leaves the store unchanged.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.data.action_bounds import action_unit
from robot_rl.data.episode_store import (
    OPTIONAL_FLAG_KEYS,
    RESERVED_KEYS,
    TIMESTAMP_KEY,
    EpisodeProvenance,
    EpisodeStore,
    StoreFormatError,
)
from robot_rl.data.provenance import REWARD_NONE, REWARD_RECORDED

# Observation key of a source whose observation is a single array (a Box space).
SINGLE_OBS_KEY = "observation"

# obs key -> (per-step shape, dtype string), as EpisodeStore.create takes it.
ObsSpec = dict[str, tuple[tuple[int, ...], str]]
# One episode of a source: (where, frames, provenance).
SourceEpisode = tuple[str, dict[str, np.ndarray], EpisodeProvenance]


@dataclass
class ImportResult:
    """What an import wrote.

    Attributes:
        store_path: the target store.
        episodes: store indices of the imported episodes, in source order.
        n_steps: control-rate rows imported.
        action_low: per-dimension lower bound of the source's action space when it is
            not [-1, 1] (the actions are stored raw, in the source's units); else None.
        action_high: the matching upper bound, or None.
    """

    store_path: Path
    episodes: list[int] = field(default_factory=list)
    n_steps: int = 0
    action_low: list[float] | None = None
    action_high: list[float] | None = None

    @property
    def n_episodes(self) -> int:
        """Number of episodes imported."""
        return len(self.episodes)


def flatten_obs(obs: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten a (nested) dict/tuple observation into store keys -> arrays.

    A plain array becomes ``{"observation": array}``; dict entries keep their names,
    nested ones joined with ``.`` (``{"robot": {"pos": x}}`` -> ``"robot.pos"``); tuple
    entries are numbered (``observation.0``, ``observation.1``).
    """
    if isinstance(obs, Mapping):
        out: dict[str, np.ndarray] = {}
        for k, v in obs.items():
            out.update(flatten_obs(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obs, tuple | list) and not isinstance(obs, np.ndarray):
        out = {}
        base = prefix or SINGLE_OBS_KEY
        for i, v in enumerate(obs):
            out.update(flatten_obs(v, f"{base}.{i}"))
        return out
    return {prefix or SINGLE_OBS_KEY: np.asarray(obs)}


def stored_obs_dtype(dtype: np.dtype) -> str:
    """The dtype an observation is stored with: float64 becomes float32, others stay.

    float64 sensor values carry no precision a float32 policy input uses (the samplers
    hand float32 to torch), and storing them as float32 halves the store.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return "float32"
    if dtype.kind not in "fiub":
        raise ValueError(f"dtype {dtype} is not storable (float, int, uint or bool only)")
    return str(dtype)


def obs_spec_of(obs: Mapping[str, np.ndarray], where: str) -> ObsSpec:
    """Store schema of a source episode's observation arrays, each (T, *shape)."""
    spec: ObsSpec = {}
    for key, x in obs.items():
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError(f"{where}: observation {key!r} has no time axis (shape {x.shape})")
        try:
            spec[key] = (tuple(int(s) for s in x.shape[1:]), stored_obs_dtype(x.dtype))
        except ValueError as e:
            raise ValueError(f"{where}: observation {key!r}: {e}") from None
    return spec


def action_bounds(low: np.ndarray, high: np.ndarray) -> tuple[list[float], list[float]] | None:
    """The bounds of a Box action space as lists, or None when they are all [-1, 1]."""
    low = np.asarray(low, dtype=np.float64).reshape(-1)
    high = np.asarray(high, dtype=np.float64).reshape(-1)
    if np.all(low == -1.0) and np.all(high == 1.0):
        return None
    return low.tolist(), high.tolist()


def make_frames(
    obs: Mapping[str, np.ndarray],
    action: np.ndarray,
    reward: np.ndarray | None,
    terminated: np.ndarray,
    truncated: np.ndarray,
    where: str,
) -> dict[str, np.ndarray]:
    """One episode's frames from flat observations and per-step arrays (``reward`` None:
    a source without rewards, the frames have no ``reward``).

    An episode whose last row is neither terminated nor truncated was cut short (a
    demo stopped by its operator, a dataset without end flags): its last row is marked
    truncated, so samplers give it no transition into a state that was never recorded.

    Raises:
        ValueError: an observation key collides with a per-frame key of the store.
    """
    clash = [k for k in obs if k in RESERVED_KEYS]
    if clash:
        raise ValueError(
            f"{where}: observation key(s) {clash} collide with the store's per-frame keys "
            f"{list(RESERVED_KEYS)}"
        )
    action = np.asarray(action)
    if action.ndim >= 1 and len(action):
        action = action.reshape(len(action), -1)
    terminated = np.array(terminated, copy=True)
    truncated = np.array(truncated, copy=True)
    if (
        terminated.ndim == 1
        and len(terminated)
        and len(truncated) == len(terminated)
        and not (terminated[-1] or truncated[-1])
    ):
        truncated[-1] = 1
    frames = {**obs, "action": action}
    if reward is not None:
        frames["reward"] = np.asarray(reward)
    frames["terminated"] = terminated
    frames["truncated"] = truncated
    return frames


def check_frames(
    frames: dict[str, np.ndarray],
    obs_spec: ObsSpec,
    action_dim: int,
    where: str,
    *,
    rewards: bool = True,
    timestamps: bool = False,
) -> dict[str, np.ndarray]:
    """Check one episode against the target schema and cast it to the stored dtypes.

    Args:
        frames: the episode's arrays: every key of ``obs_spec``, ``action``, ``reward``
            (exactly when ``rewards``), ``terminated``, ``truncated``, ``timestamp``
            (float seconds, exactly when ``timestamps``), and optionally the per-frame
            flags ``clipped`` and ``intervention``.
        obs_spec: the target's observation schema.
        action_dim: size of the action vector.
        where: the episode's origin, for messages.
        rewards: the target store has rewards.
        timestamps: the target store has control-row timestamps.

    Raises:
        ValueError: naming ``where`` and the key: a missing or unexpected key, a wrong
            per-step shape, lengths that differ between keys, an empty episode, a NaN or
            inf, a dtype of the wrong kind, or flags that are not 0/1.
    """
    expected = [
        *obs_spec,
        "action",
        *(["reward"] if rewards else []),
        "terminated",
        "truncated",
        *([TIMESTAMP_KEY] if timestamps else []),
    ]
    expected += [k for k in OPTIONAL_FLAG_KEYS if k in frames]
    missing = [k for k in expected if k not in frames]
    extra = [k for k in frames if k not in expected]
    if missing or extra:
        raise ValueError(
            f"{where}: observation keys differ from the first episode's: "
            f"missing {missing}, unexpected {extra}; expected {list(obs_spec)}"
        )
    n = len(np.asarray(frames["action"]))
    if n == 0:
        raise ValueError(f"{where}: episode has 0 steps; expected at least 1")
    shapes: dict[str, tuple[tuple[int, ...], str]] = {
        **obs_spec,
        "action": ((action_dim,), "float32"),
        "reward": ((), "float32"),
        "terminated": ((), "bool"),
        "truncated": ((), "bool"),
        TIMESTAMP_KEY: ((), "float64"),
        **{k: ((), "bool") for k in OPTIONAL_FLAG_KEYS},
    }
    out: dict[str, np.ndarray] = {}
    for key in expected:
        shape, dtype = shapes[key]
        x = np.asarray(frames[key])
        label = f"{where}: {key!r}"
        if x.shape[:1] != (n,):
            raise ValueError(
                f"{label}: has {x.shape[0] if x.ndim else 0} steps but 'action' has {n}; "
                "every key needs one row per step"
            )
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{label}: per-step shape {tuple(x.shape[1:])}, expected {shape} "
                "(the first episode's)"
            )
        target = np.dtype(dtype)
        if target.kind == "b":
            if x.dtype.kind not in "biuf" or not np.isin(x, (0, 1)).all():
                raise ValueError(f"{label}: expected 0/1 flags, got other values ({x.dtype})")
            out[key] = x.astype(bool)
            continue
        if x.dtype.kind == "f":
            finite = np.isfinite(x)
            if not finite.all():
                step = int(np.argwhere(~finite)[0][0])
                raise ValueError(f"{label}: NaN or inf at step {step}; expected finite values")
        if target.kind == "f":
            compatible = x.dtype.kind == "f" or (
                x.dtype.kind in "iub" and key in ("action", "reward", TIMESTAMP_KEY)
            )
        else:
            compatible = x.dtype.kind in "iu"
        if not compatible:
            raise ValueError(f"{label}: dtype {x.dtype} cannot be stored as {target}")
        if target.kind == "f":
            with np.errstate(over="ignore"):
                y = x.astype(target)
            if not np.isfinite(y).all():
                raise ValueError(f"{label}: values overflow {target}")
            out[key] = y
        else:
            out[key] = x.astype(target)
    return out


def import_provenance(
    robot_id: str,
    policy_id: str,
    *,
    success: bool | None = None,
    start_time_unix_s: float | None = None,
) -> EpisodeProvenance:
    """Provenance of an imported episode (``source="import"``).

    ``robot_id`` names the robot or env of the source (``"gym:FetchReach-v4"``),
    ``policy_id`` where the episode came from (``"robomimic:lift.hdf5#demo_3"``).
    """
    return EpisodeProvenance(
        source="import",
        robot_id=robot_id,
        policy_id=policy_id,
        code_version=_code_version(),
        success=success,
        start_time_unix_s=start_time_unix_s,
    )


@functools.cache
def _code_version() -> str:
    # code_version() runs git twice; once per process is enough.
    from robot_rl.paths import code_version

    return code_version()


@dataclass
class StoreTarget:
    """Where and how an import writes: the store path and how to create it if absent.

    Attributes:
        path: the store directory.
        control_hz: control rate of the source's rows, in Hz.
        robot: robot name for a new store's root attributes.
        task: task name for a new store's root attributes.
        append: add to an existing episode store at ``path`` (its schema must match);
            without it an existing store is an error (unless ``overwrite``).
        overwrite: replace an existing episode store at ``path``.
        rewards: the source has rewards; without, a new store is created without them
            (``reward_source="none"``) and episodes come without ``reward``.
        timestamps: the source has control-row timestamps (seconds); a new store keeps
            them in ``data/timestamp``.
    """

    path: Path
    control_hz: float
    robot: str
    task: str
    append: bool = False
    overwrite: bool = False
    rewards: bool = True
    timestamps: bool = False

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.append and self.overwrite:
            raise ValueError("append and overwrite: choose at most one")

    def exists(self) -> bool:
        """True when ``path`` holds an episode store."""
        try:
            EpisodeStore.open(self.path, mode="r").close()
        except (FileNotFoundError, StoreFormatError):
            return False
        return True

    def check_writable(self) -> None:
        """Fail early (before reading the source twice) when the target can't be written."""
        p = self.path
        if self.append and self.exists():
            return
        if p.exists() and not (p.is_dir() and not any(p.iterdir())) and not self.overwrite:
            raise FileExistsError(
                f"{p} already exists; pass append=True (CLI: --append) to add to an episode store "
                "there, or overwrite=True to replace it"
            )
        if not p.parent.is_dir():
            raise FileNotFoundError(f"{p.parent}: directory of the target store does not exist")

    def open(self, obs_spec: ObsSpec, action_dim: int, units: dict[str, str]) -> EpisodeStore:
        """Create the store, or open the existing one and check that its schema matches."""
        if self.append and self.exists():
            store = EpisodeStore.open(self.path, mode="a")
            try:
                _check_compatible(store, obs_spec, action_dim, units, self)
            except BaseException:
                store.close()
                raise
            return store
        return EpisodeStore.create(
            self.path,
            obs_spec=obs_spec,
            action_dim=action_dim,
            control_hz=self.control_hz,
            robot=self.robot,
            task=self.task,
            units=units or None,
            overwrite=self.overwrite,
            timestamps=self.timestamps,
            reward_source=REWARD_RECORDED if self.rewards else REWARD_NONE,
        )


def _check_compatible(
    store: EpisodeStore,
    obs_spec: ObsSpec,
    action_dim: int,
    units: dict[str, str],
    target: StoreTarget,
) -> None:
    problems = []
    if not math.isclose(float(target.control_hz), store.control_hz, rel_tol=1e-9):
        problems.append(f"control_hz {target.control_hz:g} vs the store's {store.control_hz:g}")
    for name in ("robot", "task"):
        mine, theirs = getattr(target, name), store.attrs.get(name)
        if mine != theirs:
            problems.append(f"{name} {mine!r} vs the store's {theirs!r}")
    if set(store.obs_spec) != set(obs_spec):
        problems.append(f"observation keys {sorted(obs_spec)} vs the store's {store.obs_keys}")
    else:
        for key, (shape, dtype) in obs_spec.items():
            if store.obs_spec[key] != (shape, dtype):
                problems.append(f"{key!r} is {shape} {dtype}, the store has {store.obs_spec[key]}")
    if store.action_dim != action_dim:
        problems.append(f"action_dim {action_dim} vs the store's {store.action_dim}")
    if store.has_rewards != target.rewards:
        problems.append(
            f"{'rewards' if target.rewards else 'no rewards'} vs the store's "
            f"{'rewards' if store.has_rewards else 'none'}"
        )
    if store.has_timestamps != target.timestamps:
        problems.append(f"timestamps {target.timestamps} vs the store's {store.has_timestamps}")
    store_unit = (store.attrs.get("units") or {}).get("action")
    if store_unit != units.get("action"):
        problems.append(f"action units {units.get('action')!r} vs the store's {store_unit!r}")
    if problems:
        raise ValueError(f"{store.path}: cannot append: " + "; ".join(problems))


def write_episodes(
    target: StoreTarget,
    episodes: Callable[[], Iterable[SourceEpisode]],
    *,
    action_dim: int,
    bounds: tuple[list[float], list[float]] | None,
    obs_spec: ObsSpec | None = None,
    check_first: bool = True,
    units: dict[str, str] | None = None,
) -> ImportResult:
    """Check a source's episodes and append them to the target store.

    Args:
        target: the store to write.
        episodes: called once per pass; yields ``(where, frames, provenance)``.
        action_dim: size of the action vector.
        bounds: raw action bounds (see :func:`action_bounds`), or None.
        obs_spec: the schema; None takes it from the first episode.
        units: key -> unit string for a new store (besides the action unit that
            ``bounds`` gives).
        check_first: check every episode before writing any (the source is read twice),
            so bad input leaves the store unchanged. Without it (a live source such as
            env rollouts, which cannot be replayed) episodes are checked and committed
            one at a time: a bad episode raises and adds nothing, but the episodes before
            it stay committed.

    Raises:
        ValueError: a bad episode (the message names ``where`` and the key), an empty
            source, or a target store whose schema does not match.
    """
    target.check_writable()
    units = dict(units or {})
    if u := action_unit(bounds):
        units["action"] = u

    def checked(it: Iterator[SourceEpisode]) -> Iterator[SourceEpisode]:
        nonlocal obs_spec
        for where, frames, prov in it:
            if obs_spec is None:
                obs_spec = obs_spec_of(
                    {k: v for k, v in frames.items() if k not in RESERVED_KEYS}, where
                )
            checked_frames = check_frames(
                frames,
                obs_spec,
                action_dim,
                where,
                rewards=target.rewards,
                timestamps=target.timestamps,
            )
            yield where, checked_frames, prov

    if check_first:
        n = sum(1 for _ in checked(iter(episodes())))
        if n == 0:
            raise ValueError(f"the source has no episodes to import into {target.path}")

    result = ImportResult(store_path=target.path)
    if bounds is not None:
        result.action_low, result.action_high = bounds
    store: EpisodeStore | None = None
    try:
        for where, frames, prov in checked(iter(episodes())):
            if store is None:
                assert obs_spec is not None
                store = target.open(obs_spec, action_dim, units)
            try:
                index = store.append_episode(frames, prov)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from e
            result.episodes.append(index)
            result.n_steps += len(frames["action"])
    finally:
        if store is not None:
            store.close()
    if store is None:
        raise ValueError(f"the source has no episodes to import into {target.path}")
    return result


def source_name(path: str | os.PathLike[str]) -> str:
    """The basename recorded in provenance for a file source (never a full local path)."""
    return Path(path).name
