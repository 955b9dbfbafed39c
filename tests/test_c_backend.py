"""The C runtime (runtime_c) through the cffi extension and the cz_run tool, against the
reference backend: every op of op set 1 on one-node graphs (float results within the
spec/ops.md tolerances, integer/bool/shape/data-movement results bit-exact), whole models
with compressed weights, C vs Numba, the cz_run binary, bad feeds and concurrent runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import numpy as np
import pytest

import czmodel
from czmodel import encode as E
from czmodel.errors import CzError, FormatError, RuntimeInputError, UnsupportedError
from czmodel.format.header import NUMPY_TO_TENSOR
from czmodel.graph import Graph, OpNode, ValueInfo
from czmodel.runtime import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = os.path.join(ROOT, "runtime_c")


RNG = np.random.default_rng(7)
F = np.float32


def rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(F)


def relidx_cb_early(w, density=0.15, bits=5):
    m = np.abs(w) >= np.quantile(np.abs(w), 1 - density)
    vals = w[m]
    cent = np.quantile(vals, np.linspace(0, 1, 1 << bits)).astype(F)
    idx = np.abs(vals[:, None] - cent[None, :]).argmin(axis=1)
    return E.relidx(m, E.codebook(idx, cent, bits=bits)).set_entropy("huffman")


# ---------------------------------------------------------------------------- harness
def one_node(tmp_path, op, inputs, attrs=None, n_out=1, weights=(), name="m"):
    """A .cz holding one node; inputs with index in ``weights`` become file tensors."""
    names, vis, feeds, tensors = [], [], {}, {}
    for k, x in enumerate(inputs):
        if x is None:
            names.append("")
            continue
        n = f"in{k}"
        names.append(n)
        if k in weights:
            tensors[n] = x                       # an array or an encoder node
        else:
            x = np.asarray(x)
            vis.append(ValueInfo(n, NUMPY_TO_TENSOR[x.dtype], list(x.shape)))
            feeds[n] = x
    outs = [f"out{k}" for k in range(n_out)]
    g = Graph(vis, [ValueInfo(o, "f32", []) for o in outs],
              [OpNode(op, "n0", names, outs, dict(attrs or {}))])
    p = tmp_path / f"{name}.cz"
    czmodel.write(p, tensors, graph=g)
    return p, feeds


HEAVY = {"ReduceMean", "ReduceSum", "ReduceMax", "Softmax", "LayerNormalization", "Gemm",
         "MatMul", "Linear", "Conv", "ConvTranspose", "MaxPool", "AveragePool",
         "GlobalAveragePool", "GlobalMaxPool"}


def compare(got, want, heavy):
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    if heavy:
        big = float(np.nanmax(np.abs(want[np.isfinite(want)]), initial=1.0))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(big, 1.0))
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def check(cb, p, feeds, heavy=False, exact_float=False):
    ref = load(p, backend="reference").run(feeds)
    with cb.CModel(p, threads=2) as m:
        got = m.run(feeds)
    assert set(got) == set(ref)
    for k in ref:
        if exact_float:
            assert got[k].dtype == ref[k].dtype and got[k].shape == ref[k].shape
            np.testing.assert_array_equal(got[k], ref[k])
        else:
            compare(got[k], ref[k], heavy)
    return got


def both_raise(cb, p, feeds):
    with pytest.raises(CzError) as e_ref:
        load(p, backend="reference").run(feeds)
    with cb.CModel(p) as m, pytest.raises(CzError) as e_c:
        m.run(feeds)
    assert type(e_c.value) is type(e_ref.value), (e_c.value, e_ref.value)
    assert "n0" in str(e_c.value)


# ---------------------------------------------------------------------------- op cases
I64 = np.int64
x34 = rand(3, 4)
x234 = rand(2, 3, 4)
pos = np.abs(rand(2, 3, 4)) + 0.1
ints = RNG.integers(-50, 50, (3, 4)).astype(I64)
ints32 = RNG.integers(-(1 << 30), 1 << 30, (3, 4)).astype(np.int32)
nz = np.where(ints == 0, 3, ints)
boolm = RNG.random((3, 4)) > 0.5
img = rand(2, 4, 7, 6)
special = np.array([0.0, -0.0, 1.5, -2.5, 3e9, -3e9, np.nan, np.inf, -np.inf, 127.5, 255.6,
                    -128.7, 1e20, 0.4999], F)

CASES = [
    # unary float
    *[(op, [x234], {}) for op in ("Sigmoid", "Tanh", "Erf", "Exp", "HardSwish", "Relu", "Neg",
                                   "Abs", "Gelu")],
    ("Sqrt", [pos], {}), ("Log", [pos], {}),
    ("Gelu", [x234], {"approximate": "tanh"}),
    ("HardSigmoid", [x234 * 3], {"alpha": 0.3, "beta": 0.4}),
    ("LeakyRelu", [x234], {"alpha": 0.2}),
    ("Relu", [ints], {}), ("Neg", [ints32], {}), ("Abs", [ints], {}), ("Not", [boolm], {}),
    ("Clip", [x34, np.array(-0.5, F), np.array(0.4, F)], {}),
    ("Clip", [x34, None, np.array([0.1], F)], {}),
    ("Clip", [ints, np.array(-10, I64)], {}),
    ("Identity", [ints], {}),
    # binary with broadcasting
    *[(op, [rand(3, 1, 4), rand(2, 1)], {}) for op in ("Add", "Sub", "Mul", "Div")],
    *[(op, [x34, rand(4)], {}) for op in ("Add", "Mul", "Equal", "Less", "Greater")],
    *[(op, [ints, nz[:1]], {}) for op in ("Add", "Sub", "Mul", "Div", "Equal", "Less",
                                          "Greater")],
    ("Mul", [ints32, ints32[::-1].copy()], {}), ("Add", [ints32, ints32], {}),
    ("Div", [np.array([-7, 7, -8, 9, -(1 << 62)], I64), np.array([2, -2, 3, -4, 7], I64)], {}),
    ("Pow", [pos, rand(4)], {}), ("Pow", [pos, np.array([2, 3, 0], I64).reshape(3, 1)], {}),
    ("Pow", [np.array([3, -2, 5], I64), np.array([3, 5, 30], I64)], {}),
    ("Equal", [boolm, boolm[::-1].copy()], {}),
    ("Where", [boolm, x34, rand(3, 1)], {}), ("Where", [boolm[:1], ints, ints * 2], {}),
    # linear algebra
    ("Gemm", [rand(3, 5), rand(5, 4)], {}),
    ("Gemm", [rand(5, 3), rand(4, 5), rand(4)], {"transA": 1, "transB": 1, "alpha": 0.5,
                                                  "beta": 2.0}),
    ("Gemm", [rand(3, 5), rand(5, 4), rand(3, 1)], {"beta": -1.0}),
    ("Gemm", [rand(3, 5), rand(4, 5), rand(4)], {"transB": 1}, (1, 2)),
    ("Gemm", [rand(3, 5), rand(5, 4), rand(1, 4)], {}, (1,)),
    ("MatMul", [rand(3, 5), rand(5, 4)], {}),
    ("MatMul", [rand(2, 3, 4, 5), rand(5, 6)], {}),
    ("MatMul", [rand(2, 1, 4, 5), rand(3, 5, 6)], {}),
    ("MatMul", [rand(5), rand(2, 5, 3)], {}), ("MatMul", [rand(2, 3, 5), rand(5)], {}),
    ("MatMul", [rand(2, 3, 5), rand(5, 4)], {}, (1,)),
    ("MatMul", [ints, ints.T.copy()], {}),
    ("Linear", [rand(2, 3, 6), rand(5, 6), rand(5)], {}, (1, 2)),
    ("Linear", [rand(4, 6), rand(5, 6)], {}),
    # conv / pools
    ("Conv", [img, rand(6, 4, 3, 3)], {}, (1,)),
    ("Conv", [img, rand(6, 2, 3, 2), rand(6)], {"group": 2, "strides": [2, 1],
                                                "pads": [1, 0, 2, 1], "dilations": [1, 2]},
     (1, 2)),
    ("Conv", [img, rand(4, 1, 3, 3)], {"group": 4, "auto_pad": "SAME_UPPER",
                                       "strides": [2, 2]}),
    ("Conv", [img, rand(3, 4, 2, 2)], {"auto_pad": "SAME_LOWER", "strides": [2, 2]}, (1,)),
    ("Conv", [img, rand(3, 4, 1, 1), rand(3)], {"auto_pad": "VALID"}, (1, 2)),
    ("ConvTranspose", [img, rand(4, 3, 3, 3), rand(3)], {"strides": [2, 2],
                                                         "pads": [1, 0, 1, 1],
                                                         "output_padding": [1, 0]}, (1,)),
    ("ConvTranspose", [img, rand(4, 2, 2, 3)], {"group": 2, "dilations": [2, 1]}),
    ("MaxPool", [img], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", [img], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", [img], {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ("MaxPool", [img], {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("AveragePool", [img], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", [img], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                            "count_include_pad": 1, "ceil_mode": 1}),
    ("AveragePool", [img], {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
    ("GlobalAveragePool", [img], {}), ("GlobalMaxPool", [img], {}),
    ("BatchNormalization", [img, rand(4), rand(4), rand(4), np.abs(rand(4)) + 0.5],
     {"epsilon": 1e-3}, (1, 2, 3, 4)),
    ("LayerNormalization", [x234, rand(4), rand(4)], {}, (1, 2)),
    ("LayerNormalization", [x234, rand(3, 1)], {"axis": 1, "epsilon": 1e-3}),
    ("Softmax", [x234], {}), ("Softmax", [x234], {"axis": 0}), ("Softmax", [x234], {"axis": 1}),
    # reductions
    ("ReduceMean", [x234], {"axes": [1]}), ("ReduceMean", [x234], {}),
    ("ReduceSum", [x234, np.array([0, 2], I64)], {"keepdims": 0}),
    ("ReduceSum", [RNG.integers(-5, 5, (2, 3, 4)).astype(I64)], {"axes": [-1]}),
    ("ReduceMax", [x234], {"axes": [0, 2], "keepdims": 0}),
    ("ReduceMax", [ints32], {"axes": [1]}),
    ("ReduceSum", [x234], {"noop_with_empty_axes": 1}),
    ("ArgMax", [x234], {"axis": 1}), ("ArgMax", [x234], {"axis": -1, "keepdims": 0}),
    ("ArgMax", [np.array([[1, 3, 3, 0], [2, 2, 1, 2]], I64)], {"axis": 1,
                                                                "select_last_index": 1}),
    ("ArgMax", [np.array([[1, 3, 3, 0], [2, 2, 1, 2]], I64)], {"axis": 1}),
    # data movement / shape
    ("Concat", [x234, rand(2, 1, 4), rand(2, 2, 4)], {"axis": 1}),
    ("Concat", [ints, ints], {"axis": -1}),
    ("Reshape", [x234, np.array([0, -1], I64)], {}),
    ("Reshape", [x234, np.array([4, 0, 2], I64)], {"allowzero": 0}),
    ("Flatten", [img], {"axis": 2}), ("Flatten", [img], {"axis": 0}),
    ("Transpose", [img], {"perm": [0, 2, 3, 1]}), ("Transpose", [ints], {}),
    ("Squeeze", [rand(1, 3, 1, 2)], {}), ("Squeeze", [rand(1, 3, 1, 2), np.array([-2], I64)], {}),
    ("Unsqueeze", [x34, np.array([0, -1], I64)], {}),
    ("Gather", [x234, np.array([[1, -1], [0, 0]], I64)], {"axis": 1}),
    ("Gather", [ints, np.array(2, np.int32)], {}),
    ("Slice", [img, np.array([1, -1], I64), np.array([100, -5], I64), np.array([2, 3], I64),
               np.array([1, -2], I64)], {}),
    ("Slice", [x234, np.array([0], I64), np.array([2], I64)], {}),
    ("Expand", [rand(3, 1), np.array([2, 1, 4], I64)], {}),
    ("Tile", [ints, np.array([2, 1], I64)], {}),
    ("Shape", [img], {}), ("Shape", [img], {"start": 1, "end": -1}),
    ("ConstantOfShape", [np.array([2, 3], I64)], {}),
    ("ConstantOfShape", [np.array([2, 3], I64)], {"value": 3.0, "dtype": "i64"}),
    ("Range", [np.array(1.0, F), np.array(5.2, F), np.array(0.7, F)], {}),
    ("Range", [np.array(10, I64), np.array(-3, I64), np.array(-4, I64)], {}),
    ("Pad", [img, np.array([0, 0, 1, -1, 0, 0, 2, 1], I64), np.array(1.5, F)], {}),
    ("Pad", [ints, np.array([1, 2], I64), None, np.array([1], I64)], {}),
    ("Cast", [special], {"to": "i8"}), ("Cast", [special], {"to": "u8"}),
    ("Cast", [special], {"to": "i64"}), ("Cast", [special], {"to": "i32"}),
    ("Cast", [special], {"to": "bool"}), ("Cast", [special], {"to": "f16"}),
    ("Cast", [special], {"to": "f64"}), ("Cast", [ints], {"to": "f32"}),
    ("Cast", [ints32], {"to": "i8"}), ("Cast", [boolm], {"to": "f32"}),
    ("Cast", [special.astype(np.float64)], {"to": "f16"}),
    ("Resize", [rand(1, 2, 3, 4), None, np.array([1, 1, 2, 1.5], F)], {}),
    ("Resize", [rand(1, 2, 3, 4), None, np.array([1, 1, 0.6, 2.5], F)],
     {"mode": "nearest", "nearest_mode": "ceil", "coordinate_transformation_mode": "asymmetric"}),
    ("Resize", [rand(1, 2, 3, 4), None, None, np.array([1, 2, 5, 3], I64)],
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"}),
    ("Resize", [rand(1, 2, 3, 4), None, np.array([1, 1, 2, 2], F)],
     {"mode": "linear"}),
    ("Resize", [rand(2, 5, 4), None, np.array([1, 0.5, 1.75], F)],
     {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}),
    ("Resize", [ints, None, np.array([2, 2], F)], {"nearest_mode": "floor"}),
    # quantization
    ("QuantizeLinear", [x234 * 50, np.array(0.37, F), np.array(128, np.uint8)], {}),
    ("QuantizeLinear", [x234 * 50, np.array([0.5, 0.25, 1.0], F),
                        np.array([1, -2, 0], np.int8)], {"axis": 1}),
    ("QuantizeLinear", [np.array([0.5, 1.5, 2.5, -0.5, -1.5, np.nan, 1e9], F),
                        np.array(1.0, F)], {}),
    ("DequantizeLinear", [RNG.integers(0, 255, (3, 4)).astype(np.uint8), np.array(0.1, F),
                          np.array(7, np.uint8)], {}),
    ("DequantizeLinear", [RNG.integers(-128, 127, (3, 4)).astype(np.int8),
                          np.array([0.1, 0.2, 0.3, 0.4], F)], {"axis": -1}),
    ("DequantizeLinear", [RNG.integers(-1000, 1000, (3, 4)).astype(np.int32),
                          np.array(0.01, F)], {}),
]
img_nan = img.copy()
img_nan[0, 1, 2, 3] = np.nan
img_nan[1, 2, 0, 0] = np.inf
sp2 = special[:12].reshape(3, 4)
pool_nan = rand(2, 3, 9, 37)   # 2x2 pools: output rows of 18 = 8 + 8 + 2 (vector steps, tail)
pool_nan.reshape(-1)[RNG.choice(pool_nan.size, 40, replace=False)] = np.nan
pool_nan.reshape(-1)[RNG.choice(pool_nan.size, 20, replace=False)] = -np.inf
CASES += [   # NaN / inf propagation as numpy does
    *[(op, [special], {}) for op in ("Relu", "HardSwish", "LeakyRelu", "Sigmoid", "Neg",
                                     "Abs", "HardSigmoid", "Tanh")],
    ("Clip", [special, np.array(-1.0, F), np.array(200.0, F)], {}),
    ("MaxPool", [img_nan], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", [pool_nan], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("MaxPool", [pool_nan[:, :, :8, :24].copy()], {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("GlobalMaxPool", [img_nan], {}), ("GlobalAveragePool", [img_nan], {}),
    ("Softmax", [sp2], {"axis": 1}), ("ReduceMax", [sp2], {"axes": [1]}),
    ("ArgMax", [sp2], {"axis": 1}), ("ArgMax", [sp2], {"axis": 1, "select_last_index": 1}),
    ("Add", [sp2, sp2[:, ::-1].copy()], {}), ("Greater", [sp2, np.array(0, F)], {}),
    ("Where", [np.isnan(sp2), sp2, np.array(7, F)], {}),
    # compressed file-tensor weights on the kernels (relidx + codebook, 15% density)
    ("Linear", [rand(3, 40), None, rand(24)], {}, (1, 2)),
    ("Gemm", [rand(3, 40), None, rand(24)], {"transB": 1}, (1, 2)),
    ("Conv", [rand(2, 8, 9, 9), None, rand(12)], {"pads": [1, 1, 1, 1]}, (1, 2)),
]
I64_MAX, I64_MIN = (1 << 63) - 1, -(1 << 63)
CASES += [   # edge cases of the data-movement ops
    ("Slice", [x234, np.array([I64_MIN, 1], I64), np.array([I64_MAX, I64_MIN], I64),
               np.array([0, 2], I64), np.array([1, -1], I64)], {}),
    ("Slice", [x234, np.array([-1], I64), np.array([-1000], I64), np.array([-1], I64),
               np.array([-3], I64)], {}),
    ("Reshape", [np.zeros((0, 3), F), np.array([0, 4], I64)], {"allowzero": 1}),
    ("Reshape", [x234, np.array([-1], I64)], {}),
    ("Expand", [rand(2, 3, 1), np.array([4], I64)], {}),
    ("Concat", [x34, np.zeros((0, 4), F), x34], {"axis": 0}),
    ("Pad", [img, np.array([0, -1, -2, -1, 0, -1, -2, -1], I64)], {}),
    ("Unsqueeze", [np.array(3.5, F), np.array([0, 1], I64)], {}),
    ("Gather", [rand(2, 5, 3), np.array([[-5, 4], [0, -1]], np.int32)], {"axis": -2}),
    ("Transpose", [rand(2, 1, 3, 1, 2)], {"perm": [4, 2, 0, 3, 1]}),
    ("Tile", [np.arange(6, dtype=np.int32).reshape(1, 2, 3), np.array([2, 0, 3], I64)], {}),
    ("Split", [rand(4, 6), np.array([4], I64)], {"axis": 0}),
    ("Squeeze", [np.zeros((1, 0, 1), F)], {}),
    ("Cast", [np.array([0, 1, 255, 128], np.uint8)], {"to": "i8"}),
    ("Cast", [np.array([70000.0, 65504.0, 65519.9, 1e-8, 6e-8, -3e-5], F)], {"to": "f16"}),
    ("ConstantOfShape", [np.array([], I64)], {"value": -2.7, "dtype": "i8"}),
    ("Range", [np.array(5, np.int32), np.array(5, np.int32), np.array(1, np.int32)], {}),
]
for _c in CASES:   # the compressed-weight cases above: weight slot 1 filled here
    if _c[0] in ("Linear", "Gemm", "Conv") and _c[1][1] is None:
        _c[1][1] = relidx_cb_early(rand(12, 8, 3, 3) if _c[0] == "Conv" else rand(24, 40))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the reference on NaN / inf inputs
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_op(cb, tmp_path, case):
    op, inputs, attrs = case[:3]
    weights = case[3] if len(case) > 3 else ()
    p, feeds = one_node(tmp_path, op, inputs, attrs, weights=weights)
    exact = op == "Cast" or op == "Resize" and attrs.get("mode", "nearest") == "nearest"
    check(cb, p, feeds, heavy=op in HEAVY, exact_float=exact and op != "Cast" or
          (op == "Cast" and attrs["to"] in ("f16", "f64")))


@pytest.mark.parametrize("inputs,attrs,n", [
    ([rand(2, 6, 3)], {"axis": 1}, 3),
    ([rand(2, 7, 3)], {"axis": 1, "num_outputs": 3}, 3),
    ([rand(5, 4), np.array([1, 0, 4], I64)], {}, 3),
    ([RNG.integers(0, 9, (4, 6)).astype(I64)], {"axis": -1}, 2),
])
def test_split(cb, tmp_path, inputs, attrs, n):
    p, feeds = one_node(tmp_path, "Split", inputs, attrs, n_out=n)
    check(cb, p, feeds)


@pytest.mark.parametrize("x", [rand(3, 5) * 4, np.abs(rand(2, 3)), -np.abs(rand(4)),
                               np.zeros((2, 2), F), rand(0, 3)])
def test_dynamic_quantize(cb, tmp_path, x):
    p, feeds = one_node(tmp_path, "DynamicQuantizeLinear", [x], n_out=3)
    check(cb, p, feeds, exact_float=True)


def _masked_scores():
    """Attention-like rows with -inf (masked) entries: in the 16-lane vector part and the
    scalar tail (37 = 2 x 16 + 5), finite scores far below the row max, a row masked but
    for one entry, and one with 16 x -inf in a row."""
    x = rand(5, 37) * 3
    x[0, [0, 5, 17, 33, 36]] = -np.inf
    x[1, :20] = -np.inf
    x[2, 10] -= 90.0
    x[2, 35] -= 200.0
    x[3, :] = -np.inf
    x[3, 7] = 0.5
    x[4, 16:32] = -np.inf
    return x


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_masked_exact_zero(cb, tmp_path, axis):
    """exp(-inf) is exactly 0 in the C Softmax as in the reference (it was ~1e-38, which
    the tolerance of ``check`` would hide): masked entries must compare equal to 0."""
    x = _masked_scores()
    if axis == 0:
        x = x.T.copy()
    p, feeds = one_node(tmp_path, "Softmax", [x], {"axis": axis})
    ref = load(p, backend="reference").run(feeds)["out0"]
    with cb.CModel(p, threads=1) as m:
        got = m.run(feeds)["out0"]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    assert (got[np.isneginf(x)] == 0).all() and (ref[np.isneginf(x)] == 0).all()
    assert (got[ref == 0] == 0).all()
    assert np.all(np.abs(got.sum(axis=axis) - 1) < 1e-5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the reference on NaN / inf inputs
@pytest.mark.parametrize("op,inputs,attrs", [
    ("MaxPool", [pool_nan[:1, :1].repeat(16, 1).repeat(14, 2).repeat(4, 3)],
     {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("AveragePool", [rand(1, 16, 66, 66)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ("MaxPool", [rand(1, 16, 66, 66)], {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("Softmax", [_masked_scores().repeat(200, 0)], {}),
    ("LayerNormalization", [rand(512, 160), rand(160), rand(160)], {"axis": -1}),
    ("Add", [rand(300, 300), rand(300, 300)], {}),
])
def test_big_ops_two_threads(cb, tmp_path, op, inputs, attrs):
    """Inputs large enough for the ops' multi-thread branches (threads=2 in check), next to
    the one-thread branches that run without an OpenMP region (CZ_PAR_FOR)."""
    p, feeds = one_node(tmp_path, op, inputs, attrs)
    check(cb, p, feeds, heavy=op in HEAVY)
    ref = load(p, backend="reference").run(feeds)
    with cb.CModel(p, threads=1) as m:
        compare(m.run(feeds)["out0"], ref["out0"], op in HEAVY)


def test_every_op_has_a_case():
    from test_ops_logical import LOGICAL_OPS  # the logical family's C-vs-reference cases

    from czmodel.graph.ops import OPS

    covered = {c[0] for c in CASES} | {"Split", "DynamicQuantizeLinear"} | LOGICAL_OPS
    assert covered == set(OPS), set(OPS) - covered


@pytest.mark.parametrize("op,inputs,attrs", [
    ("Add", [rand(3, 4), rand(2, 4)], {}),
    ("Add", [rand(3, 4), np.ones((3, 4), I64)], {}),
    ("Div", [ints, np.zeros((1, 4), I64)], {}),
    ("Gather", [x34, np.array([5], I64)], {}),
    ("Reshape", [x34, np.array([5, -1], I64)], {}),
    ("MatMul", [rand(3, 4), rand(5, 2)], {}),
    ("Conv", [rand(1, 3, 5, 5), rand(2, 2, 3, 3)], {}),
    ("Conv", [rand(1, 3, 5), rand(2, 3, 3)], {}),
    ("Pow", [ints, rand(3, 4)], {}),
    ("Concat", [x34, ints], {"axis": 0}),
    ("Sqrt", [ints], {}),
    ("Expand", [rand(3, 2), np.array([4, 3], I64)], {}),
    ("Range", [np.array(0, I64), np.array(1 << 40, I64), np.array(1, I64)], {}),
])
def test_run_time_errors_match_reference(cb, tmp_path, op, inputs, attrs):
    p, feeds = one_node(tmp_path, op, inputs, attrs)
    both_raise(cb, p, feeds)


# ---------------------------------------------------------------------------- whole models
relidx_cb = relidx_cb_early


def int8_rows(w):
    w2 = w.reshape(w.shape[0], -1)
    s = (np.abs(w2).max(axis=1) / 127).astype(F)
    q = np.clip(np.rint(w2 / s[:, None]), -127, 127).astype(np.int64).reshape(w.shape)
    return E.affine(q, s, bits=8, axis=0)


def mlp(tmp_path, enc=relidx_cb):
    w1, w2, w3 = rand(64, 100, scale=0.1), rand(32, 64, scale=0.1), rand(10, 32, scale=0.2)
    g = Graph([ValueInfo("x", "f32", ["N", 100])], [ValueInfo("y", "f32", ["N", 10])],
              [OpNode("Linear", "fc1", ["x", "w1", "b1"], ["h1"]),
               OpNode("Relu", "r1", ["h1"], ["a1"]),
               OpNode("Gemm", "fc2", ["a1", "w2", "b2"], ["h2"], {"transB": 1}),
               OpNode("Relu", "r2", ["h2"], ["a2"]),
               OpNode("Linear", "fc3", ["a2", "w3"], ["z"]),
               OpNode("Softmax", "sm", ["z"], ["y"])])
    p = tmp_path / "mlp.cz"
    czmodel.write(p, {"w1": enc(w1), "w2": enc(w2), "w3": w3, "b1": rand(64, scale=0.1),
                      "b2": rand(32, scale=0.1)}, graph=g)
    return p, {"x": rand(5, 100)}


def lenet5(tmp_path, enc=relidx_cb):
    mp = {"kernel_shape": [2, 2], "strides": [2, 2]}
    g = Graph([ValueInfo("x", "f32", ["N", 1, 28, 28])], [ValueInfo("y", "f32", ["N", 10])],
              [OpNode("Conv", "conv1", ["x", "c1", "cb1"], ["h1"], {"kernel_shape": [5, 5]}),
               OpNode("MaxPool", "p1", ["h1"], ["q1"], mp),
               OpNode("Conv", "conv2", ["q1", "c2", "cb2"], ["h2"]),
               OpNode("MaxPool", "p2", ["h2"], ["q2"], mp),
               OpNode("Flatten", "fl", ["q2"], ["v"]),
               OpNode("Gemm", "fc1", ["v", "f1", "fb1"], ["z1"], {"transB": 1}),
               OpNode("Relu", "r", ["z1"], ["a"]),
               OpNode("Linear", "fc2", ["a", "f2"], ["y"])])
    p = tmp_path / "lenet.cz"
    czmodel.write(p, {"c1": rand(20, 1, 5, 5, scale=0.2), "c2": enc(rand(50, 20, 5, 5, scale=0.05)),
                      "f1": enc(rand(500, 800, scale=0.03)), "f2": rand(10, 500, scale=0.05),
                      "cb1": rand(20, scale=0.1), "cb2": rand(50, scale=0.1),
                      "fb1": rand(500, scale=0.1)}, graph=g)
    return p, {"x": rand(3, 1, 28, 28)}


def _bn(prefix, c):
    return {f"{prefix}.s": rand(c) * 0.2 + 1, f"{prefix}.b": rand(c) * 0.1,
            f"{prefix}.m": rand(c) * 0.1, f"{prefix}.v": np.abs(rand(c)) + 0.5}


def _bn_node(name, x, y, prefix):
    return OpNode("BatchNormalization", name, [x] + [f"{prefix}.{k}" for k in "sbmv"], [y])


def residual(tmp_path):
    c = 8
    t = {"w1": rand(c, c, 3, 3, scale=0.2), "w2": relidx_cb(rand(c, c, 3, 3, scale=0.2), 0.5),
         **_bn("bn1", c), **_bn("bn2", c)}
    conv = {"pads": [1, 1, 1, 1]}
    nchw = ["N", c, "H", "W"]
    g = Graph([ValueInfo("x", "f32", nchw)], [ValueInfo("y", "f32", nchw)],
              [OpNode("Conv", "conv1", ["x", "w1"], ["a"], conv),
               _bn_node("bn1", "a", "b", "bn1"), OpNode("Relu", "relu1", ["b"], ["r"]),
               OpNode("Conv", "conv2", ["r", "w2"], ["d"], conv),
               _bn_node("bn2", "d", "e", "bn2"), OpNode("Add", "skip", ["e", "x"], ["s"]),
               OpNode("Relu", "relu2", ["s"], ["y"])])
    p = tmp_path / "res.cz"
    czmodel.write(p, t, graph=g)
    return p, {"x": rand(2, c, 6, 5)}


def depthwise(tmp_path):
    cin, cexp, cout = 8, 16, 8
    t = {"pw1": int8_rows(rand(cexp, cin, 1, 1, scale=0.3)), "dw": rand(cexp, 1, 3, 3, scale=0.3),
         "dwb": rand(cexp, scale=0.1), "pw2": rand(cout, cexp, 1, 1, scale=0.3),
         **_bn("bn1", cexp), **_bn("bn3", cout)}
    g = Graph([ValueInfo("x", "f32", [1, cin, 9, 9])], [ValueInfo("y", "f32", [1, cout, 5, 5])],
              [OpNode("Conv", "expand", ["x", "pw1"], ["a"]),
               _bn_node("bn1", "a", "b", "bn1"), OpNode("HardSwish", "act1", ["b"], ["c"]),
               OpNode("Conv", "depthwise", ["c", "dw", "dwb"], ["d"],
                      {"group": cexp, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
               OpNode("HardSwish", "act2", ["d"], ["e"]),
               OpNode("Conv", "project", ["e", "pw2"], ["f"]),
               _bn_node("bn3", "f", "y", "bn3")])
    p = tmp_path / "dw.cz"
    czmodel.write(p, t, graph=g)
    return p, {"x": rand(1, cin, 9, 9)}


def attention(tmp_path):
    d, h = 16, 4
    dh = d // h
    t = {f"{k}.w": rand(d, d, scale=0.3) for k in "qkvo"} | {f"{k}.b": rand(d, scale=0.1)
                                                             for k in "qkvo"}
    t |= {"ln.s": rand(d) * 0.1 + 1, "ln.b": rand(d) * 0.1, "scale": np.array(dh ** -0.5, F),
          "heads": np.array([0, 0, h, dh], np.int64), "merge": np.array([0, 0, d], np.int64),
          "mask": (rand(1, 1, 1, 7) > 0).astype(F) * -1e4}
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
    p = tmp_path / "attn.cz"
    czmodel.write(p, t, graph=g)
    return p, {"x": rand(2, 7, d)}


MODELS = {"mlp": mlp, "lenet5": lenet5, "residual": residual, "depthwise": depthwise,
          "attention": attention}


@pytest.mark.parametrize("name", ["mlp", "lenet5", "residual", "attention"])
def test_whole_model(cb, tmp_path, name):
    p, feeds = MODELS[name](tmp_path)
    check(cb, p, feeds, heavy=True)


def test_depthwise_block_int8_expand(cb, tmp_path):
    p, feeds = depthwise(tmp_path)
    ref = load(p, backend="reference").run(feeds)["y"]
    got = cb.CModel(p).run(feeds)["y"]
    assert got.shape == ref.shape and rel_err(got, ref) < 3e-2


def rel_err(a, b):
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_int8_weights(cb, tmp_path, name):
    """int8 affine weights run on the int8 kernels (activations quantized dynamically):
    relative error below 3e-2, as for the Numba backend."""
    p, feeds = MODELS[name](tmp_path, int8_rows)
    ref = load(p, backend="reference").run(feeds)["y"]
    got = cb.CModel(p).run(feeds)["y"]
    assert rel_err(got, ref) < 3e-2


@pytest.mark.parametrize("batch", [4, 5, 6, 13, 32, 64])
def test_int8_linear_exact_batches(cb, tmp_path, batch):
    """The int8 GEMM at batch >= 4 (activations quantized straight into the packed tiles,
    weights packed at load) against the Numba backend's int8 kernels (the reference backend
    multiplies dequantized weights in float) BIT FOR BIT: rows whose max |x| is 127
    quantize with scale 1 (halves exercise round-half-to-even), power-of-two weight scales,
    so every output is an exact float; odd widths hit the 16-column quantization tails, and
    one row is all zero. (No NaN here: C quantizes a NaN activation to 0, Numba's
    np.int8(nan) is platform-defined.)"""
    R, C = 37, 301
    q = RNG.integers(-128, 128, (R, C)).astype(np.int64)
    s = (2.0 ** RNG.integers(-8, -4, R)).astype(F)
    x = (RNG.integers(-254, 255, (batch, 2, C)) * 0.5).astype(F)
    x[:, :, 0] = 127.0
    x[0, 1, :] = 0.0
    g = Graph([ValueInfo("x", "f32", [batch, 2, C])], [ValueInfo("y", "f32", [batch, 2, R])],
              [OpNode("Linear", "fc", ["x", "w"], ["y"])])
    p = tmp_path / "int8_exact.cz"
    czmodel.write(p, {"w": E.affine(q, s, bits=8, axis=0)}, graph=g)
    pytest.importorskip("numba")
    ref = load(p, backend="numba", threads=1).run({"x": x})["y"]
    with cb.CModel(p, threads=1) as m:
        got = m.run({"x": x})["y"]
    np.testing.assert_array_equal(got, ref)


def _tie_rows(n_rows, cols, rng):
    """Rows whose max |x| = amax makes 127/amax and 1/(amax/127) differ in float32, filled
    with values that sit exactly on a .5 tie under 127/amax (C's scale) -- so an
    implementation using the other formula rounds some of them differently."""
    rows = []
    while len(rows) < n_rows:
        amax = F(rng.uniform(0.5, 4.0))
        inv_c = F(127.0) / amax
        inv_o = F(1.0) / (amax / F(127.0))
        if inv_c == inv_o:
            continue
        vals = []
        for m in rng.integers(-126, 126, 20 * cols):
            t = F(m + 0.5)
            xv = F(np.float64(t) / np.float64(inv_c))
            if F(xv * inv_c) == t and F(xv * inv_o) != t and abs(xv) < amax:
                vals.append(xv)
            if len(vals) == cols - 1:
                break
        if len(vals) == cols - 1:
            rows.append(np.array([amax] + vals, F))
    return np.stack(rows)


def test_int8_activation_quantization_bit_exact_with_numba(cb, tmp_path):
    """Dynamic activation quantization is the same formula in C and Numba (inv = 127/amax in
    float32, round half to even; NaN -> 0; an inf row -> zeros): an identity int8 weight with
    scale 1 makes y = sx * xq exactly, on .5 ties where 1/(amax/127) would round otherwise."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(11)
    cols = 24
    x = _tie_rows(12, cols, rng)
    x = np.concatenate([x, x[:2].copy(), x[:1].copy()])
    x[12, 5] = np.nan                       # NaN element: 0 (row max ignores it)
    x[13, 7] = np.inf                       # inf row: all zeros
    x[14, :] = np.nan                       # all-NaN row: all zeros
    g = Graph([ValueInfo("x", "f32", ["N", cols])], [ValueInfo("y", "f32", ["N", cols])],
              [OpNode("Linear", "fc", ["x", "w"], ["y"])])
    p = tmp_path / "int8_ties.cz"
    czmodel.write(p, {"w": E.affine(np.eye(cols, dtype=np.int64), np.ones(cols, F), bits=8,
                                    axis=0)}, graph=g)
    for rows in (x[:3], x):                 # batch 1..3 GEMV paths and the batch >= 4 GEMM
        nb = load(p, backend="numba", threads=1).run({"x": rows})["y"]
        with cb.CModel(p, threads=1) as m:
            got = m.run({"x": rows})["y"]
        np.testing.assert_array_equal(got, nb)
    assert np.all(nb[13] == 0) and np.all(nb[14] == 0) and nb[12, 5] == 0


def test_compressed_weights_stay_compressed(cb, tmp_path):
    p, feeds = lenet5(tmp_path)
    m = cb.CModel(p)
    res = m.resident
    assert set(res) == {"c1", "c2", "f1", "f2", "cb1", "cb2", "fb1"}
    assert res["f2"] == 10 * 500 * 4 and all(v > 0 for v in res.values())
    with pytest.raises(KeyError):
        m.resident_bytes("nope")


@pytest.mark.parametrize("name", ["mlp", "lenet5", "attention"])
def test_c_vs_numba(cb, tmp_path, name):
    pytest.importorskip("numba")
    p, feeds = MODELS[name](tmp_path)
    nb = load(p, backend="numba", threads=1).run(feeds)
    c = cb.CModel(p, threads=1).run(feeds)
    for k in nb:
        np.testing.assert_allclose(c[k], nb[k], rtol=2e-4, atol=1e-5 * max(1, np.abs(nb[k]).max()))


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_relidx_grouped_layout(cb, tmp_path, monkeypatch, name):
    """The codebook-grouped RELIDX layout of 2-D weights (forced on / off at load with
    CZ_RELIDX_GROUP; the default rule leaves these small layers column-ordered): the same
    outputs as the reference at batch 1 and 5, on 1 and 2 threads. Resident bytes: by the
    default rule never above the column-ordered layout's (LeNet-5's f1, 120 values per row,
    is grouped), forced at most the row tables (12 bytes per row) above it."""
    p, feeds = MODELS[name](tmp_path)
    one = {k: v[:1] for k, v in feeds.items()}
    res = {}
    for mode in ("0", "1", None):
        if mode is None:
            monkeypatch.delenv("CZ_RELIDX_GROUP")
        else:
            monkeypatch.setenv("CZ_RELIDX_GROUP", mode)
            for f in (feeds, one):
                check(cb, p, f, heavy=True)
                with cb.CModel(p, threads=1) as m:
                    compare(m.run(f)["y"], load(p, backend="reference").run(f)["y"], True)
        with cb.CModel(p) as m:
            res[mode] = m.resident
    rows = {"w1": 64, "w2": 32, "f1": 500}
    for w in (["w1", "w2"] if name == "mlp" else ["f1"]):
        assert res[None][w] <= res["0"][w], (w, res)
        assert res["1"][w] <= res["0"][w] + 12 * (rows[w] + 1), (w, res)
    if name == "lenet5":
        assert res[None]["f1"] < res["0"]["f1"], res


# ---------------------------------------------------------------------------- interface
def test_interface(cb, tmp_path):
    p, feeds = attention(tmp_path)
    m = cb.CModel(p)
    assert [v.name for v in m.inputs] == ["x"] and m.inputs[0].shape == ["B", 7, 16]
    assert m.outputs[0].dtype == "f32"
    out = m(**feeds)
    assert out["y"].flags.c_contiguous and out["y"].dtype == np.float32
    m2 = cb.CModel(open(p, "rb").read())            # from bytes (borrowed buffer kept alive)
    np.testing.assert_array_equal(m2.run(feeds)["y"], out["y"])
    assert [n.name for n in m.graph.nodes][:2] == ["q_proj", "q_split"]
    assert m.backend.name == "c"
    m.close()
    with pytest.raises(ValueError):
        m.run(feeds)
    be = cb.CBackend(threads=1)
    with czmodel.open(p) as f:
        m3 = be.load_model(f, None)
    assert m3.backend is be and m3.threads == 1
    np.testing.assert_allclose(m3.run(feeds)["y"], out["y"], rtol=1e-5, atol=1e-6)


def test_backend_registration(cb, tmp_path):
    from czmodel.runtime.model import backend_class
    assert backend_class("c") is cb.CBackend
    assert cb.CBackend.available()
    # "auto" prefers the C backend when the extension is built
    w = rand(3, 4)
    g = Graph([ValueInfo("x", "f32", ["N", 4])], [ValueInfo("y", "f32", ["N", 3])],
              [OpNode("Linear", "fc", ["x", "w"], ["y"])])
    p = tmp_path / "auto.cz"
    czmodel.write(p, {"w": w}, graph=g)
    assert czmodel.load(p).backend.name == "c"


def test_weights_only_file(cb, tmp_path):
    p = tmp_path / "w.cz"
    czmodel.write(p, {"w": rand(3, 3)})
    with pytest.raises(FormatError):
        cb.CModel(p)


def test_bad_feeds(cb, tmp_path):
    p, feeds = mlp(tmp_path)
    m = cb.CModel(p)
    x = feeds["x"]
    cases = [({"y": x}, "unknown input"), ({}, "missing input"),
             ({"x": x, "z": x}, "unknown input"),
             ({"x": x.astype(np.float64)}, "dtype f64"), ({"x": x[None]}, "rank"),
             ({"x": x[:, :50]}, "dim 1"), ({"x": x.astype(np.complex64)}, "complex")]
    for f, msg in cases:
        with pytest.raises(RuntimeInputError, match=msg):
            m.run(f)
    with pytest.raises(RuntimeInputError):
        m.run([x])
    # non-contiguous and list feeds are converted
    np.testing.assert_allclose(m.run({"x": np.asfortranarray(x)})["y"], m.run(feeds)["y"])
    np.testing.assert_allclose(m.run({"x": x.tolist()})["y"], m.run(feeds)["y"], rtol=1e-6)


def test_symbolic_dims_consistent(cb, tmp_path):
    g = Graph([ValueInfo("a", "f32", ["N", 3]), ValueInfo("b", "f32", ["N", 3])],
              [ValueInfo("c", "f32", ["N", 3])], [OpNode("Add", "n0", ["a", "b"], ["c"])])
    p = tmp_path / "s.cz"
    czmodel.write(p, {}, graph=g)
    m = cb.CModel(p)
    with pytest.raises(RuntimeInputError, match="symbolic dim 'N'"):
        m.run({"a": rand(2, 3), "b": rand(4, 3)})


def test_graph_validation_errors(cb, tmp_path):
    """The C graph validator rejects what the Python one rejects, with the same class."""
    base = {"opset": 1, "inputs": [{"name": "x", "dtype": "f32", "shape": ["N", 4]}],
            "outputs": [{"name": "y", "dtype": "f32", "shape": ["N", 4]}],
            "nodes": [{"op": "Relu", "name": "r", "inputs": ["x"], "outputs": ["y"],
                       "attrs": {}}]}
    import copy

    from czmodel.format import writer as W

    def variant(fn):
        g = copy.deepcopy(base)
        fn(g)
        return g

    bad = [
        (lambda g: g["nodes"][0].update(op="Nope"), UnsupportedError),
        (lambda g: g["nodes"][0].update(inputs=["q"]), FormatError),
        (lambda g: g["nodes"][0].update(attrs={"alpha": 1.0}), FormatError),
        (lambda g: g["nodes"][0].update(outputs=["y", "z"]), FormatError),
        (lambda g: g["outputs"][0].update(name="zz"), FormatError),
        (lambda g: g["inputs"][0].update(dtype="c64"), UnsupportedError),
        (lambda g: g["nodes"].append({"op": "Relu", "name": "r", "inputs": ["y"],
                                      "outputs": ["y2"], "attrs": {}}), FormatError),
        (lambda g: g["nodes"].insert(0, {"op": "Softmax", "name": "s", "inputs": ["x"],
                                         "outputs": ["s"], "attrs": {"axis": "1"}}),
         FormatError),
        (lambda g: g["nodes"].insert(0, {"op": "Gelu", "name": "s", "inputs": ["x"],
                                         "outputs": ["s"], "attrs": {"approximate": "erf"}}),
         UnsupportedError),
        (lambda g: g["nodes"].insert(0, {"op": "MaxPool", "name": "s", "inputs": ["x"],
                                         "outputs": ["s"], "attrs": {}}), FormatError),
        (lambda g: g["nodes"].insert(0, {"op": "Conv", "name": "s", "inputs": ["x", "x"],
                                         "outputs": ["s"],
                                         "attrs": {"kernel_shape": [3, 3, 3]}}),
         UnsupportedError),
        (lambda g: g["nodes"].insert(0, {"op": "Resize", "name": "s", "inputs": ["x"],
                                         "outputs": ["s"], "attrs": {}}), FormatError),
        (lambda g: g.update(opset=2), UnsupportedError),
    ]
    for fn, cls in bad:
        g = variant(fn)
        data = W.build_file({}, graph=g)
        with pytest.raises(cls, match=r"node '\w+' \(\w+\)|graph"):
            cb.CModel(data)
        with pytest.raises(cls):
            Graph.from_header(g, set())


# ---------------------------------------------------------------------------- fast path
def test_run_fast_path(cb, tmp_path):
    """CModel.run reuses the previous call's descriptors when names, shapes and dtypes repeat
    (the serving loop); every result must equal the general path's, each call returns new
    arrays, and any change (shape, dtype, non-contiguous input, non-ndarray feed, extra
    feed, closed model) goes through the general path with its usual results and errors."""
    p, _ = lenet5(tmp_path)
    m = cb.CModel(p, threads=1)
    xs = [rand(2, 1, 28, 28) for _ in range(4)]
    want = [m._run_slow({"x": x})["y"].copy() for x in xs]
    outs = []
    for _ in range(3):
        for x, w in zip(xs, want):
            y = m.run({"x": x})["y"]
            np.testing.assert_array_equal(y, w)
            outs.append(y)
    assert m._tls.fast is not None   # the fast path was armed
    assert len({id(o) for o in outs}) == len(outs) and not np.shares_memory(outs[-1], outs[-2])
    np.testing.assert_array_equal(outs[0], want[0])   # (not overwritten by later calls)
    # other batch size, then back
    x3 = rand(3, 1, 28, 28)
    y3 = [m.run({"x": x3})["y"] for _ in range(3)]
    assert y3[0].shape == (3, 10)
    np.testing.assert_array_equal(y3[0], y3[2])
    np.testing.assert_array_equal(m.run({"x": xs[1]})["y"], want[1])
    # non-contiguous input, non-ndarray input, float64 input
    xw = np.zeros((2, 1, 28, 56), F)
    xw[..., ::2] = xs[2]
    xnc = xw[..., ::2]
    assert not xnc.flags.c_contiguous
    np.testing.assert_array_equal(m.run({"x": xnc})["y"], want[2])
    np.testing.assert_array_equal(m.run({"x": xs[3].tolist()})["y"], want[3])
    with pytest.raises(RuntimeInputError):
        m.run({"x": xs[0].astype(np.float64)})
    np.testing.assert_array_equal(m.run({"x": xs[0]})["y"], want[0])
    np.testing.assert_array_equal(m.run({"x": xs[0]})["y"], want[0])
    with pytest.raises(RuntimeInputError):
        m.run({"x": xs[0], "extra": xs[0]})
    with pytest.raises(RuntimeInputError):
        m.run({"x": rand(2, 1, 27, 28)})
    np.testing.assert_array_equal(m.run({"x": xs[0]})["y"], want[0])
    m.close()
    with pytest.raises(ValueError):
        m.run({"x": xs[0]})


def test_run_fast_path_data_dependent_shape(cb, tmp_path):
    """A graph output whose shape depends on the data: the fast path sees C report another
    shape than the previous call's and repeats the call on the general path."""
    g = Graph([ValueInfo("x", "f32", [4])], [ValueInfo("y", "f32", ["K"])],
              [OpNode("Greater", "gt", ["x", "zero"], ["m"]),
               OpNode("Cast", "c", ["m"], ["mi"], {"to": "i64"}),
               OpNode("ReduceSum", "s", ["mi"], ["n"], {"keepdims": 1}),
               OpNode("Slice", "sl", ["x", "start", "n"], ["y"])])
    p = tmp_path / "dyn.cz"
    czmodel.write(p, {"zero": np.zeros(1, F), "start": np.zeros(1, np.int64)}, graph=g)
    m = cb.CModel(p, threads=1)
    for x in ([1, 2, -1, -1], [1, 2, -1, -1], [1, 2, -1, -1], [1, 2, 3, -1], [1, -2, 3, 4],
              [1, 2, 3, 4], [1, 2, 3, 4], [-1, 2, 3, 4]):
        x = np.array(x, F)
        n = int((x > 0).sum())
        np.testing.assert_array_equal(m.run({"x": x})["y"], x[:n])


# ---------------------------------------------------------------------------- threads
def test_threads_same_as_sequential(cb, tmp_path):
    p, _ = lenet5(tmp_path)
    m = cb.CModel(p, threads=2)
    feeds = [{"x": rand(2, 1, 28, 28)} for _ in range(8)]
    want = [m.run(f)["y"] for f in feeds]
    got = [None] * 8
    errs = []

    def work(i):
        try:
            for _ in range(3):
                got[i] = m.run(feeds[i])["y"]
        except Exception as e:  # noqa: BLE001
            errs.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs, errs
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_gil_released(cb, tmp_path):
    """While one thread is inside cz_run, another thread keeps running Python code.

    The spinner is known to be running before the runs start, and the runs last ~0.3 s, so
    a busy machine cannot make this flaky (it used to fail when the spinner had not been
    scheduled yet during one short run)."""
    p, _ = lenet5(tmp_path)
    m = cb.CModel(p, threads=1)
    x = {"x": rand(64, 1, 28, 28)}
    m.run(x)
    done, started = threading.Event(), threading.Event()
    ticks = [0]

    def spin():
        started.set()
        while not done.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spin)
    import sys
    import time
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        t.start()
        assert started.wait(10)
        before = ticks[0]
        t_end = time.perf_counter() + 0.3
        while time.perf_counter() < t_end:
            m.run(x)
        during = ticks[0] - before
    finally:
        done.set()
        t.join()
        sys.setswitchinterval(old)
    assert during > 1000, during


# ---------------------------------------------------------------------------- cz_run tool
def test_cz_run_tool(cb, cz_run_bin, tmp_path):
    p, feeds = attention(tmp_path)
    np.save(tmp_path / "x.npy", feeds["x"])
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([cz_run_bin, str(p), "--input", f"x={tmp_path / 'x.npy'}", "-o",
                        str(out), "--threads", "2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    y = np.load(out / "y.npy")
    ref = load(p, backend="reference").run(feeds)["y"]
    compare(y, ref, heavy=True)
    np.testing.assert_array_equal(y, cb.CModel(p, threads=2).run(feeds)["y"])


def test_cz_run_tool_errors(cz_run_bin, tmp_path):
    p, feeds = mlp(tmp_path)
    np.save(tmp_path / "x.npy", feeds["x"])
    np.save(tmp_path / "x64.npy", feeds["x"].astype(np.float64))
    np.save(tmp_path / "xf.npy", np.asfortranarray(rand(5, 100)))
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}\n")

    def run(*args):
        return subprocess.run([cz_run_bin, *map(str, args)], capture_output=True, text=True)

    assert run().returncode == 2
    assert run(p, "--input").returncode == 2
    assert run(p, "--input", "noequals").returncode == 2
    assert run(p, "--threads", "0").returncode == 2
    r = run(p, "--input", f"x={tmp_path / 'x64.npy'}", "-o", tmp_path)
    assert r.returncode == 1 and "dtype" in r.stderr
    r = run(p, "--input", f"q={tmp_path / 'x.npy'}", "-o", tmp_path)
    assert r.returncode == 1 and "unknown input" in r.stderr
    r = run(p, "-o", tmp_path)
    assert r.returncode == 1 and "missing input" in r.stderr
    r = run(p, "--input", f"x={tmp_path / 'junk.npy'}")
    assert r.returncode == 1
    r = run(p, "--input", f"x={tmp_path / 'nope.npy'}")
    assert r.returncode == 1
    r = run(tmp_path / "x.npy", "--input", f"x={tmp_path / 'x.npy'}")
    assert r.returncode == 1 and "CZ_ERR" in r.stderr
    # .npy format version 2 headers are read too
    with open(tmp_path / "x2.npy", "wb") as fh:
        np.lib.format.write_array(fh, feeds["x"], version=(2, 0))
    out = tmp_path / "o2"
    out.mkdir()
    r = run(p, "--input", f"x={tmp_path / 'x2.npy'}", "-o", out)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(out / "y.npy"),
                               load(p, backend="reference").run(feeds)["y"], rtol=1e-4,
                               atol=1e-6)
    # truncated data is refused
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "xt.npy").write_bytes(raw[:-4])
    r = run(p, "--input", f"x={tmp_path / 'xt.npy'}")
    assert r.returncode == 1 and "data bytes" in r.stderr
    # Fortran-ordered .npy files are refused, not misread
    r = run(p, "--input", f"x={tmp_path / 'xf.npy'}")
    assert r.returncode == 1 and "fortran" in r.stderr
    assert shutil.which(cz_run_bin)


# ---------------------------------------------------------------------------- validator parity
_POOL = [None, True, 0, 1, -1, 2, 3, 1 << 41, 1.5, float("nan"), "", "x", "y", "h", "w",
         "Relu", "Conv", "Split", "NOTSET", "f32", "i64", "N", [], [1], [3, 3], [1, 1, 1, 1],
         ["x"], ["h"], ["x", "w"], ["", "x"], {}, {"axis": 1}, {"kernel_shape": [3, 3]}]


def _mutate(obj, rng, depth=0):
    """Replace one random sub-value (or add/drop a key / item) of a nested header graph."""
    if isinstance(obj, dict) and obj:
        k = list(obj)[rng.integers(len(obj))]
        r = rng.random()
        if r < 0.1:
            del obj[k]
        elif r < 0.2:
            obj[str(_POOL[rng.integers(len(_POOL))]) or "k"] = _POOL[rng.integers(len(_POOL))]
        elif r < 0.55 or not isinstance(obj[k], (dict, list)) or depth > 4:
            obj[k] = _POOL[rng.integers(len(_POOL))]
        else:
            _mutate(obj[k], rng, depth + 1)
    elif isinstance(obj, list) and obj:
        i = int(rng.integers(len(obj)))
        r = rng.random()
        if r < 0.1:
            del obj[i]
        elif r < 0.2:
            obj.insert(i, _POOL[rng.integers(len(_POOL))])
        elif r < 0.5 or not isinstance(obj[i], (dict, list)) or depth > 4:
            obj[i] = _POOL[rng.integers(len(_POOL))]
        else:
            _mutate(obj[i], rng, depth + 1)


def test_graph_validator_parity_fuzz(cb):
    """Randomly mutated graphs: the C validator accepts exactly what the Python one accepts,
    and rejects with the same error class."""
    import copy

    from czmodel.format import writer as W

    base = Graph([ValueInfo("x", "f32", ["N", 3, 8, 8])], [ValueInfo("y", "f32", ["N", 4]),
                                                           ValueInfo("s", "i64", [4])],
                 [OpNode("Conv", "c", ["x", "w", ""], ["h"], {"kernel_shape": [3, 3],
                                                            "pads": [1, 1, 1, 1]}),
                  OpNode("Relu", "r", ["h"], ["h2"]),
                  OpNode("Split", "sp", ["h2"], ["a", "b"], {"axis": 1, "num_outputs": 2}),
                  OpNode("Shape", "shp", ["a"], ["s"]),
                  OpNode("GlobalAveragePool", "g", ["b"], ["gp"]),
                  OpNode("Flatten", "f", ["gp"], ["y"])]).to_header()
    tensors = {"w": rand(4, 3, 3, 3)}
    rng = np.random.default_rng(int(os.environ.get("CZ_FUZZ_SEED", "11")))
    agree = {"ok": 0, "err": 0}
    for _ in range(int(os.environ.get("CZ_FUZZ_N", "600"))):
        g = copy.deepcopy(base)
        for _ in range(int(rng.integers(1, 3))):
            _mutate(g, rng)
        try:
            data = W.build_file(tensors, graph=g)
        except CzError:
            continue
        try:   # the Python reading path: file checks, then the graph validator
            with czmodel.open(data) as f:
                Graph.from_header(f.graph, set(f))
            want = None
        except CzError as e:
            want = type(e)
        try:
            cb.CModel(data).close()
            got = None
        except CzError as e:
            got = type(e)
            if want is None:
                raise AssertionError(f"C rejects a graph Python accepts: {e}\n{g}") from None
        assert got is want, (got, want, g)
        agree["ok" if want is None else "err"] += 1
    assert agree["ok"] > 5 and agree["err"] > 200, agree


# ---------------------------------------------------------------------------- load-time paths
def _table_encodings():
    """Compressed embedding tables (rows x 24) of every form kind Gather reads in place."""
    t = rand(40, 24)
    s_row = (np.abs(t).max(axis=1) / 127).astype(F)
    q_row = np.clip(np.rint(t / s_row[:, None]), -127, 127).astype(np.int64)
    s_t = np.float32(np.abs(t).max() / 7)
    q4 = np.clip(np.rint(t / s_t), -7, 7).astype(np.int64)
    qu = RNG.integers(0, 256, t.shape)
    zp = RNG.integers(100, 156, (40, 3))
    sg = (RNG.random((40, 3)) * 0.01 + 0.001).astype(F)
    cent = np.linspace(-1, 1, 16).astype(F)
    cent_rows = np.sort(RNG.standard_normal((40, 8)), axis=1).astype(F)
    return {
        "affine int8 per row": E.affine(q_row, s_row, bits=8, axis=0),
        "affine int4 per tensor": E.affine(q4, np.array([s_t], F), bits=4),
        "affine uint8 group 8 zp": E.affine(qu, sg, zp, bits=8, signed=False, group_size=8),
        "codebook per tensor": E.codebook(RNG.integers(0, 16, t.shape), cent, bits=4),
        "codebook per row f16": E.codebook(RNG.integers(0, 8, t.shape), cent_rows, bits=3,
                                           axis=0, centroid_dtype="f16"),
        "dense": t,
    }


@pytest.mark.parametrize("name", list(_table_encodings()))
def test_gather_reads_compressed_tables_in_place(cb, tmp_path, name):
    """Gather along axis 0 over a compressed file tensor decodes only the rows it picks
    (czk_form_row: no dense copy of the table at load), bit-identical to the dense decode;
    the same table also feeds a Linear (tied embeddings), and a Gather along axis 1 still
    works (it needs the dense decode)."""
    enc = _table_encodings()[name]
    g = Graph([ValueInfo("ids", "i64", ["B", 5])],
              [ValueInfo("e", "f32", ["B", 5, 24]), ValueInfo("e2", "f32", ["B", 5, 24]),
               ValueInfo("z", "f32", ["B", 5, 40])],
              [OpNode("Gather", "emb", ["tab", "ids"], ["e"]),
               OpNode("Gather", "emb_neg", ["tab", "ids_neg"], ["e2"], {"axis": -2}),
               OpNode("Linear", "tied", ["e", "tab"], ["z"])])
    p = tmp_path / "gather.cz"
    czmodel.write(p, {"tab": enc, "ids_neg": np.array([-1, -40, 3], np.int64)}, graph=g)
    feeds = {"ids": RNG.integers(0, 40, (3, 5)).astype(np.int64)}
    g2 = Graph([ValueInfo("ids", "i64", [4])], [ValueInfo("c", "f32", [40, 4])],
               [OpNode("Gather", "cols", ["tab", "ids"], ["c"], {"axis": 1})])
    p2 = tmp_path / "gather_axis1.cz"
    czmodel.write(p2, {"tab": enc}, graph=g2)
    for path, fd in ((p, feeds), (p2, {"ids": np.array([0, 23, -1, 5], np.int64)})):
        ref = load(path, backend="reference").run(fd)
        with cb.CModel(path, threads=1) as m:
            got = m.run(fd)
        for k in ("e", "e2", "c"):
            if k in ref:
                np.testing.assert_array_equal(got[k], ref[k])
        if "z" in ref and name.startswith("affine"):   # int8 kernels: dynamic quantization
            assert rel_err(got["z"], ref["z"]) < 3e-2
        elif "z" in ref:
            compare(got["z"], ref["z"], False)


def _huffman_file(bits, n, payload=None):
    """A codebook whose n indices are Huffman coded in 256-symbol chunks (many chunks: the C
    decoder runs groups of four in lockstep, then finishes the rest one by one)."""
    from attacks._util import forced, set_payload

    from czmodel.codecs import codebook
    from czmodel.entropy.huffman import encode_huffman
    from czmodel.format.writer import build_file
    rng = np.random.default_rng(bits * 1000 + n)
    idx = (rng.standard_normal(n) * (1 << bits) / 6 + (1 << (bits - 1)))
    idx = idx.clip(0, (1 << bits) - 1).astype(np.uint8)
    cent = np.linspace(-1, 1, 1 << bits).astype(F)
    d = build_file({"h": forced(codebook(idx, cent, bits=bits), "raw", indices="huffman")})
    return set_payload(d, "h", "indices", payload if payload is not None
                       else encode_huffman(idx, bits, chunk_log2=8)), idx, cent


@pytest.mark.parametrize("bits,n", [(5, 50 * 256 + 37), (8, 9 * 256), (2, 4 * 256 + 1),
                                    (8, 7 * 256 + 255), (3, 3 * 256 + 7)])
def test_huffman_many_chunks(cb, bits, n):
    """Multi-chunk Huffman streams: the C decode equals the data; corrupted chunks (bit flips
    in the chunk data, CRCs fixed) get the same verdict from the C and the Python reader, and
    the same values when a flip still decodes."""
    from attacks._readers import c_read_tensor, c_reader, python_reader
    from attacks._util import payload_of
    d, idx, cent = _huffman_file(bits, n)
    np.testing.assert_array_equal(c_read_tensor(d, "h"), cent[idx])
    p0 = payload_of(d, "h", "indices")
    head = 1 + ((1 << bits) + 1) // 2 + 8 * (-(-n // 256))
    rng = np.random.default_rng(n)
    for _ in range(25):
        p = bytearray(p0)
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(head, len(p)))
            p[i] ^= 1 << int(rng.integers(0, 8))
        dd = _huffman_file(bits, n, bytes(p))[0]
        c, py = c_reader(dd), python_reader(dd)
        assert c.error == py.error, (c, py)
        if c.error is None:
            with czmodel.open(dd) as f:
                np.testing.assert_array_equal(c_read_tensor(dd, "h"), f["h"])


@pytest.mark.parametrize("shape,perm", [
    ((1, 13, 12, 32), [0, 2, 3, 1]),   # BERT key heads (the tiled path)
    ((2, 9, 3, 17), [0, 2, 3, 1]),
    ((17, 9), [1, 0]),
    ((3, 8, 8), [2, 1, 0]),
    ((10, 3, 11), [2, 0, 1]),
    ((4, 5, 8, 3), [3, 1, 2, 0]),      # X's last axis to output axis 0 of 4
    ((7, 6), [1, 0]),                  # under a tile: the gather
])
def test_transpose_tiled(cb, tmp_path, shape, perm):
    """Transpose moving X's last axis off the end runs in 8 x 8 tiles: the same bits"""
    x = rand(*shape)
    x.flat[0] = np.nan
    x.flat[1] = -0.0
    p, feeds = one_node(tmp_path, "Transpose", [x], {"perm": perm})
    with cb.CModel(p, threads=1) as m:
        got = m.run(feeds)["out0"]
    want = np.transpose(x, perm)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    y = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    p, feeds = one_node(tmp_path, "Transpose", [y], {"perm": perm}, name="i32")
    with cb.CModel(p, threads=1) as m:
        np.testing.assert_array_equal(m.run(feeds)["out0"], np.transpose(y, perm))
