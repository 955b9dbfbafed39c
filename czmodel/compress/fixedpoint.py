"""Ristretto-style (Gysel et al. 2016) dynamic fixed point and minifloat quantization.

Dynamic fixed point: one ``bits``-wide two's-complement integer per weight with a
per-layer binary point (``frac_bits``) chosen so the layer's largest magnitude fits;
value = ``q * 2**-frac_bits``. Minifloat: a small IEEE-like float (sign, exponent,
mantissa, subnormals) that saturates at its largest finite value instead of
overflowing to inf — a clipped weight is better than an infinite one.
"""

from __future__ import annotations

import numpy as np

from czmodel.errors import EncodeError

from ._util import as_float_array, check_int, int_dtype, rounding_fn


def dynamic_fixed_point(w: np.ndarray, bits: int, rounding: str = "nearest",
                        seed: int | None = 0) -> tuple[np.ndarray, int]:
    """Quantize ``w`` to ``bits``-bit fixed point with a per-layer fraction length.

    Returns ``(q, frac_bits)``, ``q`` in [-2**(bits-1), 2**(bits-1)-1] (int8/int16), with
    ``w ~= q * 2.0**-frac_bits``. ``frac_bits`` is the largest value for which the
    rounded extreme weights still fit (Ristretto: integer length = ceil(log2 max|w|) + 1,
    refined by one so that e.g. -1.0 in 8 bits keeps 7 fraction bits). It may be negative
    (huge weights) or exceed ``bits`` (tiny weights). Values that stochastic rounding
    pushes past the range saturate.
    """
    a = as_float_array(w).astype(np.float64)
    bits = check_int(bits, "bits", 2, 16)
    rnd = rounding_fn(rounding, seed)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    hi, lo = float(a.max()), float(a.min())
    amax = max(abs(hi), abs(lo))
    if amax == 0.0:
        return np.zeros(a.shape, dtype=int_dtype(bits, True)), bits - 1
    frac = bits - 1 - int(np.ceil(np.log2(amax))) + 1  # one optimistic step, fixed below

    def fits(f: int) -> bool:
        s = 2.0 ** f
        return np.rint(hi * s) <= qmax and np.rint(lo * s) >= qmin

    while not fits(frac):
        frac -= 1
    q = np.clip(rnd(a * 2.0 ** frac), qmin, qmax).astype(int_dtype(bits, True))
    return q, frac


def dequantize_fixed(q: np.ndarray, frac_bits: int) -> np.ndarray:
    """Inverse of :func:`dynamic_fixed_point`: ``q * 2**-frac_bits`` as float32."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -int(frac_bits)).astype(np.float32)


def minifloat_max(exp_bits: int, man_bits: int, bias: int | None = None) -> float:
    """Largest finite value: the all-ones exponent is reserved as in IEEE 754."""
    if bias is None:
        bias = (1 << (exp_bits - 1)) - 1
    emax = (1 << exp_bits) - 2 - bias
    return float(np.ldexp(2.0 - 2.0 ** -man_bits, emax))


def minifloat(w: np.ndarray, exp_bits: int, man_bits: int, bias: int | None = None,
              rounding: str = "nearest", seed: int | None = 0) -> np.ndarray:
    """Round ``w`` to the nearest value of a (1, exp_bits, man_bits) minifloat.

    IEEE-like: default ``bias = 2**(exp_bits-1) - 1``, the all-ones exponent is reserved
    (so E5M10 reproduces float16 and E5M2 gives max 57344), subnormals below
    ``2**(1-bias)``, round-half-even (or seeded stochastic), saturating at
    :func:`minifloat_max`. Returns float32 values that are exactly representable.
    """
    a = as_float_array(w).astype(np.float64)
    exp_bits = check_int(exp_bits, "exp_bits", 2, 8)
    man_bits = check_int(man_bits, "man_bits", 0, 23)
    if bias is None:
        bias = (1 << (exp_bits - 1)) - 1
    bias = check_int(bias, "bias", -(1 << 10), 1 << 10)
    rnd = rounding_fn(rounding, seed)
    vmax = minifloat_max(exp_bits, man_bits, bias)
    if not np.isfinite(vmax) or vmax > np.finfo(np.float32).max:
        raise EncodeError(f"minifloat E{exp_bits}M{man_bits} with bias {bias} exceeds "
                          "float32 range")
    emin = 1 - bias
    if emin - man_bits < -149:
        raise EncodeError(f"minifloat E{exp_bits}M{man_bits} with bias {bias} has "
                          "subnormals below float32 precision")
    mag = np.abs(a)
    # Exponent of each value's leading bit (exact via frexp), floored at the subnormal
    # exponent so tiny values share the subnormal spacing 2**(emin - man_bits).
    e = np.frexp(mag)[1].astype(np.int64) - 1
    e = np.maximum(e, emin)
    ulp_exp = e - man_bits
    # Rounding may carry into the next binade (e.g. 1.99 -> 2.0); that value is
    # representable, so no renormalisation is needed before saturating.
    qm = np.ldexp(rnd(np.ldexp(mag, -ulp_exp)), ulp_exp)
    qm = np.minimum(qm, vmax)
    return np.copysign(qm, a).astype(np.float32)
