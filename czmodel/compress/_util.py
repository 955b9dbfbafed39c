"""Shared argument checks for the compression algorithms.

Every public function validates its inputs up front so a bad argument fails with
an ``EncodeError`` naming the argument, instead of a numpy error deep inside.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from czmodel.errors import EncodeError


def as_float_array(w: Any, name: str = "w", *, allow_empty: bool = False) -> np.ndarray:
    """Return ``w`` as a floating numpy array, rejecting NaN/inf (they break every ranking)."""
    a = np.asarray(w)
    if a.dtype.kind not in "fiu" and a.dtype != np.bool_:
        raise EncodeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if a.dtype.kind != "f":
        a = a.astype(np.float32)
    if a.size == 0 and not allow_empty:
        raise EncodeError(f"{name} is empty")
    if a.size and not np.isfinite(a).all():
        raise EncodeError(f"{name} contains NaN or infinite values")
    return a


def check_fraction(x: Any, name: str, *, lo: float = 0.0, hi: float = 1.0,
                   hi_open: bool = False) -> float:
    """A real number in [lo, hi] (or [lo, hi) when hi_open)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise EncodeError(f"{name} must be a number, got {x!r}")
    v = float(x)
    if not math.isfinite(v) or v < lo or v > hi or (hi_open and v == hi):
        bracket = ")" if hi_open else "]"
        raise EncodeError(f"{name} must be in [{lo}, {hi}{bracket}, got {x!r}")
    return v


def check_int(x: Any, name: str, lo: int, hi: int | None = None) -> int:
    """An integer in [lo, hi]; bools are rejected (True is not a bit width)."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise EncodeError(f"{name} must be an integer, got {x!r}")
    v = int(x)
    if v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise EncodeError(f"{name} must be in {rng}, got {v}")
    return v


def check_choice(x: Any, name: str, allowed: tuple[str, ...]) -> str:
    if x not in allowed:
        raise EncodeError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {x!r}")
    return x


def check_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise EncodeError(f"{name} must be a bool array (True = keep), got dtype {m.dtype}")
    if m.shape != tuple(shape):
        raise EncodeError(f"{name} shape {m.shape} does not match weight shape {tuple(shape)}")
    return m


def view2d(w: np.ndarray) -> np.ndarray:
    """The 2-D view used for block/N:M/group-wise schemes.

    rows = shape[0], cols = prod(shape[1:]) (output channels x fan-in). A 1-D array is
    treated as a single row so that N:M and group-wise schemes run along its length.
    """
    if w.ndim == 0:
        raise EncodeError("a scalar has no 2-D view; pass an array with ndim >= 1")
    if w.ndim == 1:
        return w.reshape(1, -1)
    return w.reshape(w.shape[0], -1)


def prune_lowest(saliency: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask over a flat saliency vector that drops exactly the ``k`` lowest entries.

    Equivalent to dropping ``argsort(saliency, kind="stable")[:k]`` (ties go to the lower
    index first, so results are deterministic) but O(n) via ``np.partition`` instead of a
    full sort: large layers (tens of millions of weights) stay fast.
    """
    n = saliency.size
    keep = np.ones(n, dtype=bool)
    if k <= 0:
        return keep
    if k >= n:
        keep[:] = False
        return keep
    t = np.partition(saliency, k - 1)[k - 1]
    less = saliency < t
    keep &= ~less
    need = k - int(np.count_nonzero(less))
    if need > 0:
        keep[np.flatnonzero(saliency == t)[:need]] = False
    return keep


def rounding_fn(rounding: str, seed: int | None):
    """Return f(x) -> integer-valued float array: round-half-even or seeded stochastic."""
    check_choice(rounding, "rounding", ("nearest", "stochastic"))
    if rounding == "nearest":
        return np.rint
    rng = np.random.default_rng(seed)

    def stochastic(x: np.ndarray) -> np.ndarray:
        # floor(x + u), u ~ U[0, 1): unbiased, E[result] = x.
        return np.floor(x + rng.random(np.shape(x)))

    return stochastic


def int_dtype(bits: int, signed: bool) -> np.dtype:
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    if bits <= 16:
        return np.dtype(np.int16 if signed else np.uint16)
    return np.dtype(np.int32 if signed else np.uint32)
