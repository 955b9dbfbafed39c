"""Activation range calibration for int8 (min-max, percentile, TensorRT entropy/KL).

Activations are not known at export time, so their quantization range comes from
running calibration batches. Min-max is hostage to rare outliers; TensorRT's entropy
calibration (Migacz, GTC 2017) instead picks the clipping threshold whose 128-level
quantized histogram loses the least information (smallest KL divergence).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from czmodel.errors import EncodeError
from czmodel.progress import progress

from ._util import as_float_array, check_choice, check_fraction, check_int

METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class ActivationRange:
    """int8 quantization parameters for one activation tensor.

    Symmetric (int8): ``zero_point = 0``, ``scale = threshold / 127``, ``min = -max``.
    Asymmetric (uint8): ``scale = (max - min) / 255``, integer ``zero_point`` in [0, 255].
    A degenerate (all-zero) range gets ``scale = 1``.
    """

    scale: float
    zero_point: int
    min: float
    max: float
    method: str


def _range(lo: float, hi: float, symmetric: bool, method: str) -> ActivationRange:
    if symmetric:
        t = max(abs(lo), abs(hi))
        return ActivationRange(t / 127.0 if t > 0 else 1.0, 0, -t, t, method)
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # zero must be exactly representable
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zp = int(np.clip(np.rint(-lo / scale), 0, 255))
    return ActivationRange(scale, zp, lo, hi, method)


def minmax(x: np.ndarray, symmetric: bool = True) -> ActivationRange:
    """Range covering every observed value."""
    a = as_float_array(x, "x")
    return _range(float(a.min()), float(a.max()), symmetric, "minmax")


def percentile(x: np.ndarray, p: float = 99.99, symmetric: bool = True) -> ActivationRange:
    """Clip at the ``p``-th percentile (of |x| when symmetric; both tails otherwise)."""
    a = as_float_array(x, "x").astype(np.float64).ravel()
    p = check_fraction(p, "p", lo=50.0, hi=100.0)
    if symmetric:
        t = float(np.percentile(np.abs(a), p))
        return _range(-t, t, True, "percentile")
    lo, hi = np.percentile(a, [100.0 - p, p])
    return _range(float(lo), float(hi), False, "percentile")


def entropy(x: np.ndarray, num_bins: int = 2048) -> ActivationRange:
    """One-shot TensorRT entropy calibration of a single array (symmetric int8)."""
    cal = HistogramCalibrator(num_bins=num_bins)
    cal.update(x)
    return cal.compute("entropy")


def kl_threshold_bin(hist: np.ndarray, num_quant_bins: int = 128) -> int:
    """Number of bins ``i`` (the clipping point) minimising KL(P || Q).

    For each candidate i in [num_quant_bins, len(hist)): P = hist[:i] with the outlier
    mass hist[i:] added to its last bin; Q = hist[:i] merged into ``num_quant_bins``
    levels (the last level absorbs the remainder) and spread back uniformly over the
    bins that are non-zero in P (zero bins stay zero). Q is built from the *clipped*
    histogram, so clipping costs KL through the outlier mass that Q cannot express.
    """
    h = np.asarray(hist, dtype=np.float64)
    nbins = h.size
    if nbins <= num_quant_bins:
        return nbins
    tail = np.concatenate((np.cumsum(h[::-1])[::-1], [0.0]))  # tail[i] = sum(h[i:])
    best_i, best_kl = nbins, np.inf
    for i in range(num_quant_bins, nbins):
        p = h[:i].copy()
        p[i - 1] += tail[i]
        if p.sum() == 0:
            continue
        nz = p != 0
        merged = i // num_quant_bins
        starts = np.arange(num_quant_bins) * merged
        qsum = np.add.reduceat(h[:i], starts)
        qcnt = np.add.reduceat(nz.astype(np.float64), starts)
        lengths = np.diff(np.append(starts, i))
        q = np.repeat(np.where(qcnt > 0, qsum / np.maximum(qcnt, 1), 0.0), lengths)
        q[~nz] = 0.0
        if q.sum() == 0:
            continue
        m = nz
        ps = p[m] / p.sum()
        # Q can be 0 where P is not (outliers folded into an empty last level): floor it
        # at a tiny probability so KL is large but finite instead of inf/NaN.
        qs = np.maximum(q[m] / q.sum(), 1e-12)
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i


class HistogramCalibrator:
    """Accumulates a fixed-size histogram of |x| over calibration batches.

    The range only grows. When a batch exceeds it, the bin width is multiplied by a power
    of two and old bins are merged in groups, which is exact (no re-interpolation); the
    number of bins stays ``num_bins`` as TensorRT's algorithm expects.
    """

    def __init__(self, num_bins: int = 2048, num_quant_bins: int = 128) -> None:
        self.num_bins = check_int(num_bins, "num_bins", 2)
        self.num_quant_bins = check_int(num_quant_bins, "num_quant_bins", 1)
        if self.num_bins & (self.num_bins - 1):
            raise EncodeError(f"num_bins must be a power of two (exact rebinning), got {num_bins}")
        self.hist = np.zeros(self.num_bins, dtype=np.float64)
        self.width = 0.0
        self.min = np.inf
        self.max = -np.inf

    def update(self, x: np.ndarray) -> None:
        v = as_float_array(x, "x").astype(np.float64).ravel()
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        a = np.abs(v)
        amax = float(a.max())
        if amax == 0.0 and self.width == 0.0:
            self.hist[0] += a.size
            return
        if self.width == 0.0:
            self.width = amax / self.num_bins
        while amax > self.width * self.num_bins:
            # Double the width: bins (2j, 2j+1) merge into bin j.
            merged = self.hist.reshape(-1, 2).sum(axis=1)
            self.hist[:] = 0.0
            self.hist[: merged.size] = merged
            self.width *= 2.0
        idx = np.minimum((a / self.width).astype(np.int64), self.num_bins - 1)
        self.hist += np.bincount(idx, minlength=self.num_bins)

    def compute(self, method: str = "entropy", *, p: float = 99.99,
                symmetric: bool = True) -> ActivationRange:
        """Range from everything seen so far.

        "minmax" (symmetric or asymmetric uint8 from the observed min/max),
        "percentile" (of |x|, from the histogram, upper bin edge), "entropy" (symmetric).
        """
        check_choice(method, "method", METHODS)
        if not np.isfinite(self.max):
            raise EncodeError("HistogramCalibrator.compute called before any update")
        if method == "minmax":
            return _range(self.min, self.max, symmetric, "minmax")
        if not symmetric:
            raise EncodeError(f"method {method!r} is symmetric only (histogram of |x|)")
        if self.width == 0.0:
            return _range(0.0, 0.0, True, method)
        if method == "percentile":
            p = check_fraction(p, "p", lo=50.0, hi=100.0)
            cdf = np.cumsum(self.hist) / self.hist.sum()
            i = int(np.searchsorted(cdf, p / 100.0 * (1 - 1e-12)))
            t = min((i + 1) * self.width, max(abs(self.min), abs(self.max)))
            return _range(-t, t, True, "percentile")
        i = kl_threshold_bin(self.hist, self.num_quant_bins)
        t = (i + 0.5) * self.width
        return _range(-t, t, True, "entropy")


def compute_ranges(calibrators: Mapping[str, HistogramCalibrator], method: str = "entropy", *,
                   p: float = 99.99, symmetric: bool = True) -> dict[str, ActivationRange]:
    """``HistogramCalibrator.compute`` for every activation, with a progress bar: the
    entropy (KL) search takes ~0.1-0.2 s per activation: a minute or more for the hundreds
    of activations of a transformer."""
    check_choice(method, "method", METHODS)
    with progress(calibrators.items(), total=len(calibrators),
                  desc=f"calibration ranges ({method})") as bar:
        return {k: c.compute(method, p=p, symmetric=symmetric) for k, c in bar}
