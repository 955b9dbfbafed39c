"""Affine (scale + zero point) integer quantization, TFLite conventions.

Symmetric: q in [-(2**(b-1)-1), 2**(b-1)-1] (int8 uses [-127, 127]: dropping -128 keeps
the range symmetric so int8 x int8 products need no zero-point correction), zero point 0.
Asymmetric: q in [0, 2**b - 1] (uint8 etc.) with an integer zero point, so real 0 is
exactly representable (zero padding and pruned weights stay exact).

Granularity: per tensor (``axis=None``), per channel along any axis, or group-wise:
``group_size`` consecutive columns of the 2-D view (rows = shape[0], cols =
prod(shape[1:])), scale shape (rows, ceil(cols / group_size)) — the layout used by
4-bit LLM weight formats, where one scale per row is too coarse.
"""

from __future__ import annotations

import numpy as np

from czmodel.errors import EncodeError

from ._util import as_float_array, check_int, int_dtype, rounding_fn, view2d


def _grouped(a: np.ndarray, axis: int | None, group_size: int | None) -> np.ndarray:
    """Reshape to (n_scales..., elems_per_scale) views; groups padded with zeros.

    Zero padding never changes a group's range: both schemes include 0 in their range.
    """
    if group_size is not None:
        v = view2d(a)
        rows, cols = v.shape
        ng = -(-cols // group_size)
        pad = np.zeros((rows, ng * group_size), dtype=a.dtype)
        pad[:, :cols] = v
        return pad.reshape(rows, ng, group_size)
    if axis is not None:
        return np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    return a.reshape(1, -1)


def _check_layout(a_ndim: int, axis: int | None, group_size: int | None) -> int | None:
    if axis is not None and group_size is not None:
        raise EncodeError("give either axis (per-channel) or group_size (group-wise), not both")
    if group_size is not None:
        check_int(group_size, "group_size", 1)
    if axis is not None:
        axis = check_int(axis, "axis", -a_ndim if a_ndim else 0, max(a_ndim - 1, 0))
        if a_ndim == 0:
            raise EncodeError("axis given for a scalar")
        axis %= a_ndim
    return axis


def _bits_range(bits: int, symmetric: bool) -> tuple[int, int]:
    if symmetric:
        qmax = (1 << (bits - 1)) - 1
        return -qmax, qmax
    return 0, (1 << bits) - 1


def quantize_affine(w: np.ndarray, bits: int = 8, symmetric: bool = True,
                    axis: int | None = None, group_size: int | None = None,
                    rounding: str = "nearest", seed: int | None = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize ``w`` so that ``w ~= (q - zero_point) * scale``.

    Returns ``(q, scale, zero_point)``: ``q`` shaped like ``w`` (int8/int16 when
    symmetric, uint8/uint16 when asymmetric); ``scale`` float32 and ``zero_point``
    (q's dtype) both shaped ``()`` per tensor, ``(w.shape[axis],)`` per channel, or
    ``(rows, ngroups)`` group-wise. All-zero slices get scale 1 (any scale is exact).
    With "nearest" rounding, |w - dequantized| <= scale / 2 for every element.
    """
    a = as_float_array(w)
    bits = check_int(bits, "bits", 2, 16)
    axis = _check_layout(a.ndim, axis, group_size)
    rnd = rounding_fn(rounding, seed)
    qmin, qmax = _bits_range(bits, symmetric)
    g = _grouped(a.astype(np.float64), axis, group_size)
    red = g.ndim - 1
    if symmetric:
        amax = np.abs(g).max(axis=red)
        scale = (amax / qmax).astype(np.float32)
        zp = np.zeros(scale.shape, dtype=np.float64)
    else:
        lo = np.minimum(g.min(axis=red), 0.0)
        hi = np.maximum(g.max(axis=red), 0.0)
        scale = ((hi - lo) / (qmax - qmin)).astype(np.float32)
    scale[scale == 0] = 1.0
    # The float32 scale is what gets stored, so quantize with exactly that value.
    s64 = scale.astype(np.float64)
    if not symmetric:
        zp = np.clip(np.rint(qmin - lo / s64), qmin, qmax)
    q = np.clip(rnd(g / s64[..., None] + zp[..., None]), qmin, qmax)
    q = _ungroup(q, a.shape, axis, group_size)
    dt = int_dtype(bits, symmetric)
    if axis is None and group_size is None:
        scale, zp = scale.reshape(()), zp.reshape(())
    return q.astype(dt), scale, zp.astype(dt)


def _ungroup(g: np.ndarray, shape: tuple[int, ...], axis: int | None,
             group_size: int | None) -> np.ndarray:
    if group_size is not None:
        rows = g.shape[0]
        cols = int(np.prod(shape)) // rows if rows else 0
        return g.reshape(rows, -1)[:, :cols].reshape(shape)
    if axis is not None:
        moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
        return np.moveaxis(g.reshape(moved), 0, axis)
    return g.reshape(shape)


def dequantize_affine(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None,
                      axis: int | None = None, group_size: int | None = None) -> np.ndarray:
    """Exact inverse formula ``(q - zero_point) * scale`` in float32, with the same
    ``axis`` / ``group_size`` layout that :func:`quantize_affine` was given.
    ``zero_point=None`` means 0 (symmetric)."""
    qa = np.asarray(q)
    axis = _check_layout(qa.ndim, axis, group_size)
    s = np.asarray(scale, dtype=np.float32)
    z = np.zeros(s.shape, np.float32) if zero_point is None else \
        np.asarray(zero_point).astype(np.float32)
    g = _grouped(qa.astype(np.float32), axis, group_size)
    if s.shape != g.shape[:-1] or z.shape != s.shape:
        expect = g.shape[:-1] if (axis is not None or group_size is not None) else ()
        if not (s.size == 1 and z.size == 1 and expect == ()):
            raise EncodeError(f"scale {s.shape} / zero_point {z.shape} do not match the "
                              f"layout of q {qa.shape} (expected {expect})")
        s, z = s.reshape(1), z.reshape(1)
    out = (g - z[..., None]) * s[..., None]
    return _ungroup(out, qa.shape, axis, group_size).astype(np.float32)
