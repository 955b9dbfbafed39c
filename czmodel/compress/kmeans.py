"""1-D k-means weight sharing (Deep Compression, Han et al. 2016).

In one dimension every k-means cluster is an interval of the sorted values and the
boundaries are the midpoints between consecutive centroids. So after one sort each Lloyd
iteration is ``searchsorted`` of K-1 boundaries (O(K log n)) plus cluster sums from a
prefix-sum array — independent of n. The only O(n) work is the sort, the prefix sum and
the final assignment, which makes tens of millions of weights take well under a second.
"""

from __future__ import annotations

import numpy as np

from czmodel.errors import EncodeError
from czmodel.progress import progress_task

from ._util import as_float_array, check_choice, check_int, check_mask

INITS = ("linear", "forgy", "density")
_BAR_MIN_WEIGHTS = 1 << 20   # per-channel sharing of smaller tensors takes well under 1 s


def _init_centroids(xs: np.ndarray, k: int, init: str, seed: int | None) -> np.ndarray:
    n = xs.size
    if init == "linear":
        # Deep Compression's default: linear init keeps the rare large weights
        # represented, which matter more than their count suggests.
        return np.linspace(xs[0], xs[-1], k)
    if init == "density":
        # CDF quantiles: centroids crowd where the weights are dense.
        pos = np.minimum(((np.arange(k) + 0.5) / k * n).astype(np.int64), n - 1)
        return xs[pos].astype(np.float64)
    rng = np.random.default_rng(seed)
    pick = rng.choice(n, size=k, replace=n < k)
    return np.sort(xs[pick].astype(np.float64))


def _lloyd_sorted(xs: np.ndarray, c: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Lloyd iterations on sorted data; empty clusters keep their centroid.

    Keeping (instead of dropping) empty centroids leaves them inside [min, max] (all inits
    are) and preserves ascending order: a centroid's new mean lies in its own interval.
    """
    n = xs.size
    # cs[j] = sum(xs[:j + 1]) in float64 (float32 prefix sums drift). Upcast first, then
    # cumsum in place: np.cumsum(dtype=float64) on float32 input is ~5x slower.
    cs = xs.astype(np.float64)
    np.cumsum(cs, out=cs)
    span = float(xs[-1] - xs[0])
    for _ in range(max_iter):
        # Boundaries in the data's dtype: searchsorted would otherwise upcast all of xs
        # on every call. A value equal to a boundary goes up, same as _assign.
        bounds = (0.5 * (c[1:] + c[:-1])).astype(xs.dtype)
        cut = np.concatenate(([0], np.searchsorted(xs, bounds, side="left"), [n]))
        counts = np.diff(cut)
        prefix = np.where(cut > 0, cs[np.maximum(cut - 1, 0)], 0.0)
        sums = prefix[1:] - prefix[:-1]
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        # Clamp against prefix-sum rounding so centroids never leave the data range.
        np.clip(new, xs[0], xs[-1], out=new)
        shift = float(np.max(np.abs(new - c)))
        c = new
        if shift <= tol * span:
            break
    return c


def midpoints(centroids: np.ndarray) -> np.ndarray:
    """float32 decision boundaries between ascending float32 centroids.

    The assignment rule everywhere is ``searchsorted(midpoints(c), x, side="right")``:
    nearest centroid, ties (and float32 rounding of the midpoint) going upward.
    """
    c = np.asarray(centroids, dtype=np.float64)
    return (0.5 * (c[1:] + c[:-1])).astype(np.float32)


def _assign(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Cluster index = number of float32 ``bounds`` <= x (ascending), as uint8.

    ``np.searchsorted`` over unsorted data is branch-mispredict bound (~1 s for 22.7M).
    Instead a lookup table over a uniform grid of the boundary range gives a lower
    bound of the index in one gather; one or two vectorised "step up while
    bounds[idx] <= x" passes finish it. Rare leftovers fall back to searchsorted.
    """
    x = np.asarray(x, dtype=np.float32).ravel()
    nb = bounds.size
    if nb == 0:
        return np.zeros(x.size, dtype=np.uint8)
    b32 = np.asarray(bounds, dtype=np.float32)
    lo, hi = float(b32[0]), float(b32[-1])
    if x.size < 4096 or not hi > lo:
        return np.searchsorted(b32, x, side="right").astype(np.uint8)
    grid = 1 << 16
    width = (hi - lo) / grid
    cell = x - np.float32(lo)
    cell *= np.float32(1.0 / width)
    # +1 with clipping: cell 0 collects everything far below lo; one cell of slack
    # below (edge at (c-2)*width) absorbs float32 rounding, so lut[c] never overshoots.
    np.clip(cell, -1.0, grid, out=cell)
    ci = cell.astype(np.int32)
    ci += 1
    edges = lo + width * (np.arange(grid + 2, dtype=np.float64) - 2)
    lut = np.searchsorted(b32.astype(np.float64), edges, side="right").astype(np.uint8)
    idx = lut[ci]
    del cell, ci
    bp = np.concatenate((b32, [np.inf])).astype(np.float32)
    for _ in range(4):
        step = bp[idx] <= x
        if not step.any():
            return idx
        idx += step
    rest = np.flatnonzero(bp[idx] <= x)
    if rest.size:
        idx[rest] = np.searchsorted(b32, x[rest], side="right").astype(np.uint8)
    return idx


def kmeans_1d(values: np.ndarray, bits: int, init: str = "linear", max_iter: int = 300,
              tol: float = 1e-7, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``values`` into ``2**bits`` shared values.

    Returns ``(centroids, indices)``: float32 centroids sorted ascending (always exactly
    ``2**bits`` of them; empty clusters keep a centroid inside [min, max]) and uint8
    indices with the shape of ``values``. Stops when no centroid moves more than
    ``tol * (max - min)``. ``init``: "linear" | "forgy" (seeded sample) | "density".
    """
    v = as_float_array(values, "values")
    bits = check_int(bits, "bits", 1, 8)
    check_choice(init, "init", INITS)
    max_iter = check_int(max_iter, "max_iter", 1)
    if not np.isfinite(tol) or tol < 0:
        raise EncodeError(f"tol must be a finite number >= 0, got {tol!r}")
    k = 1 << bits
    xs = np.sort(v.astype(np.float32, copy=False), axis=None)
    c = _init_centroids(xs, k, init, seed)
    c = _lloyd_sorted(xs, c, max_iter, tol)
    cent = np.sort(c.astype(np.float32))
    idx = _assign(v, midpoints(cent)).reshape(v.shape)
    return cent, idx


def share_weights(w: np.ndarray, bits: int, mask: np.ndarray | None = None,
                  per_channel: bool = False, init: str = "linear",
                  seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weight sharing: ``w ~= centroids[indices]`` (per channel: ``centroids[c][indices[c]]``).

    Returns ``(indices uint8 shaped like w, centroids (K,) or (C, K))`` with
    ``K = 2**bits``, channels on axis 0 when ``per_channel``.

    With a ``mask`` (True = kept), pruned positions are excluded from clustering and
    decode to exactly 0.0: index 0 is reserved for the centroid 0.0 and the kept values
    are clustered into the remaining ``K - 1`` centroids (``centroids[..., 1:]`` sorted
    ascending; ``centroids[..., 0] == 0``). Kept weights always get indices >= 1, so a
    consumer may store only the kept indices (sparse encoding) or the dense index array
    (the zero centroid makes it exact). Without a mask, centroids are fully ascending.
    """
    a = as_float_array(w)
    bits = check_int(bits, "bits", 1, 8)
    check_choice(init, "init", INITS)
    m = None if mask is None else check_mask(mask, a.shape)
    k = 1 << bits
    if per_channel:
        if a.ndim < 1:
            raise EncodeError("per_channel needs an array with ndim >= 1")
        rows = a.reshape(a.shape[0], -1)
        mrows = None if m is None else m.reshape(a.shape[0], -1)
        idx = np.zeros(rows.shape, dtype=np.uint8)
        cents = np.zeros((rows.shape[0], k), dtype=np.float32)
        # One k-means per output channel: the long loop of per-channel sharing. A bar only
        # for big tensors, advanced every ``step`` rows (never per Lloyd iteration).
        n_rows = rows.shape[0]
        step = max(1, n_rows // 100)
        with progress_task(n_rows, desc="k-means per channel",
                           enable=None if a.size >= _BAR_MIN_WEIGHTS else False) as bar:
            for r in range(n_rows):
                idx[r], cents[r] = _share_one(rows[r], bits,
                                              None if mrows is None else mrows[r], init, seed)
                if (r + 1) % step == 0 or r + 1 == n_rows:
                    bar.advance(r + 1 - bar.n)
        return idx.reshape(a.shape), cents
    idx, cent = _share_one(a.ravel(), bits, None if m is None else m.ravel(), init, seed)
    return idx.reshape(a.shape), cent


def _share_one(v: np.ndarray, bits: int, m: np.ndarray | None, init: str,
               seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    k = 1 << bits
    if m is None:
        cent, idx = kmeans_1d(v, bits, init=init, seed=seed)
        return idx, cent
    idx = np.zeros(v.shape, dtype=np.uint8)
    cent = np.zeros(k, dtype=np.float32)
    kept = v[m]
    if kept.size == 0:
        return idx, cent
    # K-1 centroids for the kept values: not a power of two, so run Lloyd directly.
    xs = np.sort(kept.astype(np.float32, copy=False))
    c = _init_centroids(xs, k - 1, init, seed)
    c = np.sort(_lloyd_sorted(xs, c, 300, 1e-7).astype(np.float32))
    idx[m] = _assign(kept, midpoints(c)) + np.uint8(1)
    cent[1:] = c
    return idx, cent


def decode_shared(indices: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`share_weights`: look up each index in its (channel's) codebook."""
    idx = np.asarray(indices)
    c = np.asarray(centroids)
    if c.ndim == 1:
        return c[idx]
    if c.ndim != 2 or idx.ndim < 1 or c.shape[0] != idx.shape[0]:
        raise EncodeError(f"per-channel centroids {c.shape} do not match indices {idx.shape}")
    flat = idx.reshape(idx.shape[0], -1).astype(np.intp)
    return np.take_along_axis(c, flat, axis=1).reshape(idx.shape)
