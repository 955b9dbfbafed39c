"""Codebook-dense weights: uint8 indices (rows, cols) + a LUT (per tensor or per row).

Batch 1, k small relative to cols (``codebook_gemv_sum``): Deep Compression's "sum then
multiply" -- per row, add x into k bins by index (4 interleaved bin sets so repeated indices
do not serialise on one memory cell), then y = sum_t lut[t] * bins[t]: cols additions and only
k multiplications. Otherwise (``codebook_gemv_lut``): y = sum_c lut[idx] * x[c] with 4
accumulators. Batch > 1 (``codebook_gemm``): tiles of a few rows are expanded into a
per-thread scratch tile (<= 64 KiB, transient) and multiplied with BLAS.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from czmodel.runtime.numba_kernels._common import nchunks

U64 = np.uint64
TILE_BYTES = 1 << 16


@njit(cache=True, parallel=True, fastmath=False)
def codebook_gemv_sum(idx, lut, x, y, nchunk):  # pragma: no cover - compiled
    rows, cols = idx.shape
    k = lut.shape[1]
    per_row = lut.shape[0] > 1
    for t in prange(nchunk):
        r0 = t * rows // nchunk
        r1 = (t + 1) * rows // nchunk
        bins = np.empty(4 * k, np.float32)
        for r in range(r0, r1):
            for i in range(4 * k):
                bins[i] = 0.0
            row = idx[r]
            c = U64(0)
            n4 = U64(cols - cols % 4)
            kk = U64(k)
            while c < n4:
                bins[U64(row[c])] += x[c]
                bins[kk + U64(row[c + U64(1)])] += x[c + U64(1)]
                bins[U64(2) * kk + U64(row[c + U64(2)])] += x[c + U64(2)]
                bins[U64(3) * kk + U64(row[c + U64(3)])] += x[c + U64(3)]
                c += U64(4)
            while c < U64(cols):
                bins[U64(row[c])] += x[c]
                c += U64(1)
            lr = lut[r if per_row else 0]
            acc = np.float32(0.0)
            for i in range(k):
                acc += lr[i] * ((bins[i] + bins[k + i]) + (bins[2 * k + i] + bins[3 * k + i]))
            y[r] = acc


@njit(cache=True, parallel=True, fastmath=False)
def codebook_gemv_lut(idx, lut, x, y, nchunk):  # pragma: no cover - compiled
    rows, cols = idx.shape
    per_row = lut.shape[0] > 1
    for t in prange(nchunk):
        r0 = t * rows // nchunk
        r1 = (t + 1) * rows // nchunk
        for r in range(r0, r1):
            row = idx[r]
            lr = lut[r if per_row else 0]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            c = U64(0)
            n4 = U64(cols - cols % 4)
            while c < n4:
                a0 += lr[U64(row[c])] * x[c]
                a1 += lr[U64(row[c + U64(1)])] * x[c + U64(1)]
                a2 += lr[U64(row[c + U64(2)])] * x[c + U64(2)]
                a3 += lr[U64(row[c + U64(3)])] * x[c + U64(3)]
                c += U64(4)
            while c < U64(cols):
                a0 += lr[U64(row[c])] * x[c]
                c += U64(1)
            y[r] = (a0 + a1) + (a2 + a3)


@njit(cache=True, parallel=True, fastmath=False)
def codebook_gemm(idx, lut, xt, yt, tile_rows):  # pragma: no cover - compiled
    """yt (rows, batch) = W @ xt, xt (cols, batch): expand tile_rows rows, then BLAS."""
    rows, cols = idx.shape
    per_row = lut.shape[0] > 1
    ntiles = (rows + tile_rows - 1) // tile_rows
    for t in prange(ntiles):
        r0 = t * tile_rows
        r1 = min(rows, r0 + tile_rows)
        tile = np.empty((r1 - r0, cols), np.float32)
        for r in range(r0, r1):
            lr = lut[r if per_row else 0]
            row = idx[r]
            tr = tile[r - r0]
            for c in range(cols):
                tr[c] = lr[row[c]]
        yt[r0:r1] = np.dot(tile, xt)


def codebook_matmul(form, x: np.ndarray) -> np.ndarray:
    """Y = X @ W^T for X (batch, cols) f32 and a ``CodebookForm`` W."""
    b = x.shape[0]
    if b == 1:
        xv = np.ascontiguousarray(x[0], dtype=np.float32)
        y = np.empty((1, form.rows), np.float32)
        fn = codebook_gemv_sum if use_sum_then_multiply(form.k, form.cols) else \
            codebook_gemv_lut
        fn(form.idx, form.lut, xv, y[0], nchunks(form.rows))
        return y
    xt = np.ascontiguousarray(x.T, dtype=np.float32)
    yt = np.empty((form.rows, b), np.float32)
    tile_rows = max(1, min(form.rows, TILE_BYTES // max(4 * form.cols, 1)))
    codebook_gemm(form.idx, form.lut, xt, yt, tile_rows)
    return yt.T


def use_sum_then_multiply(k: int, cols: int) -> bool:
    """Sum-then-multiply pays when the k-bin epilogue is small next to the row."""
    return 16 * k <= cols


def codebook_matmul_reference(form, x: np.ndarray) -> np.ndarray:
    """Plain numpy, batch 1 as sum-then-multiply (bincount per row), else via the LUT."""
    lut = form.lut.astype(np.float64)
    x64 = x.astype(np.float64)
    out = np.empty((x.shape[0], form.rows), np.float64)
    for r in range(form.rows):
        lr = lut[r if form.per_row else 0]
        for b in range(x.shape[0]):
            bins = np.bincount(form.idx[r], weights=x64[b], minlength=form.k)
            out[b, r] = lr @ bins
    return out.astype(np.float32)
