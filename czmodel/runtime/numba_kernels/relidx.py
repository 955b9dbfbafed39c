"""Relative-index sparse rows (EIE): walk each row's gap symbols, accumulate
``w * x[col]`` where ``w`` is ``lut[idx[v]]`` (codebook values) or ``vals[v]``.

Batch 1 (``relidx_gemv``): two accumulators alternate over a row's entries (fixed order).
(A branchless 4-accumulator walk was measured: no faster here, see bench/README.)
Batch > 1 (``relidx_gemm``): x transposed (in, batch) so the innermost loop runs over the
batch, contiguous; each weight is decoded once per row walk.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from czmodel.runtime.numba_kernels._common import nchunks

U64 = np.uint64


@njit(cache=True, parallel=True, fastmath=False)
def relidx_gemv(gap_ptr, gaps, val_ptr, idx, lut, vals, use_lut, fill, rows, x, y,
                nchunk):  # pragma: no cover - compiled
    """y[r] = sum over row r's entries of w * x[col]. Two accumulators alternate over the
    row's stored entries (a0 gets entries 0, 2, 4, ...; a1 gets 1, 3, ...; y = a0 + a1).
    Unsigned indices: numba then skips negative-index wraparound code in the hot loop."""
    one = U64(1)
    fl = U64(fill)
    for t in prange(nchunk):
        r0 = t * rows // nchunk
        r1 = (t + 1) * rows // nchunk
        for r in range(r0, r1):
            j = U64(gap_ptr[r])
            j1 = U64(gap_ptr[r + 1])
            v = U64(val_ptr[r])
            p = U64(0)
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            k = 0
            while j < j1:
                g = U64(gaps[j])
                j += one
                if g == fl:
                    p += fl
                    continue
                c = p + g
                w = lut[idx[v]] if use_lut else vals[v]
                if k == 0:
                    a0 += w * x[c]
                else:
                    a1 += w * x[c]
                k ^= 1
                v += one
                p = c + one
            y[r] = a0 + a1


@njit(cache=True, parallel=True, fastmath=False)
def relidx_gemm(gap_ptr, gaps, val_ptr, idx, lut, vals, use_lut, fill, rows, xt, yt,
                nchunk):  # pragma: no cover - compiled
    """yt (rows, batch) = W @ xt; xt (cols, batch) C-contiguous: the inner loop runs over
    the batch, contiguous, each weight decoded once per row walk."""
    nb = xt.shape[1]
    one = U64(1)
    fl = U64(fill)
    for t in prange(nchunk):
        r0 = t * rows // nchunk
        r1 = (t + 1) * rows // nchunk
        acc = np.empty(nb, np.float32)
        for r in range(r0, r1):
            for b in range(nb):
                acc[b] = 0.0
            v = U64(val_ptr[r])
            p = U64(0)
            for j in range(U64(gap_ptr[r]), U64(gap_ptr[r + 1])):
                g = U64(gaps[j])
                if g == fl:
                    p += fl
                    continue
                c = p + g
                w = lut[idx[v]] if use_lut else vals[v]
                for b in range(nb):
                    acc[b] += w * xt[c, b]
                v += one
                p = c + one
            for b in range(nb):
                yt[r, b] = acc[b]


def _args(form):
    if form.uses_lut:
        return form.idx, form.lut, form.lut[:1].copy(), True
    empty_i = np.zeros(1, np.uint8)
    return empty_i, form.values[:1].copy(), form.values, False


def relidx_matmul(form, x: np.ndarray) -> np.ndarray:
    """Y = X @ W^T for X (batch, cols) f32 and a ``RelidxForm`` W."""
    idx, lut, vals, use_lut = _args(form)
    b = x.shape[0]
    if b == 1:
        xv = np.ascontiguousarray(x[0], dtype=np.float32)
        y = np.empty((1, form.rows), np.float32)
        relidx_gemv(form.gap_ptr, form.gaps, form.val_ptr, idx, lut, vals, use_lut,
                    form.fill, form.rows, xv, y[0], nchunks(form.rows))
        return y
    xt = np.ascontiguousarray(x.T, dtype=np.float32)
    yt = np.empty((form.rows, b), np.float32)
    relidx_gemm(form.gap_ptr, form.gaps, form.val_ptr, idx, lut, vals, use_lut, form.fill,
                form.rows, xt, yt, nchunks(form.rows))
    return yt.T


def relidx_matmul_reference(form, x: np.ndarray) -> np.ndarray:
    """Plain numpy: positions from the gap symbols (vectorised), then a float64 scatter-sum."""
    r, c = form.columns()
    w = form.value_array().astype(np.float64)
    x64 = x.astype(np.float64)
    out = np.zeros((x.shape[0], form.rows), np.float64)
    np.add.at(out.T, r, (w[:, None] * x64[:, c].T))
    return out.astype(np.float32)
