"""2-D convolution (NCHW) over kernel forms: im2col (numba) then the form's GEMM kernel with
rows = output channels, per group; a direct kernel for depthwise; Tucker-2 as three convs.

The im2col matrix of one image and group is (Cg*kh*kw, OH*OW), row order (c, i, j) -- the
order of the 2-D view of a conv weight -- so ``matmul(form, cols.T)`` is the conv; for the
sparse and codebook kernels, which want x transposed, ``cols.T.T`` is ``cols`` itself, so no
copy is made either way.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, fastmath=False)
def im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, out):  # pragma: no cover - compiled
    """x (C, H, W) -> out (C*kh*kw, oh*ow)."""
    c_, h, w = x.shape
    for row in prange(c_ * kh * kw):
        c = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        o = out[row]
        for y in range(oh):
            ih = y * sh - ph + i * dh
            base = y * ow
            if ih < 0 or ih >= h:
                for xo in range(ow):
                    o[base + xo] = 0.0
                continue
            xr = x[c, ih]
            for xo in range(ow):
                iw = xo * sw - pw + j * dw
                o[base + xo] = xr[iw] if 0 <= iw < w else np.float32(0.0)


@njit(cache=True, parallel=True, fastmath=False)
def depthwise(x, taps, mult, kh, kw, sh, sw, ph, pw, dh, dw, out):  # pragma: no cover
    """x (C, H, W), taps (O = C*mult, kh*kw), out (O, oh, ow) zero-initialised.
    Sum over taps in (i, j) order per output pixel."""
    _, h, w = x.shape
    o_, oh, ow = out.shape
    for o in prange(o_):
        c = o // mult
        for i in range(kh):
            for j in range(kw):
                t = taps[o, i * kw + j]
                for y in range(oh):
                    ih = y * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    xr = x[c, ih]
                    orow = out[o, y]
                    lo = 0
                    while lo < ow and lo * sw - pw + j * dw < 0:
                        lo += 1
                    hi = ow
                    while hi > lo and (hi - 1) * sw - pw + j * dw >= w:
                        hi -= 1
                    off = j * dw - pw
                    for xo in range(lo, hi):
                        orow[xo] += t * xr[xo * sw + off]


def out_size(n: int, k: int, s: int, p0: int, p1: int, d: int) -> int:
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


def resolve_pads(auto_pad: str, pads, hw, khw, strides, dil) -> list[int]:
    """ONNX pads [top, left, bottom, right] (auto_pad resolved)."""
    if auto_pad in (None, "NOTSET"):
        return list(pads) if pads is not None else [0, 0, 0, 0]
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for n, k, s, d in zip(hw, khw, strides, dil):
        o = -(-n // s)
        total = max(0, (o - 1) * s + d * (k - 1) + 1 - n)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return begin + end


def conv2d(form, x, bias, kshape, strides, pads, dilations, group, matmul):
    """Y = conv(x, W) for x (N, C, H, W) f32 and a form of W (O, C/group, kh, kw).
    ``matmul(form, X)`` is the kernel dispatch (Y = X @ W^T)."""
    from czmodel.runtime.forms import DenseForm, LowRankForm

    n, c, h, w = x.shape
    kh, kw = kshape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    oh = out_size(h, kh, sh, pt, pb, dh)
    ow = out_size(w, kw, sw, pl, pr, dw)
    o = form.rows
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.empty((n, o, oh, ow), np.float32)
    cg = c // group
    og = o // group
    if group == c and cg == 1 and group > 1 and kh * kw > 0:
        # depthwise: the taps (O x kh*kw floats) are the whole weight; a compressed form is
        # expanded here per call (transient, a few KiB) -- see the backend README.
        taps = form.w if isinstance(form, DenseForm) else form.to_dense()
        y[:] = 0.0
        for i in range(n):
            depthwise(x[i], np.ascontiguousarray(taps, np.float32), o // c, kh, kw, sh, sw,
                      pt, pl, dh, dw, y[i])
    elif isinstance(form, LowRankForm) and form.method == "tucker2" and group == 1:
        first, core, last = form.factors
        t = conv2d(first, x, None, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, matmul)
        t = conv2d(core, t, None, kshape, strides, pads, dilations, 1, matmul)
        y = conv2d(last, t, None, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, matmul)
    else:
        forms = [form] if group == 1 else [form.row_slice(g * og, (g + 1) * og)
                                           for g in range(group)]
        pointwise = kh == kw == sh == sw == 1 and not any(pads)
        k = cg * kh * kw
        for i in range(n):
            for g, f in enumerate(forms):
                xg = x[i, g * cg:(g + 1) * cg]
                if pointwise:
                    cols = xg.reshape(cg, h * w)
                else:
                    cols = np.empty((k, oh * ow), np.float32)
                    im2col(xg, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow, cols)
                if isinstance(f, DenseForm):
                    yg = np.dot(f.w, cols)
                else:
                    yg = matmul(f, cols.T).T
                y[i, g * og:(g + 1) * og] = yg.reshape(og, oh, ow)
    if bias is not None:
        y += np.asarray(bias, np.float32).reshape(1, -1, 1, 1)
    return y


def conv2d_reference(w, x, bias, strides, pads, dilations, group):
    """Plain numpy direct convolution in float64 (dense weight w (O, C/g, kh, kw))."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    oh = out_size(h, kh, sh, pt, pb, dh)
    ow = out_size(wd, kw, sw, pl, pr, dw)
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), np.float64)
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    og = o // group
    out = np.zeros((n, o, oh, ow), np.float64)
    for g in range(group):
        wg = w[g * og:(g + 1) * og].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    if bias is not None:
        out += np.asarray(bias, np.float64).reshape(1, -1, 1, 1)
    return out.astype(np.float32)
