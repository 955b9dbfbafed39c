"""Integer weights with DYNAMIC activation quantization: each row of X is quantized to int8
with its own scale sx = max|x| / 127 (symmetric, round half to even, clipped to +-127); the
products accumulate in int32 (exact, so the numba kernel and the numpy reference agree bit
for bit); then y = sum_g float32(acc_g - zp_g * sum_g(xq)) * scale_g, times sx.
Per-channel weights are the one-group case (group = cols). int2..int7 weights were unpacked
to a byte each at load.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from czmodel.runtime.numba_kernels._common import nchunks

U64 = np.uint64


@njit(cache=True, parallel=True, fastmath=False)
def quantize_rows(x, xq, sx, xsum, group):  # pragma: no cover - compiled
    """x (B, K) f32 (any strides) -> xq (B, K) int8, sx (B,) f32 and xsum (B, ngroups) int32
    (the per-group sums of xq, for zero-point weights)."""
    nb, k = x.shape
    ng = xsum.shape[1]
    for b in prange(nb):
        amax = np.float32(0.0)
        for c in range(k):
            a = abs(x[b, c])
            if a > amax:
                amax = a
        # exactly as the C runtime (czk_quant_row): inv = 127 / amax in float32 (not
        # 1 / (amax / 127), which can differ in the last bit and flip a .5 tie); a zero, NaN
        # or inf row quantizes to zeros with scale 0; a NaN element quantizes to 0
        ok = amax > 0 and amax <= np.float32(3.0e38)
        s = amax / np.float32(127.0) if ok else np.float32(0.0)
        inv = np.float32(127.0) / amax if ok else np.float32(0.0)
        for c in range(k):
            q = np.rint(x[b, c] * inv)
            if q != q:
                q = np.float32(0.0)
            elif q > 127.0:
                q = np.float32(127.0)
            elif q < -127.0:
                q = np.float32(-127.0)
            xq[b, c] = np.int8(q)
        sx[b] = s
        for g in range(ng):
            t = np.int32(0)
            for c in range(g * group, min(k, (g + 1) * group)):
                t = np.int32(t + np.int32(xq[b, c]))
            xsum[b, g] = t


@njit(cache=True, parallel=True, fastmath=False)
def affine_acc(q, xq, group, acc, nchunk):  # pragma: no cover - compiled
    """acc (B, rows, ngroups) int32 = the per-group integer dot products (tests, oracle)."""
    rows, k = q.shape
    nb = xq.shape[0]
    ng = acc.shape[2]
    for t in prange(nchunk):
        for r in range(t * rows // nchunk, (t + 1) * rows // nchunk):
            for b in range(nb):
                for g in range(ng):
                    s = np.int32(0)
                    for c in range(g * group, min(k, (g + 1) * group)):
                        s = np.int32(s + np.int32(q[r, c]) * np.int32(xq[b, c]))
                    acc[b, r, g] = s


@njit(cache=True, parallel=True, fastmath=False)
def affine_gemm(q, scale, zp, has_zp, group, xq, sx, xsum, y, nchunk):  # pragma: no cover
    """y (B, rows) f32. Blocks of 4 batch rows share each pass over a weight row (register
    blocking: one weight byte load feeds 4 multiply-adds)."""
    rows, k = q.shape
    nb = xq.shape[0]
    ng = scale.shape[1]
    nb4 = nb - nb % 4
    for t in prange(nchunk):
        for r in range(t * rows // nchunk, (t + 1) * rows // nchunk):
            qr = q[r]
            for b in range(0, nb4, 4):
                x0 = xq[b]
                x1 = xq[b + 1]
                x2 = xq[b + 2]
                x3 = xq[b + 3]
                y0 = np.float32(0.0)
                y1 = np.float32(0.0)
                y2 = np.float32(0.0)
                y3 = np.float32(0.0)
                for g in range(ng):
                    s0 = np.int32(0)
                    s1 = np.int32(0)
                    s2 = np.int32(0)
                    s3 = np.int32(0)
                    for c in range(U64(g * group), U64(min(k, (g + 1) * group))):
                        w = np.int32(qr[c])
                        # the casts keep the arithmetic in int32 (numba widens int32
                        # ops to int64 otherwise, halving the SIMD width)
                        s0 = np.int32(s0 + w * np.int32(x0[c]))
                        s1 = np.int32(s1 + w * np.int32(x1[c]))
                        s2 = np.int32(s2 + w * np.int32(x2[c]))
                        s3 = np.int32(s3 + w * np.int32(x3[c]))
                    sc = scale[r, g]
                    if has_zp:
                        z = zp[r, g]
                        s0 = np.int32(s0 - z * xsum[b, g])
                        s1 = np.int32(s1 - z * xsum[b + 1, g])
                        s2 = np.int32(s2 - z * xsum[b + 2, g])
                        s3 = np.int32(s3 - z * xsum[b + 3, g])
                    y0 += np.float32(s0) * sc
                    y1 += np.float32(s1) * sc
                    y2 += np.float32(s2) * sc
                    y3 += np.float32(s3) * sc
                y[b, r] = y0 * sx[b]
                y[b + 1, r] = y1 * sx[b + 1]
                y[b + 2, r] = y2 * sx[b + 2]
                y[b + 3, r] = y3 * sx[b + 3]
            for b in range(nb4, nb):
                xb = xq[b]
                yb = np.float32(0.0)
                for g in range(ng):
                    s = np.int32(0)
                    for c in range(U64(g * group), U64(min(k, (g + 1) * group))):
                        s = np.int32(s + np.int32(qr[c]) * np.int32(xb[c]))
                    if has_zp:
                        s = np.int32(s - zp[r, g] * xsum[b, g])
                    yb += np.float32(s) * scale[r, g]
                y[b, r] = yb * sx[b]


def _group(form) -> int:
    return form.group or max(form.cols, 1)


def quantize(x: np.ndarray, group: int, ngroups: int):
    b, k = x.shape
    xq = np.empty((b, k), np.int8)
    sx = np.empty(b, np.float32)
    xsum = np.empty((b, ngroups), np.int32)
    quantize_rows(x if x.dtype == np.float32 else x.astype(np.float32), xq, sx, xsum, group)
    return xq, sx, xsum


def affine_matmul(form, x: np.ndarray) -> np.ndarray:
    """Y = X @ W^T for X (batch, cols) f32 and an ``AffineForm`` W (int8 path)."""
    g = _group(form)
    xq, sx, xsum = quantize(x, g, form.ngroups)
    y = np.empty((x.shape[0], form.rows), np.float32)
    zp = form.zp if form.zp is not None else np.zeros((1, 1), np.int32)
    affine_gemm(form.q, form.scale, zp, form.zp is not None, g, xq, sx, xsum, y,
                nchunks(form.rows))
    return y


def affine_accumulators(form, xq: np.ndarray) -> np.ndarray:
    """The numba kernel's int32 per-group accumulators (B, rows, ngroups)."""
    acc = np.empty((xq.shape[0], form.rows, form.ngroups), np.int32)
    affine_acc(form.q, xq, _group(form), acc, nchunks(form.rows))
    return acc


# ----------------------------------------------------------------------------- reference


def quantize_reference(x: np.ndarray, group: int, ngroups: int):
    x = x.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        amax = (np.nanmax(np.abs(x), axis=1, initial=0.0) if x.shape[1]
                else np.zeros(x.shape[0], np.float32)).astype(np.float32)
        ok = (amax > 0) & (amax <= np.float32(3.0e38))
        s = np.where(ok, amax / np.float32(127.0), np.float32(0.0)).astype(np.float32)
        inv = np.where(ok, np.float32(127.0) / np.where(ok, amax, np.float32(1.0)),
                       np.float32(0.0)).astype(np.float32)
        t = np.rint(x * inv[:, None])
    xq = np.clip(np.nan_to_num(t, nan=0.0), -127, 127).astype(np.int8)
    pad = ngroups * group - x.shape[1]
    xs = np.pad(xq.astype(np.int32), ((0, 0), (0, pad))).reshape(x.shape[0], ngroups, group)
    return xq, s, xs.sum(axis=2).astype(np.int32)


def affine_acc_reference(form, xq: np.ndarray) -> np.ndarray:
    g = _group(form)
    pad = form.ngroups * g - form.cols
    qg = np.pad(form.q.astype(np.int64), ((0, 0), (0, pad))).reshape(form.rows, form.ngroups, g)
    xg = np.pad(xq.astype(np.int64), ((0, 0), (0, pad))).reshape(xq.shape[0], form.ngroups, g)
    return np.einsum("rgc,bgc->brg", qg, xg).astype(np.int32)


def affine_matmul_reference(form, x: np.ndarray) -> np.ndarray:
    g = _group(form)
    xq, sx, xsum = quantize_reference(x, g, form.ngroups)
    acc = affine_acc_reference(form, xq)
    if form.zp is not None:
        acc = acc - form.zp[None, :, :] * xsum[:, None, :]
    yg = acc.astype(np.float32) * form.scale[None, :, :]
    y = np.zeros((x.shape[0], form.rows), np.float32)
    for i in range(form.ngroups):                # the kernel's order: groups in sequence
        y += yg[:, :, i]
    return (y * sx[:, None]).astype(np.float32)
