"""ONNX -> .cz import: lowering, folding, Linear rewrite, errors, compression, calibration;
and .cz -> ONNX export round trips through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from _converters_util import BACKENDS, make_model, ort_run, vi
from onnx import TensorProto, helper

import czmodel
import czmodel.runtime as rt
from czconvert import SUPPORTED_OPS, cz_to_onnx, onnx_to_cz
from czmodel.errors import EncodeError, UnsupportedError

RNG = np.random.default_rng(0)


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _ops(path):
    with czmodel.open(path) as f:
        return [n["op"] for n in f.graph["nodes"]]


def _run(path, feeds, backend="reference"):
    with rt.load(path, backend=backend) as m:
        return m.run(feeds)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_becomes_linear_with_out_in_weight(tmp_path, backend, trans_b):
    w = _f(6, 4) if trans_b else _f(4, 6)                 # out=6, in=4
    c = _f(6)
    m = make_model([helper.make_node("Gemm", ["x", "W", "C"], ["y"], transB=trans_b,
                                     alpha=0.5, beta=2.0)],
                   [vi("x", [3, 4])], [vi("y", [3, 6])], [("W", w), ("C", c)])
    p = tmp_path / "g.cz"
    rep = onnx_to_cz(m, p)
    assert _ops(p) == ["Linear"] and rep.conversion.linear == 1
    with czmodel.open(p) as f:
        assert f["W"].shape == (6, 4)                      # (out, in) whatever transB was
    x = _f(3, 4)
    want = ort_run(m, {"x": x})[0]
    np.testing.assert_allclose(_run(p, {"x": x}, backend)["y"], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_plus_add_folds_bias_3d(tmp_path, backend):
    w, b = _f(8, 5), _f(5)
    m = make_model([helper.make_node("MatMul", ["x", "W"], ["h"]),
                    helper.make_node("Add", ["h", "B"], ["y"])],
                   [vi("x", ["N", 3, 8])], [vi("y", ["N", 3, 5])], [("W", w), ("B", b)])
    p = tmp_path / "m.cz"
    rep = onnx_to_cz(m, p)
    assert _ops(p) == ["Linear"] and rep.conversion.bias_folded == 1
    with czmodel.open(p) as f:
        np.testing.assert_array_equal(f["W"], w.T)
    x = _f(2, 3, 8)
    np.testing.assert_allclose(_run(p, {"x": x}, backend)["y"], ort_run(m, {"x": x})[0],
                               rtol=1e-4, atol=1e-5)


def test_matmul_shared_weight_and_non_row_add_are_kept_correct(tmp_path):
    w = _f(4, 4)
    bias2d = _f(3, 4)                                       # not a row vector: stays an Add
    m = make_model([helper.make_node("MatMul", ["x", "W"], ["h"]),
                    helper.make_node("Add", ["h", "B"], ["h2"]),
                    helper.make_node("MatMul", ["h2", "W"], ["y"])],
                   [vi("x", [3, 4])], [vi("y", [3, 4])], [("W", w), ("B", bias2d)])
    p = tmp_path / "s.cz"
    onnx_to_cz(m, p)
    assert _ops(p) == ["Linear", "Add", "Linear"]
    x = _f(3, 4)
    np.testing.assert_allclose(_run(p, {"x": x})["y"], ort_run(m, {"x": x})[0], rtol=1e-4,
                               atol=1e-5)


def _bn_inputs(c):
    return [("s", RNG.uniform(0.5, 1.5, c).astype(np.float32)), ("b", _f(c)),
            ("mu", _f(c)), ("var", RNG.uniform(0.5, 2, c).astype(np.float32))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_batchnorm_folds_into_conv_and_gemm(tmp_path, backend):
    nodes = [helper.make_node("Conv", ["x", "Wc"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "mu", "var"], ["bn"],
                              epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Flatten", ["r"], ["fl"]),
             helper.make_node("Gemm", ["fl", "Wg"], ["g"], transB=1),
             helper.make_node("BatchNormalization", ["g", "s2", "b2", "mu2", "var2"], ["y"])]
    bn2 = [(k + "2", v) for k, v in _bn_inputs(5)]
    m = make_model(nodes, [vi("x", [2, 3, 4, 4])], [vi("y", [2, 5])],
                   [("Wc", _f(4, 3, 3, 3))] + _bn_inputs(4) + [("Wg", _f(5, 64))] + bn2)
    p = tmp_path / "bn.cz"
    rep = onnx_to_cz(m, p)
    assert rep.conversion.bn_folded == 2
    assert _ops(p) == ["Conv", "Relu", "Flatten", "Linear"]
    x = _f(2, 3, 4, 4)
    np.testing.assert_allclose(_run(p, {"x": x}, backend)["y"], ort_run(m, {"x": x})[0],
                               rtol=1e-4, atol=1e-5)


def test_static_shape_subgraph_is_folded_symbolic_is_kept(tmp_path):
    def model(batch):
        nodes = [helper.make_node("Shape", ["x"], ["s"]),
                 helper.make_node("Constant", [], ["i0"], value=helper.make_tensor(
                     "v", TensorProto.INT64, [], [0])),
                 helper.make_node("Gather", ["s", "i0"], ["n"]),
                 helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
                 helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
                 helper.make_node("Reshape", ["x", "shape"], ["r"]),
                 helper.make_node("Cast", ["r"], ["y"], to=TensorProto.DOUBLE)]
        return make_model(nodes, [vi("x", [batch, 3, 4])], [vi("y", [batch, 12],
                                                                TensorProto.DOUBLE)],
                          [("ax", np.array([0], np.int64)), ("minus1", np.array([-1],
                                                                                 np.int64))])
    p = tmp_path / "static.cz"
    onnx_to_cz(model(2), p)
    assert _ops(p) == ["Reshape", "Cast"]
    with czmodel.open(p) as f:
        cast = [n for n in f.graph["nodes"] if n["op"] == "Cast"][0]
        assert cast["attrs"]["to"] == "f64"                 # ONNX enum -> dtype name
    x = _f(2, 3, 4)
    y = _run(p, {"x": x})["y"]
    assert y.dtype == np.float64 and y.shape == (2, 12)
    p2 = tmp_path / "dyn.cz"
    onnx_to_cz(model("N"), p2)
    assert "Shape" in _ops(p2)
    np.testing.assert_array_equal(_run(p2, {"x": _f(5, 3, 4)})["y"].shape, (5, 12))


def test_old_opset_forms_softmax_split_squeeze(tmp_path):
    nodes = [helper.make_node("Softmax", ["x"], ["sm"], axis=1),          # Softmax-11: 2-D
             helper.make_node("Split", ["sm"], ["a", "b"], axis=2, split=[1, 3]),
             helper.make_node("Squeeze", ["a"], ["y1"], axes=[2]),
             helper.make_node("Unsqueeze", ["b"], ["y2"], axes=[0]),
             helper.make_node("ReduceSum", ["x"], ["y3"], axes=[1], keepdims=0)]
    m = make_model(nodes, [vi("x", [2, 3, 4])],
                   [vi("y1", [2, 3]), vi("y2", [1, 2, 3, 3]), vi("y3", [2, 4])], opset=11)
    p = tmp_path / "o11.cz"
    onnx_to_cz(m, p)
    x = _f(2, 3, 4)
    got = _run(p, {"x": x})
    for k, want in zip(["y1", "y2", "y3"], ort_run(m, {"x": x})):
        np.testing.assert_allclose(got[k], want, rtol=1e-4, atol=1e-6)


def test_opset_below_11_is_upgraded(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [3])], [vi("y", [3])],
                   opset=9)
    p = tmp_path / "o9.cz"
    assert onnx_to_cz(m, p).conversion.source_opset >= 11
    np.testing.assert_array_equal(_run(p, {"x": np.array([-1, 0, 2], np.float32)})["y"],
                                  [0, 0, 2])


def test_constant_node_and_initializer_become_file_tensors(tmp_path):
    k = _f(3)
    nodes = [helper.make_node("Constant", [], ["k"], value=helper.make_tensor(
                 "v", TensorProto.FLOAT, [3], k)),
             helper.make_node("Mul", ["x", "k"], ["t"]),
             helper.make_node("Add", ["t", "c"], ["y"])]
    m = make_model(nodes, [vi("x", [3])], [vi("y", [3])], [("c", _f(3))])
    p = tmp_path / "c.cz"
    onnx_to_cz(m, p)
    with czmodel.open(p) as f:
        assert set(f) == {"k", "c"}
        np.testing.assert_array_equal(f["k"], k)


def test_output_that_is_a_constant_or_an_input(tmp_path):
    m = make_model([helper.make_node("Constant", [], ["k"], value_ints=[1, 2])],
                   [vi("x", [2])], [vi("k", [2], TensorProto.INT64), vi("x", [2])])
    p = tmp_path / "io.cz"
    onnx_to_cz(m, p)
    with rt.load(p) as mod:
        out = mod.run({"x": np.ones(2, np.float32)})
        names = [v.name for v in mod.outputs]
    np.testing.assert_array_equal(out[names[0]], [1, 2])
    np.testing.assert_array_equal(out[names[1]], [1, 1])


def test_unsupported_op_is_a_clear_error_before_writing(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["r"], name="act"),
                    helper.make_node("TopK", ["r", "k"], ["v", "i"], name="topk_node")],
                   [vi("x", [5])], [vi("v", [2]), vi("i", [2], TensorProto.INT64)],
                   [("k", np.array([2], np.int64))])
    p = tmp_path / "never.cz"
    with pytest.raises(UnsupportedError) as ei:
        onnx_to_cz(m, p)
    msg = str(ei.value)
    assert "TopK" in msg and "topk_node" in msg and "Conv" in msg and "Gemm" in msg
    assert not p.exists()


def test_unsupported_attribute_value_names_the_node(tmp_path):
    m = make_model([helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect",
                                     name="padder")],
                   [vi("x", [1, 4])], [vi("y", [1, 6])], [("pads", np.array([0, 1, 0, 1]))])
    p = tmp_path / "never.cz"
    with pytest.raises(UnsupportedError, match="padder.*reflect"):
        onnx_to_cz(m, p)
    assert not p.exists()


def test_supported_ops_cover_op_set_1():
    from czmodel.graph import OPS

    assert set(OPS) - {"Linear"} <= set(SUPPORTED_OPS)


def _mlp_model():
    w1, w2 = _f(16, 32), _f(8, 16)
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["y"], transB=1)]
    return make_model(nodes, [vi("x", ["N", 32])], [vi("y", ["N", 8])],
                      [("fc1.weight", w1), ("fc1.bias", _f(16)), ("fc2.weight", w2),
                       ("fc2.bias", _f(8))])


def test_compression_applies_to_weights_by_consumer_op(tmp_path):
    cfg = {"default": {"entropy": "raw"},
           "op_types": {"Linear": {"prune": {"sparsity": 0.5},
                                   "quantize": {"method": "kmeans", "bits": 4}}}}
    p = tmp_path / "c.cz"
    rep = onnx_to_cz(_mlp_model(), p, cfg)
    assert rep.conversion.weights == {"fc1.weight": "Linear", "fc2.weight": "Linear"}
    with czmodel.open(p) as f:
        enc = {r["name"]: r["encoding"] for r in f.info()}
        assert enc["fc1.weight"].startswith("relidx") and "codebook" in enc["fc1.weight"]
        assert enc["fc1.bias"].startswith("dense")           # biases stay as they are
        assert np.count_nonzero(f["fc1.weight"]) <= 16 * 32 // 2
    x = _f(4, 32)
    y = _run(p, {"x": x})["y"]
    assert y.shape == (4, 8) and np.isfinite(y).all()


def test_int8_activation_calibration_is_stored(tmp_path):
    p = tmp_path / "q.cz"
    calib = {"x": _f(3, 5, 32)}                  # a stack of 3 batches of 5
    rep = onnx_to_cz(_mlp_model(), p, {"default": {}, "activations": {"dtype": "int8",
                                                                      "method": "entropy"}},
                     calib)
    assert rep.conversion.calibrated >= 3
    with czmodel.open(p) as f:
        cal = f.calibration
    assert {"x", "h", "r", "y"} <= set(cal)
    r = cal["r"]
    assert r["method"] == "entropy" and r["scale"] > 0 and r["zero_point"] == 0
    with pytest.raises(EncodeError, match="calibration set"):
        onnx_to_cz(_mlp_model(), tmp_path / "never.cz", activations="int8")


# -- .cz -> ONNX ----------------------------------------------------------------------------
def test_export_linear_forms(tmp_path):
    p = tmp_path / "m.cz"
    onnx_to_cz(_mlp_model(), p)
    m2 = cz_to_onnx(p, tmp_path / "m.onnx")
    assert [n.op_type for n in m2.graph.node] == ["Gemm", "Relu", "Gemm"]
    m3 = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])], [vi("x", [2, 3, 4])],
                    [vi("y", [2, 3, 5])], [("W", _f(4, 5))])
    onnx_to_cz(m3, tmp_path / "m3.cz")
    back = cz_to_onnx(tmp_path / "m3.cz", tmp_path / "m3.onnx")
    assert [n.op_type for n in back.graph.node] == ["MatMul"]
    x = _f(2, 3, 4)
    np.testing.assert_allclose(ort_run(back, {"x": x})[0], ort_run(m3, {"x": x})[0], rtol=1e-5)


def test_export_reduce_cast_constantofshape(tmp_path):
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Cast", ["m"], ["c"], to=TensorProto.INT32),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["z"], value=helper.make_tensor(
                 "v", TensorProto.INT64, [1], [7]))]
    m = make_model(nodes, [vi("x", ["N", 3])],
                   [vi("c", ["N", 1], TensorProto.INT32), vi("z", ["N", 3], TensorProto.INT64)],
                   opset=13)
    onnx_to_cz(m, tmp_path / "r.cz")
    back = cz_to_onnx(tmp_path / "r.cz", tmp_path / "r.onnx")
    x = _f(4, 3) * 10
    for a, b in zip(ort_run(back, {"x": x}), ort_run(m, {"x": x})):
        np.testing.assert_array_equal(a, b)

