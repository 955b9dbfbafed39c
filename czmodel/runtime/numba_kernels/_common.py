"""Helpers shared by the kernel families."""

from __future__ import annotations

import numba
import numpy as np


def nchunks(rows: int, per_thread: int = 4) -> int:
    """How many row chunks a ``prange`` splits the output rows into: a few per thread (load
    balance for uneven sparse rows), never more than the rows, at least 1. Each chunk
    allocates its scratch once, not once per row."""
    return max(1, min(rows, numba.get_num_threads() * per_thread))


def as_f32(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float32 else x.astype(np.float32)


def transposed_padded(x: np.ndarray, pad: int) -> np.ndarray:
    """x (batch, in) -> xT (in + pad, batch), C-contiguous, the pad rows zero. The sparse
    kernels read one row past the end for a filler symbol and discard it."""
    b, n = x.shape
    xt = np.empty((n + pad, b), np.float32)
    xt[:n] = x.T
    xt[n:] = 0.0
    return xt
