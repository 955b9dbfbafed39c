"""Graph validation: every rule a hostile file can break is rejected with the right error
class and a message naming the node (and op)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import czmodel
from czmodel.errors import FormatError, LimitError, UnsupportedError
from czmodel.graph import OPS, Graph, OpNode, ValueInfo, validate_header_graph
from czmodel.graph import model as M

TENSORS = {"w", "b"}


def good() -> dict:
    return Graph([ValueInfo("x", "f32", ["N", 4])], [ValueInfo("y", "f32", ["N", 3])],
                 [OpNode("Linear", "fc", ["x", "w", "b"], ["h"]),
                  OpNode("Relu", "act", ["h"], ["y"])]).to_header()


def check(d, exc, *patterns, tensors=TENSORS):
    with pytest.raises(exc) as ei:
        validate_header_graph(d, tensors)
    for p in patterns:
        assert p in str(ei.value), (p, str(ei.value))
    return ei.value


def mutate(fn):
    d = good()
    fn(d)
    return d


def test_good_roundtrip():
    d = good()
    g = validate_header_graph(d, TENSORS)
    assert g.to_header() == d
    assert g.nodes[0].op == "Linear" and g.inputs[0].shape == ["N", 4]
    assert Graph.from_header(copy.deepcopy(d), TENSORS).to_header() == d


@pytest.mark.parametrize("d,exc,msg", [
    ([], FormatError, "must be a map"),
    ({"opset": 1}, FormatError, "missing"),
    (dict(good(), extra=1), FormatError, "unknown ['extra']"),
    (dict(good(), opset="1"), FormatError, "opset"),
    (dict(good(), opset=0), FormatError, "opset"),
    (dict(good(), opset=2), UnsupportedError, "newer"),
    (dict(good(), nodes={}), FormatError, "'nodes' must be a list"),
    (dict(good(), outputs=[]), FormatError, "at least one output"),
])
def test_graph_level(d, exc, msg):
    check(d, exc, msg)


@pytest.mark.parametrize("fn,exc,msg", [
    (lambda d: d["inputs"][0].pop("shape"), FormatError, "graph input 0"),
    (lambda d: d["inputs"][0].update(name=""), FormatError, "non-empty"),
    (lambda d: d["inputs"][0].update(dtype="f8"), UnsupportedError, "unknown dtype 'f8'"),
    (lambda d: d["inputs"][0].update(dtype=3), FormatError, "dtype must be a string"),
    (lambda d: d["inputs"][0].update(shape=[-1]), FormatError, "negative"),
    (lambda d: d["inputs"][0].update(shape=[1.5]), FormatError, "neither"),
    (lambda d: d["inputs"][0].update(shape=[""]), FormatError, "symbolic"),
    (lambda d: d["inputs"][0].update(shape=[1] * 17), FormatError, "dims"),
    (lambda d: d["inputs"][0].update(shape=[1 << 41]), LimitError, "exceeds"),
    (lambda d: d["outputs"][0].update(extra=1), FormatError, "graph output 0"),
])
def test_value_infos(fn, exc, msg):
    check(mutate(fn), exc, msg)


@pytest.mark.parametrize("fn,exc,msgs", [
    (lambda d: d["nodes"][1].update(op="Swish"), UnsupportedError,
     ["'act'", "unknown op 'Swish'", "Conv", "LayerNormalization", "Resize"]),
    (lambda d: d["nodes"][1].update(op=5), FormatError, ["graph node 1 'act'", "op must be"]),
    (lambda d: d["nodes"][1].update(foo=1), FormatError, ["graph node 1 'act'", "keys"]),
    (lambda d: d["nodes"][1].pop("attrs"), FormatError, ["graph node 1 'act'"]),
    (lambda d: d["nodes"].__setitem__(1, "Relu"), FormatError, ["graph node 1"]),
    (lambda d: d["nodes"][1].update(name=""), FormatError, ["graph node 1", "non-empty"]),
    (lambda d: d["nodes"][1].update(name="fc"), FormatError, ["'fc'", "used twice"]),
    (lambda d: d["nodes"][1].update(inputs=["h", "h"]), FormatError,
     ["'act' (Relu)", "takes 1 inputs, got 2"]),
    (lambda d: d["nodes"][0].update(inputs=["x"]), FormatError,
     ["'fc' (Linear)", "takes 2 to 3 inputs"]),
    (lambda d: d["nodes"][0].update(inputs=["x", "", "b"]), FormatError,
     ["'fc' (Linear)", "input 1 is required"]),
    (lambda d: d["nodes"][1].update(outputs=["y", "z"]), FormatError,
     ["'act' (Relu)", "produces 1 outputs, got 2"]),
    (lambda d: d["nodes"][1].update(outputs=[""]), FormatError, ["'act' (Relu)", "non-empty"]),
    (lambda d: d["nodes"][1].update(inputs="h"), FormatError, ["'act' (Relu)", "list"]),
    (lambda d: d["nodes"][1].update(inputs=[3]), FormatError, ["'act' (Relu)", "list"]),
    (lambda d: d["nodes"][1].update(attrs=[]), FormatError, ["'act' (Relu)", "attrs must"]),
    (lambda d: d["nodes"][1].update(attrs={"alpha": 1.0}), FormatError,
     ["'act' (Relu)", "unknown attribute 'alpha'"]),
    (lambda d: d["nodes"][1].update(inputs=["nowhere"]), FormatError,
     ["'act' (Relu)", "'nowhere'", "not a graph input"]),
    (lambda d: d["nodes"][1].update(outputs=["h"]), FormatError,
     ["'act' (Relu)", "'h' is defined twice"]),
    (lambda d: d["nodes"][1].update(outputs=["w"]), FormatError,
     ["'act' (Relu)", "defined twice", "file tensor"]),
    (lambda d: d["nodes"][1].update(outputs=["x"]), FormatError, ["defined twice"]),
    (lambda d: d["inputs"][0].update(name="w"), FormatError, ["graph input 'w'", "twice"]),
    (lambda d: d["outputs"][0].update(name="h2"), FormatError,
     ["graph output 'h2'", "not produced"]),
    (lambda d: d["outputs"].append(dict(d["outputs"][0])), FormatError, ["listed twice"]),
])
def test_node_rules(fn, exc, msgs):
    check(mutate(fn), exc, *msgs)


def test_topological_order_and_cycle():
    d = good()
    d["nodes"].reverse()                                  # act before fc: h used before defined
    check(d, FormatError, "'act' (Relu)", "'h'", "topological order")
    cyc = Graph([ValueInfo("x", "f32", [2])], [ValueInfo("y", "f32", [2])],
                [OpNode("Add", "a", ["x", "z"], ["y"]), OpNode("Relu", "b", ["y"], ["z"])])
    check(cyc.to_header(), FormatError, "'a' (Add)", "'z'", "cycle")
    self_loop = Graph([ValueInfo("x", "f32", [2])], [ValueInfo("y", "f32", [2])],
                      [OpNode("Add", "a", ["x", "y"], ["y"])])
    check(self_loop.to_header(), FormatError, "'a' (Add)", "cycle")


def test_omitted_optional_inputs():
    g = Graph([ValueInfo("x", "f32", [3])], [ValueInfo("y", "f32", [3])],
              [OpNode("Clip", "c", ["x", "", "b"], ["y"])])
    assert validate_header_graph(g.to_header(), {"b"}).nodes[0].inputs == ["x", "", "b"]
    g.nodes[0].inputs = ["x", "", ""]                     # trailing omitted inputs dropped
    assert validate_header_graph(g.to_header(), set()).nodes[0].inputs == ["x"]


def _node_graph(op, inputs, attrs, outputs=("y",)):
    return Graph([ValueInfo(n, "f32", [1]) for n in inputs if n],
                 [ValueInfo(o, "f32", [1]) for o in outputs],
                 [OpNode(op, "n", list(inputs), list(outputs), attrs)]).to_header()


@pytest.mark.parametrize("op,inputs,attrs,exc,msg", [
    ("Conv", ["x", "w"], {"group": 0}, FormatError, "must be >= 1"),
    ("Conv", ["x", "w"], {"group": 1.0}, FormatError, "'group' must be int"),
    ("Conv", ["x", "w"], {"group": True}, FormatError, "'group' must be int"),
    ("Conv", ["x", "w"], {"strides": 2}, FormatError, "must be a list"),
    ("Conv", ["x", "w"], {"strides": [1, "2"]}, FormatError, "'strides' must be ints"),
    ("Conv", ["x", "w"], {"pads": [1, 1]}, FormatError, "'pads' must have 4 values"),
    ("Conv", ["x", "w"], {"pads": [1, 1, 1, -1]}, FormatError, ">= 0"),
    ("Conv", ["x", "w"], {"kernel_shape": [3, 3, 3]}, UnsupportedError, "2-D"),
    ("Conv", ["x", "w"], {"auto_pad": "SAME"}, UnsupportedError, "allowed"),
    ("Conv", ["x", "w"], {"group": 1 << 64}, FormatError, "int64 range"),
    ("Resize", ["x", "", "s"], {"mode": "cubic"}, UnsupportedError, "'cubic'"),
    ("Resize", ["x", "", "s"], {"coordinate_transformation_mode": "tf_crop_and_resize"},
     UnsupportedError, "tf_crop_and_resize"),
    ("Resize", ["x"], {}, FormatError, "scales"),
    ("Cast", ["x"], {}, FormatError, "required attribute 'to'"),
    ("Cast", ["x"], {"to": 1}, FormatError, "'to' must be str"),
    ("Cast", ["x"], {"to": "float"}, UnsupportedError, "'float'"),
    ("Gelu", ["x"], {"approximate": "erf"}, UnsupportedError, "approximate"),
    ("LayerNormalization", ["x", "s"], {"epsilon": "small"}, FormatError, "float"),
    ("LayerNormalization", ["x", "s"], {"epsilon": float("nan")}, FormatError, "finite"),
    ("MaxPool", ["x"], {}, FormatError, "'kernel_shape' is missing"),
    ("MaxPool", ["x"], {"kernel_shape": [2, 2], "storage_order": 1}, UnsupportedError,
     "storage_order"),
    ("ReduceMean", ["x", "a"], {"axes": [1]}, FormatError, "both"),
    ("Split", ["x", "s"], {"num_outputs": 1}, FormatError, "mutually exclusive"),
    ("Concat", ["x"], {}, FormatError, "'axis' is missing"),
    ("Transpose", ["x"], {"perm": [0] * (M.MAX_ATTR_LIST + 1)}, LimitError, "elements"),
    ("ConvTranspose", ["x", "w"], {"output_shape": [4, 4]}, UnsupportedError, "output_shape"),
    ("BatchNormalization", ["x", "a", "b", "c", "d"], {"training_mode": 1}, UnsupportedError,
     "training_mode"),
])
def test_attribute_rules(op, inputs, attrs, exc, msg):
    check(_node_graph(op, inputs, attrs), exc, f"'n' ({op})", msg, tensors=set())


def test_split_num_outputs_mismatch():
    d = _node_graph("Split", ["x"], {"num_outputs": 3}, outputs=("a", "b"))
    check(d, FormatError, "'n' (Split)", "num_outputs=3")


def test_float_attr_accepts_int():
    g = validate_header_graph(_node_graph("LeakyRelu", ["x"], {"alpha": 1}), set())
    assert g.nodes[0].attrs["alpha"] == 1.0 and type(g.nodes[0].attrs["alpha"]) is float


def test_limits(monkeypatch):
    monkeypatch.setattr(M, "MAX_NODES", 3)
    d = good()
    d["nodes"] += [dict(d["nodes"][1], name=f"r{i}", inputs=["y"], outputs=[f"o{i}"])
                   for i in range(2)]
    check(d, LimitError, "4 nodes")
    d = _node_graph("Concat", [f"x{i}" for i in range(65)], {"axis": 0})
    check(d, LimitError, "'n' (Concat)", "65 inputs exceed 64", tensors=set())
    d = _node_graph("Split", ["x"], {}, outputs=[f"y{i}" for i in range(65)])
    check(d, LimitError, "'n' (Split)", "65 outputs exceed 64", tensors=set())


def test_registry_rows():
    for name, spec in OPS.items():
        assert spec.name == name
        assert 0 <= spec.min_inputs <= spec.max_inputs <= 64
        assert 1 <= spec.min_outputs <= spec.max_outputs <= 64
        assert spec.onnx == "ours" or spec.onnx.startswith(name + "-")


def test_write_accepts_graph_and_reads_back(tmp_path):
    g = Graph.from_header(good(), TENSORS)
    p = tmp_path / "m.cz"
    czmodel.write(p, {"w": np.ones((3, 4), np.float32), "b": np.zeros(3, np.float32)}, graph=g)
    with czmodel.open(p) as f:
        got = f.graph if isinstance(f.graph, Graph) else validate_header_graph(f.graph, set(f))
        assert got.to_header() == good()
    with pytest.raises(czmodel.EncodeError, match="'w'"):
        czmodel.write(p, {"b": np.zeros(3, np.float32)}, graph=g)
