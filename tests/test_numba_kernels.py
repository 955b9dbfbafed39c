"""Numba kernels on kernel forms: each kernel against its plain-numpy reference and against
dense float math on the weight decoded by the file's own decoder.

Float tolerance (float32 kernels vs float64 references): rtol 1e-4, atol 1e-5. The int8
paths quantize activations per row (dynamic), so against dense float math they are held to
a relative error (||y - y_dense|| / ||y_dense||) below 2e-2; their int32 accumulators are
BIT-EXACT against the reference and their outputs match the reference to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import czmodel
from czmodel import encode as E
from czmodel.runtime import forms as F
from czmodel.runtime import numba_kernels as K
from czmodel.runtime.numba_kernels import affine as A
from czmodel.runtime.numba_kernels.conv import conv2d_reference

RTOL, ATOL = 1e-4, 1e-5
RNG = np.random.default_rng(7)


def load_form(tmp_path, node, name="w"):
    p = tmp_path / f"{name}.cz"
    czmodel.write(p, {name: node})
    f = czmodel.open(p)
    log = F.BuildLog()
    form = F.build_form(f, name, log)
    w = np.asarray(f[name], np.float32)
    return form, w.reshape(w.shape[0], -1), log


def sparse_mask(rows, cols, density, empty_rows=(), long_gaps=False):
    m = RNG.random((rows, cols)) < density
    for r in empty_rows:
        m[r] = False
    if long_gaps:                      # rows whose entries sit far apart: filler chains
        m[1] = False
        m[1, [0, cols // 2, cols - 1]] = True
        m[2] = False
        m[2, cols - 1] = True
    return m


def relidx_codebook(rows, cols, density=0.1, bits=5, gap_bits=4, **kw):
    m = sparse_mask(rows, cols, density, **kw)
    k = 1 << bits
    cent = (RNG.standard_normal(k) * 0.2).astype(np.float32)
    idx = RNG.integers(0, k, int(m.sum()))
    return E.relidx(m, E.codebook(idx, cent, bits=bits), gap_bits=gap_bits)


def affine_node(rows, cols, bits=8, axis=0, group=None, zp=False):
    lo, hi = (0, (1 << bits) - 1) if zp else (-(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1)
    q = RNG.integers(lo, hi + 1, (rows, cols))
    n = rows if axis == 0 else (rows * -(-cols // group) if group else 1)
    scale = (RNG.random(n) * 0.01 + 0.001).astype(np.float32)
    z = RNG.integers(lo, hi + 1, n) if zp else None
    return E.affine(q, scale, z, bits=bits, signed=not zp,
                    axis=axis if group is None else None, group_size=group)


def float_cases():
    r, c = 37, 300
    cb_idx = RNG.integers(0, 16, (r, c))
    return {
        "dense": E.dense((RNG.standard_normal((r, c)) * 0.1).astype(np.float32)),
        "relidx_codebook": relidx_codebook(r, c, empty_rows=(0, 5), long_gaps=True),
        "relidx_codebook_gap2": relidx_codebook(r, c, gap_bits=2, empty_rows=(3,),
                                                long_gaps=True),
        "relidx_f32": E.relidx(m := sparse_mask(r, c, 0.2, empty_rows=(4,), long_gaps=True),
                               E.dense((RNG.standard_normal(int(m.sum())) * 0.1)
                                       .astype(np.float32))),
        "relidx_f16": E.relidx(m2 := sparse_mask(r, c, 0.3),
                               E.dense((RNG.standard_normal(int(m2.sum())) * 0.1)
                                       .astype(np.float16))),
        "codebook_tensor_sum": E.codebook(cb_idx, (RNG.standard_normal(16) * 0.1)
                                          .astype(np.float32)),
        "codebook_row_lut": E.codebook(RNG.integers(0, 64, (r, 40)),
                                       (RNG.standard_normal((r, 64)) * 0.1)
                                       .astype(np.float32), axis=0),
        "codebook_row_sum": E.codebook(cb_idx, (RNG.standard_normal((r, 16)) * 0.1)
                                       .astype(np.float32), axis=0),
        "nm_2_4": E.nm(nm_mask(r, c), E.dense((RNG.standard_normal(r * c // 2) * 0.1)
                                              .astype(np.float32)), n=2, m=4),
        "svd": E.svd(E.codebook(RNG.integers(0, 8, (r, 6)), RNG.standard_normal(8)
                                .astype(np.float32) * 0.3),
                     E.dense((RNG.standard_normal((6, c)) * 0.1).astype(np.float32)),
                     (r, c)),
        "sum": E.sum_(relidx_codebook(r, c), E.dense((RNG.standard_normal((r, c)) * 0.01)
                                                      .astype(np.float32))),
    }


def nm_mask(r, c):
    keep = np.argsort(RNG.random((r * c // 4, 4)), axis=1)[:, :2]
    m = np.zeros((r * c // 4, 4), bool)
    np.put_along_axis(m, keep, True, axis=1)
    return m.reshape(r, c)


FLOAT_CASES = float_cases()


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case", list(FLOAT_CASES))
def test_float_forms(tmp_path, case, batch):
    form, w, log = load_form(tmp_path, FLOAT_CASES[case])
    assert not log.fallbacks
    assert not isinstance(form, F.DenseForm) or case == "dense"
    x = RNG.standard_normal((batch, w.shape[1])).astype(np.float32)
    y = np.asarray(K.matmul(form, x))
    assert y.shape == (batch, w.shape[0]) and y.dtype == np.float32
    np.testing.assert_allclose(y, K.matmul_reference(form, x), rtol=RTOL, atol=ATOL)
    dense = (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(y, dense, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(form.to_dense(), w)


def test_relidx_lut_paths_all_rows(tmp_path):
    """Both batch kernels on a row layout with empty rows and filler chains (gap_bits 2)."""
    form, w, _ = load_form(tmp_path, relidx_codebook(64, 129, 0.05, bits=3, gap_bits=2,
                                                     empty_rows=(0, 63), long_gaps=True))
    assert isinstance(form, F.RelidxForm) and form.uses_lut and form.fill == 3
    assert (form.gaps == 3).sum() > 20                       # filler chains present
    for b in (1, 2, 7, 33):
        x = RNG.standard_normal((b, 129)).astype(np.float32)
        np.testing.assert_allclose(K.matmul(form, x), x @ w.T, rtol=RTOL, atol=ATOL)


def test_codebook_sum_then_multiply_choice():
    from czmodel.runtime.numba_kernels.codebook import use_sum_then_multiply
    assert use_sum_then_multiply(32, 4096) and not use_sum_then_multiply(256, 784)


INT_CASES = {
    "int8_channel": dict(bits=8, axis=0),
    "int8_tensor": dict(bits=8, axis=None),
    "int4_group": dict(bits=4, axis=None, group=32),
    "int4_group_odd": dict(bits=4, axis=None, group=7),
    "uint8_zp_channel": dict(bits=8, axis=0, zp=True),
    "uint4_zp_group": dict(bits=4, axis=None, group=16, zp=True),
}


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case", list(INT_CASES))
def test_affine_int8(tmp_path, case, batch):
    form, w, log = load_form(tmp_path, affine_node(29, 150, **INT_CASES[case]))
    assert isinstance(form, F.AffineForm) and not log.fallbacks
    np.testing.assert_array_equal(form.to_dense(), w)
    x = RNG.standard_normal((batch, 150)).astype(np.float32)
    g = form.group or form.cols
    xq, sx, xsum = A.quantize(x, g, form.ngroups)
    rq, rs, rsum = A.quantize_reference(x, g, form.ngroups)
    np.testing.assert_array_equal(xq, rq)
    np.testing.assert_array_equal(sx, rs)
    np.testing.assert_array_equal(xsum, rsum)
    acc = A.affine_accumulators(form, xq)               # int32, bit-exact
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, A.affine_acc_reference(form, xq))
    y = K.matmul(form, x)
    np.testing.assert_allclose(y, A.affine_matmul_reference(form, x), rtol=1e-5, atol=1e-6)
    dense = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.linalg.norm(y - dense) / np.linalg.norm(dense) < 2e-2


def test_affine_zero_input_and_int4_unpacked(tmp_path):
    form, w, _ = load_form(tmp_path, affine_node(8, 64, bits=4, axis=None, group=16))
    assert form.q.dtype == np.int8 and form.q.min() >= -7 and form.q.max() <= 7
    y = K.matmul(form, np.zeros((3, 64), np.float32))
    np.testing.assert_array_equal(y, 0)


def test_fallback_recorded(tmp_path):
    node = E.codebook(RNG.integers(0, 4, (6, 10)), RNG.standard_normal((10, 4))
                      .astype(np.float32), axis=1)
    form, w, log = load_form(tmp_path, node)
    assert isinstance(form, F.DenseForm) and "axis 1" in form.fallback
    assert "w" in log.fallbacks
    x = RNG.standard_normal((2, 10)).astype(np.float32)
    np.testing.assert_allclose(K.matmul(form, x), x @ w.T, rtol=RTOL, atol=ATOL)
    bm = RNG.random((3, 5)) < 0.5
    blk = E.block(bm, E.dense(RNG.standard_normal(int(bm.sum()) * 4).astype(np.float32)),
                  bh=2, bw=2)
    form, _, log = load_form(tmp_path, blk, "b")
    assert isinstance(form, F.DenseForm) and "b" in log.fallbacks


def test_resident_bytes_relidx_90pct_5bit(tmp_path):
    w = RNG.laplace(size=(1536, 384)).astype(np.float32)
    m = np.abs(w) >= np.quantile(np.abs(w), 0.9)
    node = E.relidx(m, E.codebook(RNG.integers(0, 32, int(m.sum())),
                                  RNG.standard_normal(32).astype(np.float32), bits=5),
                    gap_bits=5)
    form, _, _ = load_form(tmp_path, node)
    assert isinstance(form, F.RelidxForm)
    assert form.resident_bytes <= 0.1 * w.nbytes, (form.resident_bytes, w.nbytes)


def test_row_slice(tmp_path):
    form, w, _ = load_form(tmp_path, relidx_codebook(20, 50, 0.2, long_gaps=True))
    x = RNG.standard_normal((3, 50)).astype(np.float32)
    s = form.row_slice(5, 13)
    np.testing.assert_allclose(K.matmul(s, x), x @ w[5:13].T, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- conv


def conv_node(kind, shape):
    o, cg, kh, kw = shape
    if kind == "dense":
        return E.dense((RNG.standard_normal(shape) * 0.2).astype(np.float32))
    if kind == "relidx":
        m = RNG.random(shape) < 0.3
        return E.relidx(m, E.codebook(RNG.integers(0, 16, int(m.sum())),
                                      (RNG.standard_normal(16) * 0.3).astype(np.float32)))
    if kind == "codebook":
        return E.codebook(RNG.integers(0, 8, shape), (RNG.standard_normal((o, 8)) * 0.3)
                          .astype(np.float32), axis=0)
    if kind == "affine":
        return E.affine(RNG.integers(-127, 128, shape), (RNG.random(o) * 0.005)
                        .astype(np.float32), bits=8, axis=0)
    if kind == "tucker2":
        r_in, r_out = 3, 4
        return E.tucker2(E.dense(RNG.standard_normal((r_in, cg)).astype(np.float32)),
                         E.dense((RNG.standard_normal((r_out, r_in, kh, kw)) * 0.3)
                                 .astype(np.float32)),
                         E.dense(RNG.standard_normal((o, r_out)).astype(np.float32)), shape)
    raise AssertionError(kind)


CONV_CASES = [
    # kind, (N, C, H, W), (O, kh, kw), stride, pads, dilation, group
    ("dense", (2, 3, 9, 8), (5, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ("dense", (1, 4, 11, 10), (6, 3, 2), (2, 1), (0, 1, 2, 0), (2, 1), 2),
    ("relidx", (2, 4, 8, 8), (6, 3, 3), (2, 2), (1, 0, 1, 2), (1, 2), 2),
    ("codebook", (1, 6, 7, 9), (4, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ("codebook", (1, 6, 12, 12), (12, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 3),
    ("dense", (2, 5, 10, 9), (5, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 5),     # depthwise
    ("codebook", (1, 4, 9, 9), (8, 3, 3), (2, 2), (1, 1, 0, 0), (2, 1), 4),   # dw, mult 2
    ("tucker2", (1, 5, 8, 8), (6, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ("affine", (1, 3, 12, 12), (8, 5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-g{c[6]}")
def test_conv_forms(tmp_path, case):
    kind, xs, (o, kh, kw), strides, pads, dil, group = case
    shape = (o, xs[1] // group, kh, kw)
    p = tmp_path / "c.cz"
    czmodel.write(p, {"w": conv_node(kind, shape)})
    f = czmodel.open(p)
    form = F.build_form(f, "w", conv_groups=group)
    w = np.asarray(f["w"], np.float32)
    x = RNG.standard_normal(xs).astype(np.float32)
    bias = RNG.standard_normal(o).astype(np.float32)
    y = K.conv2d(form, x, bias, (kh, kw), strides, pads, dil, group)
    ref = conv2d_reference(w, x, bias, strides, pads, dil, group)
    assert y.shape == ref.shape
    if kind == "affine":
        assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 2e-2
    else:
        np.testing.assert_allclose(y, ref, rtol=RTOL, atol=1e-4)
