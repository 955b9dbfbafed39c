"""Numba kernels that compute Y = X @ W^T straight from a weight's kernel form.

One file per kernel family, each with a plain-numpy ``*_reference`` beside the compiled
kernel. ``MATMUL`` is the one-row-per-form dispatch table; ``matmul(form, x)`` takes
X (batch, in) float32 (any strides) and returns Y (batch, out) float32 (possibly a
transposed view). ``conv2d`` runs a convolution over any form.
"""

from __future__ import annotations

import numpy as np

from czmodel.runtime import forms as F
from czmodel.runtime.numba_kernels.affine import affine_matmul, affine_matmul_reference
from czmodel.runtime.numba_kernels.codebook import codebook_matmul, codebook_matmul_reference
from czmodel.runtime.numba_kernels.conv import conv2d as _conv2d
from czmodel.runtime.numba_kernels.dense import dense_matmul_reference
from czmodel.runtime.numba_kernels.nm import nm_matmul, nm_matmul_reference
from czmodel.runtime.numba_kernels.relidx import relidx_matmul, relidx_matmul_reference


def _dense(form, x):
    return np.dot(x, form.w.T)


def _lowrank(form, x):
    if form.method == "svd":
        u, v = form.factors
        return matmul(u, matmul(v, x))
    # tucker2 on an im2col row layout: x (B, I*kh*kw) in (i, h, w) order
    first, core, last = form.factors
    o, i, kh, kw = form.shape
    b = x.shape[0]
    r_in = first.rows
    xi = np.ascontiguousarray(x.reshape(b, i, kh * kw).transpose(0, 2, 1)).reshape(-1, i)
    z = matmul(first, xi).reshape(b, kh * kw, r_in).transpose(0, 2, 1).reshape(b, -1)
    return matmul(last, matmul(core, np.ascontiguousarray(z)))


def _sum(form, x):
    y = np.array(matmul(form.terms[0], x), dtype=np.float32, order="C")
    for t in form.terms[1:]:
        y += matmul(t, x)
    return y


MATMUL = {
    F.DenseForm: _dense,
    F.RelidxForm: relidx_matmul,
    F.CodebookForm: codebook_matmul,
    F.AffineForm: affine_matmul,
    F.NMForm: nm_matmul,
    F.LowRankForm: _lowrank,
    F.SumForm: _sum,
}


def matmul(form: F.Form, x: np.ndarray) -> np.ndarray:
    """Y = X @ W^T, X (batch, in) float32."""
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return MATMUL[type(form)](form, x)


def conv2d(form, x, bias, kshape, strides, pads, dilations, group):
    return _conv2d(form, x, bias, kshape, strides, pads, dilations, group, matmul)


def matmul_reference(form: F.Form, x: np.ndarray) -> np.ndarray:
    """The plain-numpy reference of the kernel that ``matmul`` dispatches to."""
    ref = {F.DenseForm: lambda f, x: dense_matmul_reference(f.w, x),
           F.RelidxForm: relidx_matmul_reference, F.CodebookForm: codebook_matmul_reference,
           F.AffineForm: affine_matmul_reference, F.NMForm: nm_matmul_reference}
    if type(form) in ref:
        return ref[type(form)](form, x)
    if isinstance(form, F.SumForm):
        return sum(matmul_reference(t, x) for t in form.terms).astype(np.float32)
    if form.method == "svd":
        return matmul_reference(form.factors[0], matmul_reference(form.factors[1], x))
    return dense_matmul_reference(form.to_dense(), x)


__all__ = ["MATMUL", "matmul", "matmul_reference", "conv2d"]
