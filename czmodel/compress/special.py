"""Special fixed-form codebooks: binary (BWN), ternary (TWN) and powers of two.

All return ``(indices uint8, centroids)`` like k-means weight sharing, so the same
indexed storage path serves them; centroids are ascending.
"""

from __future__ import annotations

import numpy as np

from czmodel.errors import EncodeError

from ._util import as_float_array, check_int


def _rows(a: np.ndarray, per_channel: bool) -> np.ndarray:
    """(C, n) rows for per-channel (axis 0) statistics, or one row for per-tensor."""
    if per_channel:
        if a.ndim < 1:
            raise EncodeError("per_channel needs an array with ndim >= 1")
        return a.reshape(a.shape[0], -1).astype(np.float64)
    return a.reshape(1, -1).astype(np.float64)


def _finish(cents: np.ndarray, per_channel: bool) -> np.ndarray:
    cents = cents.astype(np.float32)
    return cents if per_channel else cents[0]


def binary(w: np.ndarray, per_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Binary-Weight-Network codebook (Rastegari et al. 2016): ``w ~= alpha * sign(w)``.

    ``alpha = mean|w|`` minimises ||w - alpha*sign(w)||^2 for fixed signs. Index 0 is
    ``-alpha``, index 1 is ``+alpha``; zero weights take the + sign.
    Centroids: ``[-alpha, alpha]`` or ``(C, 2)`` per output channel.
    """
    a = as_float_array(w)
    rows = _rows(a, per_channel)
    alpha = np.abs(rows).mean(axis=1)
    idx = (a >= 0).astype(np.uint8)
    return idx, _finish(np.stack([-alpha, alpha], axis=1), per_channel)


def ternary(w: np.ndarray, per_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Ternary Weight Networks (Li & Liu 2016): values ``{-alpha, 0, +alpha}``.

    ``delta = 0.7 * mean|w|`` (their approximation of the optimal threshold for Gaussian
    or uniform weights) and ``alpha = mean(|w| : |w| > delta)``, the least-squares scale
    for the non-zero set. Indices 0, 1, 2 = -alpha, 0, +alpha.
    """
    a = as_float_array(w)
    rows = _rows(a, per_channel)
    absr = np.abs(rows)
    delta = 0.7 * absr.mean(axis=1, keepdims=True)
    big = absr > delta
    cnt = big.sum(axis=1)
    # All-zero rows have no weight above delta: alpha = 0 (everything decodes to 0).
    alpha = np.where(cnt > 0, (absr * big).sum(axis=1) / np.maximum(cnt, 1), 0.0)
    idx = np.where(big, np.where(rows > 0, 2, 0), 1).astype(np.uint8).reshape(a.shape)
    zeros = np.zeros_like(alpha)
    return idx, _finish(np.stack([-alpha, zeros, alpha], axis=1), per_channel)


def pow2(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Power-of-two codebook (LogNet, Miyashita et al. 2016; INQ, Zhou et al. 2017).

    Centroids are 0 and ``+-2**k`` for the ``E = 2**(bits-1) - 1`` exponents
    ``k_max, k_max-1, ..., k_max-E+1`` with ``k_max = floor(log2(max|w|))`` (the largest
    power of two not above max|w|), i.e. ``2*E + 1 = 2**bits - 1`` values — multiplies
    become shifts. Magnitudes are rounded in the log domain: ``k = round(log2|w|)``
    clamped to ``k_max``; those with ``k < k_min`` (|w| < 2**(k_min - 0.5)) become 0.
    Centroids ascending: ``[-2**k_max, ..., -2**k_min, 0, 2**k_min, ..., 2**k_max]``;
    the zero centroid is index ``E``.
    """
    a = as_float_array(w)
    bits = check_int(bits, "bits", 2, 8)
    e = (1 << (bits - 1)) - 1
    amax = float(np.max(np.abs(a)))
    # frexp is exact: amax = m * 2**ex with m in [0.5, 1) -> floor(log2 amax) = ex - 1.
    k_max = int(np.frexp(amax)[1]) - 1 if amax > 0 else 0
    k_min = k_max - e + 1
    mags = np.ldexp(1.0, np.arange(k_min, k_max + 1))  # ascending 2**k
    cents = np.concatenate([-mags[::-1], [0.0], mags]).astype(np.float32)

    absw = np.abs(a.astype(np.float64))
    with np.errstate(divide="ignore"):
        k = np.rint(np.log2(absw))  # -inf for zeros, handled by the k < k_min test
    k = np.minimum(k, k_max)
    zero = k < k_min
    kk = np.where(zero, k_min, k).astype(np.int64)
    offset = kk - k_min + 1  # 1..E for the magnitude slot
    idx = np.where(zero, e, np.where(a >= 0, e + offset, e - offset)).astype(np.uint8)
    return idx, cents
