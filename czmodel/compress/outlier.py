"""Outlier-aware quantization (V-Quant / value-aware quantization, Park et al. 2018).

A few large weights stretch a low-bit range so much that the bulk collapses onto a
handful of levels. Keeping the top ``fraction`` of |w| aside in fp16 (with a sparse
mask) lets the 4-bit affine range fit the bulk alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._util import as_float_array, check_fraction, prune_lowest
from .affine import dequantize_affine, quantize_affine


def split_outliers(w: np.ndarray, fraction: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Separate the ``round(fraction * n)`` largest-|w| weights (ties: earlier first).

    Returns ``(bulk, outlier_mask)``: ``bulk`` is ``w`` with the outliers set to 0,
    ``outlier_mask`` is True at outlier positions.
    """
    a = as_float_array(w)
    f = check_fraction(fraction, "fraction", hi=0.5)
    k = int(round(f * a.size))
    # "Prune" the k lowest of -|w| = the k largest |w|, with the same deterministic
    # tie rule as magnitude pruning; the pruned positions are the outliers.
    small = prune_lowest(-np.abs(a).ravel(), k)  # False at the k largest magnitudes
    mask = ~small.reshape(a.shape)
    bulk = np.where(mask, 0, a).astype(a.dtype)
    return bulk, mask


@dataclass(frozen=True)
class OutlierQuantized:
    """Bulk affine-quantized tensor plus fp16 outliers stored sparsely.

    ``outlier_values[j]`` belongs to the j-th True of ``outlier_mask`` in C order.
    The bulk ``q`` at outlier positions holds the code of 0.0 (ignored on decode).
    """

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    outlier_mask: np.ndarray
    outlier_values: np.ndarray

    def dequantize(self) -> np.ndarray:
        out = dequantize_affine(self.q, self.scale, self.zero_point, axis=self.axis)
        out[self.outlier_mask] = self.outlier_values.astype(np.float32)
        return out


def outlier_quantize(w: np.ndarray, fraction: float = 0.01, bits: int = 4,
                     axis: int | None = 0, symmetric: bool = True) -> OutlierQuantized:
    """Quantize the bulk of ``w`` with ``bits``-bit affine (per channel along ``axis``,
    or per tensor for ``None``) after removing the top-``fraction`` outliers, which are
    kept as float16. 1-D inputs fall back to per-tensor.
    """
    a = as_float_array(w)
    bulk, mask = split_outliers(a, fraction)
    ax = axis if a.ndim > 1 else None
    q, scale, zp = quantize_affine(bulk, bits=bits, symmetric=symmetric, axis=ax)
    return OutlierQuantized(q=q, scale=scale, zero_point=zp, axis=ax, outlier_mask=mask,
                            outlier_values=a[mask].astype(np.float16))
