"""The comparison / logical family of op set 1 (Equal, Less, Greater, LessOrEqual,
GreaterOrEqual, Not, And, Or, Xor, IsNaN, IsInf) and Min / Max (spec/ops.md 3.3).

* the reference backend against numpy written out independently, op by op;
* the Numba and C backends against the reference on one-node graphs: bool and integer
  results, and Min / Max (no arithmetic), bit-exact;
* faults: the same error class on every backend (run time) and in both graph validators
  (load time);
* the ONNX import of the attention-mask pattern PyTorch exports for BERT (Range,
  GreaterOrEqual, And, Where, Softmax, IsNaN, ...) with dynamic batch and sequence, against
  ONNX Runtime on every backend.
"""

from __future__ import annotations

import copy

import _converters_util as U  # noqa: F401 - puts czconvert on the path
import numpy as np
import pytest

import czmodel
from czmodel.errors import CzError, FormatError, RuntimeInputError, UnsupportedError
from czmodel.format.header import NUMPY_TO_TENSOR
from czmodel.graph import Graph, OpNode, ValueInfo
from czmodel.runtime import load

#: the ops this file covers on the C backend (tests/test_c_backend.py checks that every op of
#: op set 1 has a C-vs-reference case)
LOGICAL_OPS = frozenset({"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not",
                         "And", "Or", "Xor", "IsNaN", "IsInf", "Min", "Max"})

RNG = np.random.default_rng(2024)
F, F16, F64, I64, I32, B = np.float32, np.float16, np.float64, np.int64, np.int32, np.bool_


@pytest.fixture(scope="module")
def backends():
    """reference always; numba when importable; c built here when missing or stale (a
    failed build fails the tests, as in test_c_backend.py)."""
    from czconvert.node_suite import available_backends
    from czmodel.runtime import c_build

    c_build.build()
    names = available_backends()
    assert "c" in names, "the C backend did not load after building it"
    return names


# ---------------------------------------------------------------------------- helpers
def _write(tmp_path, op, inputs, attrs=None, name="m"):
    names, vis, feeds = [], [], {}
    for k, x in enumerate(inputs):
        if x is None:
            names.append("")
            continue
        x = np.asarray(x)
        n = f"in{k}"
        names.append(n)
        vis.append(ValueInfo(n, NUMPY_TO_TENSOR[x.dtype], list(x.shape)))
        feeds[n] = x
    g = Graph(vis, [ValueInfo("out0", "f32", [])],
              [OpNode(op, "n0", names, ["out0"], dict(attrs or {}))])
    p = tmp_path / f"{name}.cz"
    czmodel.write(p, {}, graph=g)
    return p, feeds


def run_all(backends, tmp_path, op, inputs, attrs=None):
    p, feeds = _write(tmp_path, op, inputs, attrs)
    out = {}
    for b in backends:
        with load(p, backend=b) as m:
            out[b] = m.run(feeds)["out0"]
    return out


def same(got, want):
    assert isinstance(got, np.ndarray), type(got)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)      # NaN == NaN here


def rand(*shape, dt=F):
    return RNG.standard_normal(shape).astype(dt)


def ints(*shape, dt=I64, lo=-4, hi=5):
    return RNG.integers(lo, hi, shape).astype(dt)


def bools(*shape):
    return RNG.random(shape) < 0.5


def f32(x):
    with np.errstate(over="ignore"):     # f64 1e300 -> inf, as op set 1 float ops convert
        return np.asarray(x).astype(F)


# ---------------------------------------------------------------------------- data
_special = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 3.5], F)
xf = rand(3, 8)
xf[0] = _special
yf = rand(8)
yf[[0, 2, 5]] = [0.0, 1.0, np.inf]          # equal values against row 0
xf[1, :4] = yf[:4]
xd = np.array([1.0 + 1e-12, 1e300, -1e300, np.nan, np.inf, 0.5], F64)   # f32 would blur these
yd = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.5], F64)
xh = np.array([0.0, 65504.0, -np.inf, np.nan, 1.0, np.inf], F16)
yh = np.array([0.0, 1.0, -np.inf, 0.0, 2.0, 1.0], F16)
xi = ints(2, 1, 5)
yi = ints(4, 5)

CMP = {"Equal": np.equal, "Less": np.less, "Greater": np.greater,
       "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal}

# (op, inputs, attrs, expected output computed here with numpy)
CASES = []
for _op, _fn in CMP.items():
    CASES += [
        (_op, [xf, yf], {}, _fn(xf, yf)),                                  # broadcast row
        (_op, [xf, xf[:, :1]], {}, _fn(xf, xf[:, :1])),                    # column
        (_op, [np.array(0.5, F), xf], {}, _fn(np.float32(0.5), xf)),       # 0-d
        (_op, [xd, yd], {}, _fn(f32(xd), f32(yd))),                        # f64 via f32
        (_op, [xh, yh], {}, _fn(f32(xh), f32(yh))),                        # f16 via f32
        (_op, [xh, f32(yh)], {}, _fn(f32(xh), f32(yh))),                   # floats are one
        (_op, [xi, yi], {}, _fn(xi, yi)),                                  # i64, (2,4,5)
        (_op, [xi.astype(I32), yi.astype(I32)], {}, _fn(xi, yi)),
        (_op, [ints(3, 4, dt=np.int8, lo=-128, hi=128), np.array([-128, 0, 5, 127], np.int8)],
         {}, None),
        (_op, [ints(6, dt=np.uint32, lo=0, hi=1 << 32),
               np.array([0, 1 << 31, (1 << 32) - 1, 7, 7, 0], np.uint32)], {}, None),
        (_op, [ints(6, dt=np.uint8, lo=0, hi=256), np.array(200, np.uint8)], {}, None),
        (_op, [np.array([[(1 << 62) + 1], [-(1 << 62)]], I64), np.array([1 << 62, -(1 << 62)],
                                                                       I64)], {}, None),
        (_op, [rand(0, 3), rand(1, 3)], {}, np.zeros((0, 3), B)),          # empty
    ]
CASES += [
    ("Equal", [bools(3, 4), bools(4)], {}, None),
    ("Not", [bools(2, 3, 4)], {}, None),
    ("Not", [np.array(True)], {}, np.array(False)),
]
for _op, _fn in (("And", np.logical_and), ("Or", np.logical_or), ("Xor", np.logical_xor)):
    _a, _b = bools(2, 3, 4), bools(3, 1)
    CASES += [
        (_op, [_a, _b], {}, _fn(_a, _b)),
        (_op, [_b, _a], {}, _fn(_b, _a)),
        (_op, [np.array(True), _a], {}, _fn(True, _a)),
        (_op, [np.array([[False, False, True, True]]), np.array([[False], [True]])], {},
         _fn([[False, False, True, True]], [[False], [True]])),
        (_op, [np.zeros((0, 4), B), np.ones((1, 4), B)], {}, np.zeros((0, 4), B)),
    ]
for _x in (xf, xd, xh, np.array(np.nan, F), rand(0, 2)):
    CASES += [("IsNaN", [_x], {}, np.isnan(_x))]
    for _neg, _pos in ((1, 1), (0, 1), (1, 0), (0, 0)):
        want = (np.isposinf(_x) & bool(_pos)) | (np.isneginf(_x) & bool(_neg))
        CASES += [("IsInf", [_x], {"detect_negative": _neg, "detect_positive": _pos}, want)]
CASES += [("IsInf", [xd], {}, np.array([False, False, False, False, True, False]))]

for _op, _fn in (("Min", np.minimum), ("Max", np.maximum)):
    _a, _b, _c = rand(2, 3, 4), rand(3, 1), rand(4)
    _a[0, 0, :3] = [np.nan, 0.0, -np.inf]
    _c[3] = np.nan
    CASES += [
        (_op, [_a], {}, _a.copy()),
        (_op, [_a, _b], {}, _fn(_a, _b)),
        (_op, [_b, _c, _a], {}, _fn(_fn(_b, _c), _a)),                   # broadcast of all
        (_op, [_b, None, _c], {}, _fn(_b, _c)),                           # "" skipped
        (_op, [xd, f32(yd)], {}, _fn(f32(xd), f32(yd))),                  # f64 -> f32
        (_op, [xh], {}, f32(xh)),
        (_op, [xi, yi, ints(5)], {}, None),
        (_op, [ints(3, 4, dt=np.uint8, lo=0, hi=256), np.array([0, 255, 7, 128], np.uint8)],
         {}, None),
        (_op, [np.array([1 << 62, -(1 << 63)], I64), np.array([(1 << 63) - 1, 5], I64)], {},
         None),
        (_op, [np.array(2.0, F), np.array([1.0, np.nan, 3.0], F)], {}, None),
        (_op, [rand(0, 4), rand(1, 4)], {}, np.zeros((0, 4), F)),
    ]
    CASES += [(_op, [rand(2, 2) for _ in range(64)], {}, None)]          # 64 inputs


def _id(c):
    shapes = ",".join("x".join(map(str, np.shape(x))) + str(np.asarray(x).dtype)
                      if x is not None else "-" for x in c[1][:4])
    return f"{c[0]}[{shapes}]{c[2] or ''}"


def _numpy(op, xs):
    """numpy directly on the operands (integers and bools need no conversion)."""
    if op == "Not":
        return np.logical_not(xs[0])
    fn = {**CMP, "Min": np.minimum, "Max": np.maximum}[op]
    y = np.asarray(xs[0])
    for x in xs[1:]:
        y = fn(y, x)
    return y.astype(F) if op in ("Min", "Max") and y.dtype.kind == "f" else y


def test_cases_cover_every_logical_op():
    assert {c[0] for c in CASES} == LOGICAL_OPS


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_op(backends, tmp_path, case):
    op, inputs, attrs, want = case
    got = run_all(backends, tmp_path, op, inputs, attrs)
    ref = got["reference"]
    if want is None:
        want = _numpy(op, [x for x in inputs if x is not None])
    same(ref, np.asarray(want))
    for y in got.values():
        same(y, ref)


# ---------------------------------------------------------------------------- faults
@pytest.mark.parametrize("op,inputs,attrs", [
    ("And", [rand(2, 3), bools(2, 3)], {}),
    ("Or", [bools(2, 3), ints(2, 3)], {}),
    ("Xor", [bools(2, 3), bools(3, 3)], {}),
    ("Less", [bools(2), bools(2)], {}),
    ("GreaterOrEqual", [rand(2), ints(2)], {}),
    ("LessOrEqual", [rand(2, 3), rand(4, 3)], {}),
    ("Equal", [bools(2), ints(2)], {}),
    ("IsNaN", [ints(3)], {}),
    ("IsInf", [bools(3)], {}),
    ("Min", [rand(2, 3), ints(2, 3)], {}),
    ("Max", [rand(2, 3), rand(3, 2)], {}),
    ("Max", [bools(2), bools(2)], {}),
    ("Min", [rand(2, 3), rand(3), rand(4)], {}),
])
def test_run_faults(backends, tmp_path, op, inputs, attrs):
    p, feeds = _write(tmp_path, op, inputs, attrs)
    for b in backends:
        with load(p, backend=b) as m, pytest.raises(CzError) as e:
            m.run(feeds)
        assert type(e.value) is RuntimeInputError, (b, e.value)
        assert "n0" in str(e.value), (b, str(e.value))


def test_load_faults(backends):
    """The C graph validator and the Python one reject the same malformed nodes alike."""
    from czmodel.format import writer as W
    from czmodel.runtime import c_backend

    base = {"opset": 1, "inputs": [{"name": "x", "dtype": "f32", "shape": ["N", 4]}],
            "outputs": [{"name": "y", "dtype": "bool", "shape": ["N", 4]}],
            "nodes": [{"op": "IsInf", "name": "n0", "inputs": ["x"], "outputs": ["y"],
                       "attrs": {}}]}
    bad = [
        ({"attrs": {"detect_negative": 2}}, UnsupportedError),
        ({"attrs": {"detect_positive": "1"}}, FormatError),
        ({"attrs": {"detect_sign": 1}}, FormatError),
        ({"op": "And", "inputs": ["x"]}, FormatError),
        ({"op": "Xor", "inputs": ["x", "x", "x"]}, FormatError),
        ({"op": "IsNaN", "attrs": {"axis": 0}}, FormatError),
        ({"op": "Min", "inputs": []}, FormatError),
        ({"op": "Max", "inputs": ["x"] * 65}, czmodel.errors.LimitError),
        ({"op": "Min", "inputs": ["", "x"]}, FormatError),          # input 0 is required
    ]
    for upd, cls in bad:
        g = copy.deepcopy(base)
        g["nodes"][0].update(upd)
        with pytest.raises(cls):
            Graph.from_header(g, set())
        data = W.build_file({}, graph=g)
        with pytest.raises(cls, match=r"node 'n0' \(\w+\)"):
            c_backend.CModel(data)
    ok = copy.deepcopy(base)
    ok["nodes"][0].update(op="Max", inputs=["x", "", "x"])
    ok["outputs"][0]["dtype"] = "f32"
    Graph.from_header(ok, set())
    with c_backend.CModel(W.build_file({}, graph=ok)) as m:
        x = rand(2, 4)
        same(m.run({"x": x})["y"], x)


def test_gather_scalar_index_is_an_array(backends, tmp_path):
    """Shape -> Gather(0-d index) -> Cast -> Range (BERT's position ids): the 0-d Gather
    result is an array on every backend (the reference returned a numpy scalar, which Range
    refused)."""
    g = Graph([ValueInfo("x", "f32", ["N", "S"])], [ValueInfo("r", "i64", ["S"])], [
        OpNode("Shape", "s", ["x"], ["sh"]),
        OpNode("Gather", "g", ["sh", "one"], ["n"], {"axis": 0}),
        OpNode("Cast", "c", ["n"], ["n64"], {"to": "i64"}),
        OpNode("Range", "r", ["zero", "n64", "one"], ["r"])])
    p = tmp_path / "g.cz"
    czmodel.write(p, {"one": np.array(1, I64), "zero": np.array(0, I64)}, graph=g)
    for b in backends:
        with load(p, backend=b) as m:
            same(m.run({"x": rand(2, 5)})["r"], np.arange(5, dtype=I64))


# ---------------------------------------------------------------------------- ONNX import
def _mask_model():
    """BERT's exported attention-mask logic (torch SDPA path) on dynamic batch / sequence."""
    from onnx import TensorProto as T
    from onnx import helper as h

    c = h.make_tensor
    make_model, vi = U.make_model, U.vi
    nodes = [
        h.make_node("Shape", ["mask"], ["shp"]),
        h.make_node("Gather", ["shp", "k1"], ["seq"], axis=0),
        h.make_node("Range", ["k0", "seq", "k1"], ["pos"]),
        h.make_node("GreaterOrEqual", ["pos", "k0"], ["ge"]),
        h.make_node("LessOrEqual", ["pos", "seq"], ["le"]),
        h.make_node("Cast", ["mask"], ["mb"], to=T.BOOL),
        h.make_node("ConstantOfShape", ["k1v"], ["true"], value=c("v", T.BOOL, [1], [True])),
        h.make_node("And", ["true", "ge"], ["a1"]),
        h.make_node("And", ["a1", "mb"], ["keep"]),
        h.make_node("Or", ["keep", "le"], ["any"]),
        h.make_node("Xor", ["keep", "any"], ["dropped"]),
        h.make_node("Not", ["dropped"], ["kept"]),
        h.make_node("Unsqueeze", ["keep", "ax12"], ["keep4"]),
        h.make_node("Where", ["keep4", "fz", "fninf"], ["bias"]),
        h.make_node("Add", ["scores", "bias"], ["sb"]),
        h.make_node("Softmax", ["sb"], ["p"], axis=-1),
        h.make_node("IsNaN", ["p"], ["nan"]),
        h.make_node("Where", ["nan", "fz", "p"], ["probs"]),
        h.make_node("IsInf", ["bias"], ["ninf"], detect_positive=0),
        h.make_node("Max", ["scores", "bias", "fz"], ["mx"]),
        h.make_node("Min", ["mx", "fone"], ["clamped"]),
        h.make_node("Greater", ["probs", "fhalf"], ["big"]),
        h.make_node("Equal", ["bias", "fz"], ["zero"]),      # (C's Softmax gives 1e-38 for
                                                             # exp(-inf): compare exact values)
        h.make_node("Less", ["scores", "fz"], ["neg"]),
    ]
    inits = [("k0", np.array(0, I64)), ("k1", np.array(1, I64)), ("k1v", np.array([1], I64)),
             ("ax12", np.array([1, 2], I64)), ("fz", np.array(0.0, F)),
             ("fninf", np.array(-np.inf, F)), ("fone", np.array(1.0, F)),
             ("fhalf", np.array(0.5, F))]
    full, b11s = ["B", 2, "S", "S"], ["B", 1, 1, "S"]
    outs = {"probs": (T.FLOAT, full), "ninf": (T.BOOL, b11s), "clamped": (T.FLOAT, full),
            "big": (T.BOOL, full), "zero": (T.BOOL, b11s), "neg": (T.BOOL, full),
            "kept": (T.BOOL, ["B", "S"])}
    return make_model(nodes, [vi("mask", ["B", "S"], T.INT64), vi("scores", full)],
                      [vi(k, shp, t) for k, (t, shp) in outs.items()], inits)


@pytest.mark.parametrize("lengths", [[3, 5], [4], [1, 6, 2], [0, 3]])
def test_onnx_mask_pattern_matches_ort(backends, tmp_path, lengths):
    from czconvert import onnx_to_cz

    model = _mask_model()
    p = tmp_path / "mask.cz"
    rep = onnx_to_cz(model, p)
    assert {"GreaterOrEqual", "And", "IsNaN", "IsInf", "Min", "Max", "Or", "Xor"} <= set(
        rep.conversion.ops), rep.conversion.ops
    s = max(max(lengths), 1)
    mask = np.array([[1] * n + [0] * (s - n) for n in lengths], I64)
    feeds = {"mask": mask, "scores": rand(len(lengths), 2, s, s) * 3}
    want = dict(zip([o.name for o in model.graph.output], U.ort_run(model, feeds)))
    if lengths[0] == 0:   # a fully padded row: softmax of -inf only is NaN, then zeroed
        assert not want["probs"][0].any()
    for b in backends:
        with load(p, backend=b) as m:
            got = m.run(feeds)
        for k, w in want.items():
            w = np.asarray(w)
            if w.dtype.kind == "f":
                assert got[k].dtype == w.dtype and got[k].shape == w.shape, (b, k)
                np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-6, err_msg=f"{b} {k}")
            else:
                same(got[k], w)
