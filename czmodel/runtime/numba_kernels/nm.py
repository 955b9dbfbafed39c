"""N:M structured sparsity: n (position, value) pairs per group of m columns."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from czmodel.runtime.numba_kernels._common import nchunks

U64 = np.uint64


@njit(cache=True, parallel=True, fastmath=False)
def nm_gemm(pos, vals, n, m, rows, cols, xt, yt, nchunk):  # pragma: no cover - compiled
    """yt (rows, batch) = W @ xt, xt (cols, batch); inner loop over the batch."""
    nb = xt.shape[1]
    gpr = cols // m
    for t in prange(nchunk):
        acc = np.empty(nb, np.float32)
        for r in range(t * rows // nchunk, (t + 1) * rows // nchunk):
            for b in range(nb):
                acc[b] = 0.0
            e = U64(r * gpr * n)
            for gi in range(gpr):
                base = U64(gi * m)
                for _j in range(n):
                    w = vals[e]
                    c = base + U64(pos[e])
                    for b in range(nb):
                        acc[b] += w * xt[c, b]
                    e += U64(1)
            for b in range(nb):
                yt[r, b] = acc[b]


def nm_matmul(form, x: np.ndarray) -> np.ndarray:
    xt = np.ascontiguousarray(x.T, dtype=np.float32)
    yt = np.empty((form.rows, x.shape[0]), np.float32)
    nm_gemm(form.positions, form.values, form.n, form.m, form.rows, form.cols, xt, yt,
            nchunks(form.rows))
    return yt.T


def nm_matmul_reference(form, x: np.ndarray) -> np.ndarray:
    groups = form.rows * (form.cols // form.m)
    p = form.positions.reshape(groups, form.n).astype(np.int64)
    col = (np.arange(groups) % (form.cols // form.m))[:, None] * form.m + p
    row = np.repeat(np.arange(form.rows), (form.cols // form.m) * form.n)
    w = form.values.astype(np.float64)
    out = np.zeros((x.shape[0], form.rows), np.float64)
    np.add.at(out.T, row, w[:, None] * x.astype(np.float64)[:, col.reshape(-1)].T)
    return out.astype(np.float32)
