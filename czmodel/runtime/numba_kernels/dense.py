"""Dense float32 weights: BLAS (``np.dot``) is the right tool; nothing to beat here."""

from __future__ import annotations

import numpy as np


def dense_matmul(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Y = X @ W^T, X (batch, in) f32, W (out, in) f32."""
    return np.dot(x, w.T)


def dense_matmul_reference(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)
