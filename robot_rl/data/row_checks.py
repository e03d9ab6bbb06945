"""Checking blocks of rows before any of them is written.

A block (control rows or rows of a stream) is checked and cast against the store's spec as
a whole: unknown or missing keys, shapes, dtypes, the same number of rows in every key,
finite floats, timestamps that never decrease. A bad block raises ValueError naming
``what[key]``, what was expected and what was given, and nothing of it reaches the disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

Spec = dict[str, tuple[tuple[int, ...], np.dtype]]


def cast_values(what: str, key: str, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Check that ``x`` fits ``dtype`` (same kind, in range, finite floats) and cast it.

    Raises:
        ValueError: naming ``what[key]``, what was expected and what was given.
    """
    src = x.dtype
    ok = (
        src.kind == dtype.kind
        or (dtype.kind in "iu" and src.kind in "iu")
        or (dtype.kind == "b" and src.kind in "iu")
    )
    if not ok:
        raise ValueError(
            f"{what}[{key!r}]: expected dtype {dtype} (kind {dtype.kind!r}), got {src}"
        )
    if dtype.kind == "b":
        if src.kind != "b" and not np.isin(x, (0, 1)).all():
            raise ValueError(
                f"{what}[{key!r}]: expected bool (or 0/1) values, got {src} with other values"
            )
        return x.astype(bool)
    if dtype.kind in "iu" and x.size:
        info = np.iinfo(dtype)
        lo, hi = x.min(), x.max()
        if lo < info.min or hi > info.max:
            raise ValueError(
                f"{what}[{key!r}]: values in [{lo}, {hi}] do not fit dtype {dtype} "
                f"([{info.min}, {info.max}])"
            )
    if dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            step = int(np.argwhere(~finite)[0][0])
            raise ValueError(f"{what}[{key!r}]: NaN or inf at step {step}; expected finite")
        with np.errstate(over="ignore"):
            y = x.astype(dtype)
        if not np.isfinite(y).all():
            raise ValueError(
                f"{what}[{key!r}]: values overflow {dtype} (max |x| = {np.abs(x).max()})"
            )
        return y
    return x.astype(dtype)


def check_block(
    what: str,
    spec: Spec,
    required: list[str],
    block: dict[str, np.ndarray],
    where: Path,
) -> tuple[dict[str, np.ndarray], int]:
    """Check and cast a block of rows against ``spec``; nothing is written.

    Keys of ``spec`` not in ``required`` are optional bool flags that default to all
    False. Every key needs the same number of rows T (T may be 0).

    Returns:
        (every key of ``spec`` -> rows cast to its dtype, T).

    Raises:
        ValueError: an unknown or missing key, a wrong shape or dtype, differing T,
            non-finite floats; the message names ``what[key]`` and ``where``.
    """
    if not isinstance(block, dict):
        raise ValueError(f"{what}: expected a dict key -> array, got {type(block).__name__}")
    unknown = sorted(set(block) - set(spec))
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; expected {list(spec)} ({where})")
    missing = [k for k in required if k not in block]
    if missing:
        raise ValueError(f"{what}: missing key(s) {missing}; every block needs {required}")
    n_rows: int | None = None
    first_key = ""
    out: dict[str, np.ndarray] = {}
    for key, (shape, dtype) in spec.items():
        if key not in block:
            continue
        x = np.asarray(block[key])
        if x.ndim != 1 + len(shape) or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{what}[{key!r}]: expected shape (T, {', '.join(map(str, shape))}) "
                f"(per-step shape {shape}), got {x.shape}".replace(", )", ")")
            )
        if n_rows is None:
            n_rows, first_key = x.shape[0], key
        elif x.shape[0] != n_rows:
            raise ValueError(
                f"{what}[{key!r}]: has {x.shape[0]} steps, but {what}[{first_key!r}] has "
                f"{n_rows}; every key needs the same T"
            )
        out[key] = cast_values(what, key, x, dtype)
    assert n_rows is not None  # required is never empty
    for key, (shape, dtype) in spec.items():
        if key not in out:
            out[key] = np.zeros((n_rows, *shape), dtype=dtype)
    return out, int(n_rows)


def check_timestamps(what: str, ts: np.ndarray, previous: float | None) -> None:
    """Raise ValueError unless ``ts`` is non-decreasing and starts at or after ``previous``."""
    if ts.size == 0:
        return
    bad = np.nonzero(np.diff(ts) < 0)[0]
    if bad.size:
        r = int(bad[0]) + 1
        raise ValueError(
            f"{what}['timestamp']: decreases at row {r} ({ts[r - 1]!r} -> {ts[r]!r}); "
            "timestamps must be non-decreasing"
        )
    if previous is not None and ts[0] < previous:
        raise ValueError(
            f"{what}['timestamp']: first value {ts[0]!r} is before the last appended "
            f"{previous!r}; timestamps must be non-decreasing across blocks"
        )
