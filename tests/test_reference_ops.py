"""The reference backend, op by op, against independent expectations (hand-computed values,
direct loop implementations, adjoint identities), then whole small models written to .cz."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import czmodel
from czmodel.errors import RuntimeInputError, UnsupportedError
from czmodel.format.header import NUMPY_TO_TENSOR
from czmodel.graph import Graph, OpNode, ValueInfo
from czmodel.runtime import Executor, ReferenceBackend, load

RNG = np.random.default_rng(1234)
F = np.float32
I64_MAX = (1 << 63) - 1


def run_op(op, *inputs, n_out=1, **attrs):
    """Run one op through the Executor (graph inputs for every non-None input)."""
    names = [f"in{k}" if x is not None else "" for k, x in enumerate(inputs)]
    outs = [f"out{k}" for k in range(n_out)]
    g = Graph([ValueInfo(n, NUMPY_TO_TENSOR[np.asarray(x).dtype], list(np.shape(x)))
               for n, x in zip(names, inputs) if n],
              [ValueInfo(o, "f32", []) for o in outs],
              [OpNode(op, "n0", names, outs, attrs)])
    res = Executor(g, {}, ReferenceBackend()).run(
        {n: np.asarray(x) for n, x in zip(names, inputs) if n})
    return [res[o] for o in outs] if n_out > 1 else res["out0"]


def rand(*shape):
    return RNG.standard_normal(shape).astype(F)


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------- convolution
def conv_loops(x, w, b, stride, pads, dil, group):
    """The 7-loop definition of 2-D cross-correlation with zero padding."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    oh = (h + pads[0] + pads[2] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (wd + pads[1] + pads[3] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    y = np.zeros((n, m, oh, ow))
    mg = m // group
    for b_, o, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        g = o // mg
        acc = 0.0
        for ci, ki, kj in itertools.product(range(cg), range(kh), range(kw)):
            r = i * stride[0] - pads[0] + ki * dil[0]
            s = j * stride[1] - pads[1] + kj * dil[1]
            if 0 <= r < h and 0 <= s < wd:
                acc += float(x[b_, g * cg + ci, r, s]) * float(w[o, ci, ki, kj])
        y[b_, o, i, j] = acc + (0.0 if b is None else float(b[o]))
    return y


CONV_CASES = [  # (C, M, H, W, k, stride, pads, dilation, group)
    (3, 4, 6, 7, 3, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (3, 4, 7, 6, 3, (2, 1), (1, 0, 2, 1), (1, 1), 1),
    (4, 6, 8, 8, 3, (1, 2), (1, 1, 1, 1), (2, 1), 2),
    (5, 5, 6, 6, 3, (1, 1), (1, 1, 1, 1), (1, 1), 5),      # depthwise
    (4, 8, 7, 7, 3, (2, 2), (1, 1, 1, 1), (1, 1), 4),      # depthwise, multiplier 2
    (2, 3, 9, 9, 2, (3, 3), (0, 0, 0, 0), (3, 2), 1),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_vs_loops(case):
    c, m, h, wd, k, s, p, d, g = case
    x, w, b = rand(2, c, h, wd), rand(m, c // g, k, k), rand(m)
    y = run_op("Conv", x, w, b, strides=list(s), pads=list(p), dilations=list(d), group=g)
    close(y, conv_loops(x, w, b, s, p, d, g), rtol=1e-4)
    y2 = run_op("Conv", x, w, strides=list(s), pads=list(p), dilations=list(d), group=g,
                kernel_shape=[k, k])
    close(y2, conv_loops(x, w, None, s, p, d, g), rtol=1e-4)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv_auto_pad(auto_pad, stride):
    x, w = rand(1, 2, 7, 8), rand(3, 2, 4, 3)
    y = run_op("Conv", x, w, auto_pad=auto_pad, strides=[stride, stride])
    pads = []
    for n, k in ((7, 4), (8, 3)):
        if auto_pad == "VALID":
            pads.append((0, 0))
            continue
        out = math.ceil(n / stride)
        total = max(0, (out - 1) * stride + k - n)
        lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        pads.append((lo, total - lo))
    p = (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
    want = conv_loops(x, w, None, (stride, stride), p, (1, 1), 1)
    if auto_pad != "VALID":
        assert y.shape[2:] == (math.ceil(7 / stride), math.ceil(8 / stride))
    close(y, want, rtol=1e-4)


def test_conv_errors():
    with pytest.raises(RuntimeInputError, match="'n0' \\(Conv\\)"):
        run_op("Conv", rand(1, 3, 5, 5), rand(4, 2, 3, 3))
    with pytest.raises(UnsupportedError, match="2-D"):
        run_op("Conv", rand(1, 3, 5), rand(4, 3, 3))


@pytest.mark.parametrize("case", [
    # C(conv in)=ConvT out, M = ConvT in, H, W, k, stride, pads, dilation, group
    (3, 4, 7, 7, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
    (2, 3, 8, 6, 3, (2, 3), (0, 1, 2, 0), (1, 1), 1),
    (4, 4, 6, 6, 3, (1, 1), (1, 1, 1, 1), (2, 2), 4),
    (4, 6, 9, 9, 2, (3, 2), (0, 0, 1, 1), (1, 2), 2),
])
def test_conv_transpose_is_adjoint_of_conv(case):
    """<Conv(x), y> == <x, ConvTranspose(y)> with the same weights and geometry."""
    c, m, h, wd, k, s, p, d, g = case
    w = rand(m, c // g, k, k)
    x = rand(2, c, h, wd)
    cx = run_op("Conv", x, w, strides=list(s), pads=list(p), dilations=list(d), group=g)
    y = rand(*cx.shape)
    # ConvTranspose output size s*(in-1)+keff+op-pads: output_padding recovers the input size
    keff = [(k - 1) * d[0] + 1, (k - 1) * d[1] + 1]
    op_ = [h - (s[0] * (cx.shape[2] - 1) + keff[0] - p[0] - p[2]),
           wd - (s[1] * (cx.shape[3] - 1) + keff[1] - p[1] - p[3])]
    ty = run_op("ConvTranspose", y, w, strides=list(s), pads=list(p), dilations=list(d),
                group=g, output_padding=op_)
    assert ty.shape == x.shape
    lhs = np.vdot(cx.astype(np.float64), y.astype(np.float64))
    rhs = np.vdot(x.astype(np.float64), ty.astype(np.float64))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


def test_conv_transpose_hand():
    x = np.array([[[[1, 2], [3, 4]]]], F)
    w = np.ones((1, 2, 2, 2), F)
    w[0, 1] *= 10
    y = run_op("ConvTranspose", x, w, np.array([0.5, 0], F), strides=[2, 2])
    want0 = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], F) + 0.5
    close(y[0, 0], want0)
    close(y[0, 1], (want0 - 0.5) * 10)
    y = run_op("ConvTranspose", x, np.ones((1, 1, 3, 3), F))   # stride 1 = full conv
    close(y[0, 0], [[1, 3, 3, 2], [4, 10, 10, 6], [4, 10, 10, 6], [3, 7, 7, 4]])


def test_conv_transpose_unsupported_attrs():
    with pytest.raises(UnsupportedError, match="output_shape"):
        run_op("ConvTranspose", rand(1, 1, 2, 2), rand(1, 1, 2, 2), output_shape=[4, 4])
    with pytest.raises(UnsupportedError, match="auto_pad"):
        run_op("ConvTranspose", rand(1, 1, 2, 2), rand(1, 1, 2, 2), auto_pad="SAME_UPPER")


# ---------------------------------------------------------------------------- pooling
def pool_loops(x, kind, k, s, p, ceil, include_pad=0, d=(1, 1)):
    n, c, h, w = x.shape
    outs = []
    for ax, size in enumerate((h, w)):
        keff = (k[ax] - 1) * d[ax] + 1
        span = size + p[ax] + p[ax + 2] - keff
        o = (math.ceil(span / s[ax]) if ceil else span // s[ax]) + 1
        if ceil and (o - 1) * s[ax] >= size + p[ax]:
            o -= 1
        outs.append(o)
    y = np.zeros((n, c) + tuple(outs))
    for i, j in itertools.product(range(outs[0]), range(outs[1])):
        rows = [i * s[0] - p[0] + a * d[0] for a in range(k[0])]
        cols = [j * s[1] - p[1] + b * d[1] for b in range(k[1])]
        vals, cnt = [], 0
        for r, q in itertools.product(rows, cols):
            if 0 <= r < h and 0 <= q < w:
                vals.append(x[:, :, r, q].astype(np.float64))
            if -p[0] <= r < h + p[2] and -p[1] <= q < w + p[3]:
                cnt += 1
        if kind == "max":
            y[:, :, i, j] = np.max(vals, axis=0)
        else:
            y[:, :, i, j] = np.sum(vals, axis=0) / (cnt if include_pad else len(vals))
    return y


@pytest.mark.parametrize("h,w,k,s,p,ceil", [
    (6, 6, (2, 2), (2, 2), (0, 0, 0, 0), 0),
    (5, 7, (3, 3), (2, 2), (1, 1, 1, 1), 0),
    (5, 7, (3, 2), (2, 3), (1, 0, 1, 1), 1),
    (5, 5, (2, 2), (2, 2), (1, 1, 1, 1), 1),     # ceil would add a window in the pad: dropped
    (7, 6, (3, 3), (3, 2), (0, 0, 0, 0), 1),
])
def test_pools_vs_loops(h, w, k, s, p, ceil):
    x = rand(2, 3, h, w)
    kw = dict(kernel_shape=list(k), strides=list(s), pads=list(p), ceil_mode=ceil)
    close(run_op("MaxPool", x, **kw), pool_loops(x, "max", k, s, p, ceil))
    close(run_op("AveragePool", x, **kw), pool_loops(x, "avg", k, s, p, ceil))
    close(run_op("AveragePool", x, count_include_pad=1, **kw),
          pool_loops(x, "avg", k, s, p, ceil, include_pad=1))


def test_maxpool_dilation_and_hand_values():
    x = rand(1, 2, 7, 7)
    close(run_op("MaxPool", x, kernel_shape=[2, 2], dilations=[2, 2], strides=[1, 1]),
          pool_loops(x, "max", (2, 2), (1, 1), (0, 0, 0, 0), 0, d=(2, 2)))
    x = np.arange(25, dtype=F).reshape(1, 1, 5, 5)
    y = run_op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    close(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])
    y = run_op("AveragePool", x, kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
    close(y[0, 0], [[3, 5, 6.5], [13, 15, 16.5], [20.5, 22.5, 24]])
    y = run_op("MaxPool", x, kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2])
    close(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]])


def test_global_pools_and_batchnorm():
    x = rand(2, 3, 4, 5)
    close(run_op("GlobalAveragePool", x), x.mean(axis=(2, 3), keepdims=True))
    close(run_op("GlobalMaxPool", x), x.max(axis=(2, 3), keepdims=True))
    sc, b, mu, var = rand(3), rand(3), rand(3), np.abs(rand(3)) + 0.1
    y = run_op("BatchNormalization", x, sc, b, mu, var, epsilon=1e-3)
    for c in range(3):
        close(y[:, c], (x[:, c] - mu[c]) / np.sqrt(var[c] + 1e-3) * sc[c] + b[c])


# ---------------------------------------------------------------------------- GEMM family
def test_gemm_matmul_linear():
    a, b, c = rand(4, 3), rand(5, 4), rand(5)
    close(run_op("Gemm", a, b, c, transA=1, transB=1, alpha=0.5, beta=2.0),
          0.5 * a.T.astype(np.float64) @ b.T + 2.0 * c, rtol=1e-5)
    close(run_op("Gemm", a.T.copy(), b.T.copy()), a.T.astype(np.float64) @ b.T)
    x, y = rand(2, 1, 3, 4), rand(5, 4, 2)
    close(run_op("MatMul", x, y), np.matmul(x.astype(np.float64), y))
    close(run_op("MatMul", rand(4), rand(4)).shape, ())
    close(run_op("MatMul", np.arange(6).reshape(2, 3), np.arange(3)), [5, 14])
    x, w, bias = rand(2, 3, 6), rand(4, 6), rand(4)
    want = np.einsum("abi,oi->abo", x.astype(np.float64), w) + bias
    close(run_op("Linear", x, w, bias), want)
    close(run_op("Linear", x, w), want - bias)
    with pytest.raises(RuntimeInputError, match="Linear"):
        run_op("Linear", x, rand(4, 5))


# ---------------------------------------------------------------------------- elementwise
def test_binary_broadcasting():
    a, b = rand(2, 1, 4), rand(3, 1)
    for op, fn in (("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply),
                   ("Div", np.divide)):
        close(run_op(op, a, b), fn(a, b))
    close(run_op("Pow", np.abs(a), b), np.abs(a).astype(np.float64) ** b, rtol=1e-5)
    close(run_op("Pow", np.array([2.0, -3.0], F), np.array(2, np.int64)), [4, 9])
    close(run_op("Sqrt", np.abs(a)), np.sqrt(np.abs(a)))
    q = run_op("Div", np.array([-7, 7, -6, 5], np.int64), np.array([2, -2, 3, 5], np.int64))
    assert q.dtype == np.int64 and q.tolist() == [-3, -3, -2, 1]
    s = run_op("Add", np.array([1, 2], np.int32), np.array([3], np.int32))
    assert s.dtype == np.int32 and s.tolist() == [4, 5]
    with pytest.raises(RuntimeInputError, match="division by zero"):
        run_op("Div", np.array([1], np.int64), np.array([0], np.int64))
    with pytest.raises(RuntimeInputError, match="dtypes differ"):
        run_op("Add", np.array([1], np.int64), np.array([1.0], F))


def test_unary_activations():
    x = np.array([-4, -3, -1.5, -0.5, 0, 0.25, 1, 3, 4], F)
    close(run_op("Relu", x), [max(v, 0) for v in x])
    close(run_op("Sigmoid", x), [1 / (1 + math.exp(-v)) for v in x])
    close(run_op("Tanh", x), [math.tanh(v) for v in x])
    close(run_op("Erf", x), [math.erf(v) for v in x])
    close(run_op("Exp", x), [math.exp(v) for v in x])
    close(run_op("Log", np.abs(x) + 1), [math.log(abs(v) + 1) for v in x])
    close(run_op("Neg", x), -x)
    close(run_op("Abs", x), np.abs(x))
    close(run_op("HardSigmoid", x, alpha=0.25, beta=0.4),
          [min(1, max(0, 0.25 * v + 0.4)) for v in x])
    close(run_op("HardSwish", x), [v * min(1, max(0, v / 6 + 0.5)) for v in x])
    close(run_op("HardSwish", np.array([-3, 3, 1], F)), [0, 3, 2 / 3])
    close(run_op("Gelu", x), [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    close(run_op("Gelu", x, approximate="tanh"),
          [0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
           for v in x])
    close(run_op("LeakyRelu", x, alpha=0.1), [v if v >= 0 else 0.1 * v for v in x])
    assert run_op("Relu", np.array([-2, 3], np.int64)).tolist() == [0, 3]


def test_clip():
    x = np.array([-2, -0.5, 0.5, 2], F)
    close(run_op("Clip", x, np.array(-1, F), np.array(1, F)), [-1, -0.5, 0.5, 1])
    close(run_op("Clip", x, None, np.array(0, F)), [-2, -0.5, 0, 0])
    close(run_op("Clip", x, np.array(0, F)), [0, 0, 0.5, 2])
    close(run_op("Clip", x), x)
    close(run_op("Clip", x, np.array(1, F), np.array(0, F)), [0, 0, 0, 0])  # min > max -> max
    assert run_op("Clip", np.array([-5, 5], np.int64), np.array(0, np.int64)).tolist() == [0, 5]


def test_softmax_layernorm():
    x = rand(2, 3, 5)
    for axis in (-1, 1, 0):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        close(run_op("Softmax", x, axis=axis), e / e.sum(axis=axis, keepdims=True))
    sc, b = rand(3, 5), rand(5)
    y = run_op("LayerNormalization", x, sc, b, axis=-2, epsilon=1e-3)
    for i in range(2):
        v = x[i].astype(np.float64)
        close(y[i], (v - v.mean()) / np.sqrt(v.var() + 1e-3) * sc + b, rtol=1e-4)
    y = run_op("LayerNormalization", x, rand(5)[0:1].repeat(5))
    close(y.mean(axis=-1), 0, atol=1e-5)


def test_comparisons_where_not():
    a, b = np.array([1, 2, 3], np.int64), np.array([[2], [3]], np.int64)
    assert run_op("Equal", a, b).tolist() == [[False, True, False], [False, False, True]]
    assert run_op("Less", a, b).tolist() == [[True, False, False], [True, True, False]]
    assert run_op("Greater", a, b).tolist() == [[False, False, True], [False, False, False]]
    assert run_op("Not", np.array([True, False])).tolist() == [False, True]
    y = run_op("Where", np.array([[True], [False]]), np.array([1.0, 2.0], F), np.array(9.0, F))
    close(y, [[1, 2], [9, 9]])


# ---------------------------------------------------------------------------- reductions
def test_reductions():
    x = rand(2, 3, 4)
    close(run_op("ReduceMean", x, axes=[1, -1]), x.mean(axis=(1, 2), keepdims=True))
    close(run_op("ReduceMean", x, np.array([0], np.int64), keepdims=0), x.mean(axis=0))
    close(run_op("ReduceMean", x), x.mean(keepdims=True))
    close(run_op("ReduceSum", x, np.array([], np.int64), noop_with_empty_axes=1), x)
    close(run_op("ReduceSum", x, np.array([2], np.int64)), x.sum(axis=2, keepdims=True))
    close(run_op("ReduceMax", x, axes=[0], keepdims=0), x.max(axis=0))
    s = run_op("ReduceSum", np.array([[1, 2], [3, 4]], np.int32), axes=[1], keepdims=0)
    assert s.dtype == np.int32 and s.tolist() == [3, 7]
    a = run_op("ArgMax", np.array([[1, 3, 3], [5, 0, 5]], F), axis=1)
    assert a.dtype == np.int64 and a.tolist() == [[1], [0]]
    a = run_op("ArgMax", np.array([[1, 3, 3], [5, 0, 5]], F), axis=1, select_last_index=1,
               keepdims=0)
    assert a.tolist() == [2, 2]
    with pytest.raises(RuntimeInputError, match="out of range"):
        run_op("ReduceSum", x, axes=[3])


# ---------------------------------------------------------------------------- data movement
def test_concat_split():
    a, b = rand(2, 3), rand(2, 1)
    close(run_op("Concat", a, b, axis=-1), np.concatenate([a, b], 1))
    x = np.arange(10, dtype=F)
    p = run_op("Split", x, np.array([3, 7], np.int64), n_out=2)
    assert [v.tolist() for v in p] == [[0, 1, 2], [3, 4, 5, 6, 7, 8, 9]]
    p = run_op("Split", x, n_out=4, num_outputs=4)
    assert [len(v) for v in p] == [3, 3, 3, 1]
    p = run_op("Split", x.reshape(2, 5), n_out=5, axis=1)
    assert all(v.shape == (2, 1) for v in p)
    with pytest.raises(RuntimeInputError):
        run_op("Split", x, np.array([3, 3], np.int64), n_out=2)


@pytest.mark.parametrize("start,end,step", [
    (0, 10, 1), (2, -2, 3), (-1, -I64_MAX, -1), (8, 1, -2), (100, 0, -1), (-100, 100, 1),
    (5, 5, 1), (3, -12, -1), (9, -1, -1), (-3, I64_MAX, 1)])
def test_slice_vs_python(start, end, step):
    x = np.arange(10, dtype=np.int64)
    want = _onnx_slice_indices(start, end, step, 10)
    y = run_op("Slice", x, np.array([start]), np.array([end]), np.array([0]),
               np.array([step]))
    assert y.tolist() == want


def _onnx_slice_indices(st, en, sp, n):
    """The ONNX Slice rule as an explicit index list (no Python slice semantics)."""
    st = st + n if st < 0 else st
    en = en + n if en < 0 else en
    if sp > 0:
        st, en = min(max(st, 0), n), min(max(en, 0), n)
    else:
        st, en = min(max(st, 0), n - 1), min(max(en, -1), n - 1)
    out, i = [], st
    while (i < en) if sp > 0 else (i > en):
        out.append(i)
        i += sp
    return out


def test_slice_multi_axis():
    x = rand(4, 5, 6)
    y = run_op("Slice", x, np.array([1, -1], np.int64), np.array([3, 0], np.int64),
               np.array([2, 0], np.int64), np.array([2, -2], np.int64))
    close(y, x[3:0:-2, :, 1:3:2])
    close(run_op("Slice", x, np.array([1], np.int32), np.array([3], np.int32)), x[1:3])


def test_shape_ops():
    x = rand(2, 3, 4)
    assert run_op("Reshape", x, np.array([0, -1], np.int64)).shape == (2, 12)
    assert run_op("Reshape", x, np.array([4, 0, 2], np.int64)).shape == (4, 3, 2)
    z = np.zeros((0, 3), F)
    assert run_op("Reshape", z, np.array([3, 0], np.int64), allowzero=1).shape == (3, 0)
    with pytest.raises(RuntimeInputError):
        run_op("Reshape", x, np.array([5, -1], np.int64))
    assert run_op("Flatten", x).shape == (2, 12)
    assert run_op("Flatten", x, axis=0).shape == (1, 24)
    assert run_op("Flatten", x, axis=-1).shape == (6, 4)
    close(run_op("Transpose", x, perm=[1, 2, 0]), x.transpose(1, 2, 0))
    close(run_op("Transpose", x), x.T)
    y = rand(1, 3, 1)
    assert run_op("Squeeze", y).shape == (3,)
    assert run_op("Squeeze", y, np.array([-1], np.int64)).shape == (1, 3)
    assert run_op("Unsqueeze", x, np.array([0, -1], np.int64)).shape == (1, 2, 3, 4, 1)
    assert run_op("Unsqueeze", x, np.array([1, 3], np.int64)).shape == (2, 1, 3, 1, 4)
    with pytest.raises(RuntimeInputError):
        run_op("Squeeze", x, np.array([0], np.int64))
    s = run_op("Shape", x)
    assert s.dtype == np.int64 and s.tolist() == [2, 3, 4]
    assert run_op("Shape", x, start=-2).tolist() == [3, 4]
    assert run_op("Shape", x, start=1, end=-1).tolist() == [3]
    assert run_op("Identity", x) is not None


def test_gather():
    x = np.arange(12, dtype=F).reshape(3, 4)
    close(run_op("Gather", x, np.array([-1, 0], np.int64)), x[[2, 0]])
    close(run_op("Gather", x, np.array([[1, -1]], np.int32), axis=1), x[:, [[1, 3]]])
    assert run_op("Gather", x, np.array(1, np.int64)).shape == (4,)
    with pytest.raises(RuntimeInputError, match="out of range"):
        run_op("Gather", x, np.array([3], np.int64))


def test_expand_tile_pad_range_constant_of_shape():
    x = np.array([[1], [2]], F)
    close(run_op("Expand", x, np.array([2, 1, 3], np.int64)), np.ones((2, 2, 3)) * x)
    close(run_op("Tile", x, np.array([2, 2], np.int64)), [[1, 1], [2, 2], [1, 1], [2, 2]])
    p = run_op("Pad", np.array([[1, 2], [3, 4]], F), np.array([1, 0, 0, 2], np.int64),
               np.array(9, F))
    close(p, [[9, 9, 9, 9], [1, 2, 9, 9], [3, 4, 9, 9]])
    p = run_op("Pad", np.arange(5, dtype=np.int64), np.array([-1, 2], np.int64))
    assert p.tolist() == [1, 2, 3, 4, 0, 0]
    p = run_op("Pad", np.ones((2, 2), F), np.array([1, 1], np.int64), None,
               np.array([1], np.int64))
    assert p.shape == (2, 4)
    r = run_op("Range", np.array(0, np.int64), np.array(10, np.int64), np.array(3, np.int64))
    assert r.dtype == np.int64 and r.tolist() == [0, 3, 6, 9]
    r = run_op("Range", np.array(10, np.int32), np.array(4, np.int32), np.array(-2, np.int32))
    assert r.dtype == np.int32 and r.tolist() == [10, 8, 6]
    close(run_op("Range", np.array(1, F), np.array(2, F), np.array(0.25, F)),
          [1, 1.25, 1.5, 1.75])
    c = run_op("ConstantOfShape", np.array([2, 3], np.int64), value=7.0, dtype="i32")
    assert c.dtype == np.int32 and c.tolist() == [[7] * 3] * 2
    assert run_op("ConstantOfShape", np.array([2], np.int64)).dtype == np.float32


def test_cast():
    x = np.array([-2.7, -0.5, 0.5, 2.7, np.nan, 1e10, -1e10, np.inf], F)
    assert run_op("Cast", x, to="i32").tolist() == [-2, 0, 0, 2, 0, 2**31 - 1, -2**31,
                                                    2**31 - 1]
    assert run_op("Cast", x, to="u8").tolist() == [0, 0, 0, 2, 0, 255, 0, 255]
    big = run_op("Cast", np.array([1e30, -1e30], np.float64), to="i64")
    assert big.tolist() == [I64_MAX, -I64_MAX - 1]
    assert run_op("Cast", np.array([0.0, -0.0, 2.0], F), to="bool").tolist() == [0, 0, 1]
    h = run_op("Cast", np.array([1 / 3, 70000], F), to="f16")
    assert h.dtype == np.float16 and h[0] == np.float16(1 / 3) and np.isinf(h[1])
    assert run_op("Cast", np.array([300, -1], np.int64), to="u8").tolist() == [44, 255]
    assert run_op("Cast", np.array([True, False]), to="f32").tolist() == [1.0, 0.0]


# ---------------------------------------------------------------------------- resize
S = np.array
X22 = np.array([[[[1, 2], [3, 4]]]], F)
X24 = np.array([[[[1, 2, 3, 4], [5, 6, 7, 8]]]], F)


def test_resize_onnx_examples():
    # the examples of the ONNX Resize operator documentation
    y = run_op("Resize", X22, None, S([1, 1, 2, 2], F), mode="linear")
    close(y[0, 0], [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5],
                    [3, 3.25, 3.75, 4]])
    y = run_op("Resize", X22, None, S([1, 1, 2, 2], F), mode="linear",
               coordinate_transformation_mode="align_corners")
    close(y[0, 0], np.array([[1, 4 / 3, 5 / 3, 2], [5 / 3, 2, 7 / 3, 8 / 3],
                             [7 / 3, 8 / 3, 3, 10 / 3], [3, 10 / 3, 11 / 3, 4]]))
    y = run_op("Resize", X22, None, S([1, 1, 2, 3], F), mode="nearest")
    close(y[0, 0], [[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2], [3, 3, 3, 4, 4, 4],
                    [3, 3, 3, 4, 4, 4]])
    y = run_op("Resize", X24, None, S([1, 1, 0.6, 0.6], F), mode="nearest")
    close(y[0, 0], [[1, 3]])
    y = run_op("Resize", X24, None, S([1, 1, 0.6, 0.6], F), mode="linear")
    close(y[0, 0], [[2.6666665, 4.3333331]])
    x16 = np.arange(1, 17, dtype=F).reshape(1, 1, 4, 4)
    y = run_op("Resize", x16, None, None, S([1, 1, 3, 1], np.int64), mode="linear",
               coordinate_transformation_mode="pytorch_half_pixel")
    close(y[0, 0, :, 0], [1.6666666, 7, 12.333333])
    y = run_op("Resize", X22, None, None, S([1, 1, 3, 3], np.int64), mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    close(y[0, 0], [[1, 1, 2], [1, 1, 2], [3, 3, 4]])


def test_resize_nearest_modes_and_asymmetric():
    x = np.arange(4, dtype=F).reshape(1, 1, 1, 4)
    # 4 -> 8 with asymmetric: source coordinate = i / 2 (ties at .5)
    for mode, want in (("round_prefer_floor", [0, 0, 1, 1, 2, 2, 3, 3]),
                       ("round_prefer_ceil", [0, 1, 1, 2, 2, 3, 3, 3]),
                       ("floor", [0, 0, 1, 1, 2, 2, 3, 3]),
                       ("ceil", [0, 1, 1, 2, 2, 3, 3, 3])):
        y = run_op("Resize", x, None, S([1, 1, 1, 2], F), mode="nearest", nearest_mode=mode,
                   coordinate_transformation_mode="asymmetric")
        assert y[0, 0, 0].tolist() == want, mode
    u = run_op("Resize", np.arange(4, dtype=np.uint8).reshape(1, 1, 2, 2), None,
               S([1, 1, 2, 2], F))
    assert u.dtype == np.uint8 and u.shape == (1, 1, 4, 4)
    y = run_op("Resize", X22, None, np.zeros(0, F), S([1, 1, 3, 3], np.int64))  # empty scales
    assert y.shape == (1, 1, 3, 3)
    with pytest.raises(RuntimeInputError, match="mutually exclusive"):
        run_op("Resize", X22, None, S([1, 1, 2, 2], F), S([1, 1, 3, 3], np.int64))


# ---------------------------------------------------------------------------- quantization
def test_quantize_round_half_even_and_saturate():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 300, -300], F)
    q = run_op("QuantizeLinear", x, np.array(1.0, F), np.array(0, np.int8))
    assert q.dtype == np.int8 and q.tolist() == [0, 2, 2, 0, -2, -2, 127, -128]
    q = run_op("QuantizeLinear", x, np.array(1.0, F))
    assert q.dtype == np.uint8 and q.tolist() == [0, 2, 2, 0, 0, 0, 255, 0]
    q = run_op("QuantizeLinear", np.array([1.0, 2.0, 3.0], F), np.array(0.5, F),
               np.array(128, np.uint8))
    assert q.tolist() == [130, 132, 134]
    # per-axis
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], F)
    s, z = np.array([1.0, 0.5, 2.0], F), np.array([0, 10, -3], np.int8)
    q = run_op("QuantizeLinear", x, s, z, axis=0)
    assert q.tolist() == [[1, 2], [16, 18], [-1, 0]]           # 2.5 -> 2 (half even)
    d = run_op("DequantizeLinear", q, s, z, axis=0)
    close(d, [[1, 2], [3, 4], [4, 6]])
    d = run_op("DequantizeLinear", np.array([0, 3, 128, 255], np.uint8), np.array(2.0, F),
               np.array(128, np.uint8))
    close(d, [-256, -250, 0, 254])
    d = run_op("DequantizeLinear", np.array([[-5, 7]], np.int32), np.array([0.5, 2.0], F))
    close(d, [[-2.5, 14]])


def test_dynamic_quantize_onnx_example():
    y, s, z = run_op("DynamicQuantizeLinear", np.array([0, 2, -3, -2.5, 1.34, 0.5], F),
                     n_out=3)
    assert y.dtype == np.uint8 and y.tolist() == [153, 255, 0, 26, 221, 179]
    assert abs(float(s) - 0.019607844) < 1e-9 and int(z) == 153
    y, s, z = run_op("DynamicQuantizeLinear", np.zeros(3, F), n_out=3)
    assert y.tolist() == [0, 0, 0] and float(s) == 0 and int(z) == 0


# ---------------------------------------------------------------------------- executor
def test_feed_checks_and_freeing(tmp_path):
    g = Graph([ValueInfo("x", "f32", ["N", 3]), ValueInfo("m", "f32", ["N", 1])],
              [ValueInfo("y", "f32", ["N", 3])],
              [OpNode("Relu", "a", ["x"], ["t"]), OpNode("Mul", "b", ["t", "m"], ["u"]),
               OpNode("Neg", "c", ["u"], ["y"])])
    ex = Executor(g, {}, ReferenceBackend())
    x, m = rand(2, 3), rand(2, 1)
    close(ex.run({"x": x, "m": m})["y"], -np.maximum(x, 0) * m)
    out = ex.run({"x": x, "m": m}, fetch=["t"])
    close(out["t"], np.maximum(x, 0))
    assert ex._free_after[1] == ["t", "m"] or set(ex._free_after[1]) == {"t", "m"}
    with pytest.raises(RuntimeInputError, match="missing inputs \\['m'\\]"):
        ex.run({"x": x})
    with pytest.raises(RuntimeInputError, match="unknown inputs \\['z'\\]"):
        ex.run({"x": x, "m": m, "z": m})
    with pytest.raises(RuntimeInputError, match="dtype float64"):
        ex.run({"x": x.astype(np.float64), "m": m})
    with pytest.raises(RuntimeInputError, match="rank"):
        ex.run({"x": x[0], "m": m})
    with pytest.raises(RuntimeInputError, match="symbolic dim 'N'"):
        ex.run({"x": x, "m": rand(3, 1)})
    with pytest.raises(RuntimeInputError, match="dim 1 must be 1"):
        ex.run({"x": x, "m": rand(2, 2)})
    assert isinstance(RuntimeInputError("x"), ValueError)


def test_load_errors(tmp_path):
    p = tmp_path / "w.cz"
    czmodel.write(p, {"w": np.ones(2, F)})
    with pytest.raises(czmodel.FormatError, match="weights only"):
        load(p)
    g = Graph([ValueInfo("x", "f32", [2])], [ValueInfo("y", "f32", [2])],
              [OpNode("Add", "add", ["x", "w"], ["y"])])
    czmodel.write(p, {"w": np.ones(2, F)}, graph=g)
    with pytest.raises(UnsupportedError, match="not available"):
        load(p, backend="nope")
    m = load(p, backend="auto")
    assert m.backend.name in ("reference", "numba", "c")
    m = load(p.read_bytes())
    close(m.run({"x": np.array([1, 2], F)})["y"], [2, 3])
    assert [v.name for v in m.inputs] == ["x"] and [v.name for v in m.outputs] == ["y"]
    with pytest.raises(czmodel.EncodeError, match="not a graph input"):
        czmodel.write(p, {"v": np.ones(2, F)}, graph=g)


# ---------------------------------------------------------------------------- whole models
def _save_load(tmp_path, tensors, graph):
    p = tmp_path / "model.cz"
    czmodel.write(p, tensors, graph=graph)
    return load(p)


def np_conv(x, w, b=None, stride=1, pad=0, group=1):
    """Convolution as im2col with sliding_window_view (a different formulation)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    m, cg, kh, kw = w.shape
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    win = win[:, :, ::stride, ::stride]              # n, c, oh, ow, kh, kw
    n, c, oh, ow = win.shape[:4]
    win = win.reshape(n, group, cg, oh, ow, kh, kw)
    wg = w.reshape(group, m // group, cg, kh, kw)
    y = np.einsum("ngchwij,gmcij->ngmhw", win, wg).reshape(n, m, oh, ow)
    return y if b is None else y + b[None, :, None, None]


def np_maxpool2(x):
    n, c, h, w = x.shape
    return x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max((3, 5))


def test_mlp(tmp_path):
    w1, b1, w2, b2 = rand(32, 20), rand(32), rand(10, 32), rand(10)
    g = Graph([ValueInfo("x", "f32", ["batch", 20])], [ValueInfo("p", "f32", ["batch", 10])],
              [OpNode("Gemm", "fc1", ["x", "w1", "b1"], ["h"], {"transB": 1}),
               OpNode("Relu", "relu", ["h"], ["hr"]),
               OpNode("Linear", "fc2", ["hr", "w2", "b2"], ["z"]),
               OpNode("Softmax", "sm", ["z"], ["p"], {"axis": 1})])
    m = _save_load(tmp_path, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, g)
    x = rand(5, 20)
    z = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    e = np.exp(z - z.max(1, keepdims=True))
    close(m.run({"x": x})["p"], e / e.sum(1, keepdims=True), rtol=1e-4)


def test_lenet5_caffe(tmp_path):
    t = {"c1.w": rand(20, 1, 5, 5) * 0.2, "c1.b": rand(20) * 0.1,
         "c2.w": rand(50, 20, 5, 5) * 0.05, "c2.b": rand(50) * 0.1,
         "f1.w": rand(500, 800) * 0.03, "f1.b": rand(500) * 0.1,
         "f2.w": rand(10, 500) * 0.05, "f2.b": rand(10) * 0.1}
    mp = {"kernel_shape": [2, 2], "strides": [2, 2]}
    g = Graph([ValueInfo("img", "f32", ["N", 1, 28, 28])], [ValueInfo("logits", "f32", ["N", 10])],
              [OpNode("Conv", "conv1", ["img", "c1.w", "c1.b"], ["a1"], {"kernel_shape": [5, 5]}),
               OpNode("MaxPool", "pool1", ["a1"], ["p1"], mp),
               OpNode("Conv", "conv2", ["p1", "c2.w", "c2.b"], ["a2"]),
               OpNode("MaxPool", "pool2", ["a2"], ["p2"], mp),
               OpNode("Flatten", "flat", ["p2"], ["f"]),
               OpNode("Linear", "ip1", ["f", "f1.w", "f1.b"], ["h"]),
               OpNode("Relu", "relu1", ["h"], ["hr"]),
               OpNode("Linear", "ip2", ["hr", "f2.w", "f2.b"], ["logits"])])
    m = _save_load(tmp_path, t, g)
    x = rand(2, 1, 28, 28)
    p1 = np_maxpool2(np_conv(x, t["c1.w"], t["c1.b"]))
    p2 = np_maxpool2(np_conv(p1, t["c2.w"], t["c2.b"]))
    h = np.maximum(p2.reshape(2, -1) @ t["f1.w"].T + t["f1.b"], 0)
    want = h @ t["f2.w"].T + t["f2.b"]
    y = m.run({"img": x})["logits"]
    assert y.shape == (2, 10) and y.dtype == np.float32
    close(y, want, rtol=1e-4, atol=1e-4)


def _bn(prefix, c):
    return {f"{prefix}.s": rand(c) * 0.2 + 1, f"{prefix}.b": rand(c) * 0.1,
            f"{prefix}.m": rand(c) * 0.1, f"{prefix}.v": np.abs(rand(c)) + 0.5}


def _bn_np(x, t, prefix):
    sh = (1, -1, 1, 1)
    return ((x - t[f"{prefix}.m"].reshape(sh)) / np.sqrt(t[f"{prefix}.v"].reshape(sh) + 1e-5)
            * t[f"{prefix}.s"].reshape(sh) + t[f"{prefix}.b"].reshape(sh))


def _bn_node(name, x, y, prefix):
    return OpNode("BatchNormalization", name,
                  [x] + [f"{prefix}.{k}" for k in "sbmv"], [y])


def test_residual_block_with_bn(tmp_path):
    c = 8
    t = {"w1": rand(c, c, 3, 3) * 0.2, "w2": rand(c, c, 3, 3) * 0.2, **_bn("bn1", c),
         **_bn("bn2", c)}
    conv = {"pads": [1, 1, 1, 1]}
    nchw = ["N", c, "H", "W"]
    g = Graph([ValueInfo("x", "f32", nchw)], [ValueInfo("y", "f32", nchw)],
              [OpNode("Conv", "conv1", ["x", "w1"], ["a"], conv),
               _bn_node("bn1", "a", "b", "bn1"),
               OpNode("Relu", "relu1", ["b"], ["r"]),
               OpNode("Conv", "conv2", ["r", "w2"], ["d"], conv),
               _bn_node("bn2", "d", "e", "bn2"),
               OpNode("Add", "skip", ["e", "x"], ["s"]),
               OpNode("Relu", "relu2", ["s"], ["y"])])
    m = _save_load(tmp_path, t, g)
    x = rand(2, c, 6, 5)
    r = np.maximum(_bn_np(np_conv(x, t["w1"], pad=1), t, "bn1"), 0)
    want = np.maximum(_bn_np(np_conv(r, t["w2"], pad=1), t, "bn2") + x, 0)
    close(m.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)


def test_mobilenet_depthwise_block(tmp_path):
    cin, cexp, cout = 8, 16, 8

    def hswish(v):
        return v * np.clip(v / 6 + 0.5, 0, 1)

    t = {"pw1": rand(cexp, cin, 1, 1) * 0.3, "dw": rand(cexp, 1, 3, 3) * 0.3,
         "dwb": rand(cexp) * 0.1, "pw2": rand(cout, cexp, 1, 1) * 0.3, **_bn("bn1", cexp),
         **_bn("bn3", cout)}
    g = Graph([ValueInfo("x", "f32", [1, cin, 9, 9])], [ValueInfo("y", "f32", [1, cout, 5, 5])],
              [OpNode("Conv", "expand", ["x", "pw1"], ["a"]),
               _bn_node("bn1", "a", "b", "bn1"),
               OpNode("HardSwish", "act1", ["b"], ["c"]),
               OpNode("Conv", "depthwise", ["c", "dw", "dwb"], ["d"],
                      {"group": cexp, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
               OpNode("HardSwish", "act2", ["d"], ["e"]),
               OpNode("Conv", "project", ["e", "pw2"], ["f"]),
               _bn_node("bn3", "f", "y", "bn3")])
    m = _save_load(tmp_path, t, g)
    x = rand(1, cin, 9, 9)
    c = hswish(_bn_np(np_conv(x, t["pw1"]), t, "bn1"))
    e = hswish(np_conv(c, t["dw"], t["dwb"], stride=2, pad=1, group=cexp))
    want = _bn_np(np_conv(e, t["pw2"]), t, "bn3")
    close(m.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)


def test_bert_attention_block(tmp_path):
    d, h = 16, 4
    dh = d // h
    t = {f"{k}.w": rand(d, d) * 0.3 for k in "qkvo"} | {f"{k}.b": rand(d) * 0.1 for k in "qkvo"}
    t |= {"ln.s": rand(d) * 0.1 + 1, "ln.b": rand(d) * 0.1, "scale": np.array(dh ** -0.5, F),
          "heads": np.array([0, 0, h, dh], np.int64), "merge": np.array([0, 0, d], np.int64),
          "one": np.array([1], np.int64), "mask": (rand(1, 1, 1, 7) > 0).astype(F) * -1e4}
    nodes = []
    for k in "qkv":
        nodes += [OpNode("Linear", f"{k}_proj", ["x", f"{k}.w", f"{k}.b"], [f"{k}0"]),
                  OpNode("Reshape", f"{k}_split", [f"{k}0", "heads"], [f"{k}1"]),
                  OpNode("Transpose", f"{k}_heads", [f"{k}1"], [f"{k}2"],
                         {"perm": [0, 2, 3, 1] if k == "k" else [0, 2, 1, 3]})]
    nodes += [OpNode("MatMul", "qk", ["q2", "k2"], ["s0"]),
              OpNode("Mul", "scale_s", ["s0", "scale"], ["s1"]),
              OpNode("Add", "mask_s", ["s1", "mask"], ["s2"]),
              OpNode("Softmax", "softmax", ["s2"], ["p"], {"axis": -1}),
              OpNode("MatMul", "pv", ["p", "v2"], ["c0"]),
              OpNode("Transpose", "merge_t", ["c0"], ["c1"], {"perm": [0, 2, 1, 3]}),
              OpNode("Reshape", "merge_r", ["c1", "merge"], ["c2"]),
              OpNode("Linear", "o_proj", ["c2", "o.w", "o.b"], ["o"]),
              OpNode("Add", "residual", ["o", "x"], ["r"]),
              OpNode("LayerNormalization", "ln", ["r", "ln.s", "ln.b"], ["n"],
                     {"epsilon": 1e-12}),
              OpNode("Gelu", "gelu", ["n"], ["y"])]
    g = Graph([ValueInfo("x", "f32", ["B", 7, d])], [ValueInfo("y", "f32", ["B", 7, d])], nodes)
    m = _save_load(tmp_path, t, g)
    x = rand(2, 7, d)
    x64 = x.astype(np.float64)

    def proj(k):
        return (x64 @ t[f"{k}.w"].T + t[f"{k}.b"]).reshape(2, 7, h, dh).transpose(0, 2, 1, 3)

    q, k, v = proj("q"), proj("k"), proj("v")
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + t["mask"]
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    c = (p @ v).transpose(0, 2, 1, 3).reshape(2, 7, d)
    r = c @ t["o.w"].T + t["o.b"] + x64
    n = (r - r.mean(-1, keepdims=True)) / np.sqrt(r.var(-1, keepdims=True) + 1e-12)
    n = n * t["ln.s"] + t["ln.b"]
    want = 0.5 * n * (1 + np.vectorize(math.erf)(n / math.sqrt(2)))
    close(m.run({"x": x})["y"], want, rtol=1e-4, atol=1e-5)
