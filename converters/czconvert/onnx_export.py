""".cz -> ONNX: ``cz_to_onnx(cz_path, onnx_path)``.

Every weight is decompressed to its dense array (fp32 for lossy encodings); every op of op set 1
except ``Linear`` is an ONNX op with the same name and attributes. Differences handled here:

* ``Linear(X, W, B)`` -> ``Gemm(X, W, B, transB=1)`` when X is 2-D (known from ONNX shape
  inference on the exported graph), else ``MatMul(X, Wᵀ)`` (+ ``Add(B)``);
* ``Cast.to`` dtype name -> ONNX enum; ``ConstantOfShape`` float ``value`` + ``dtype`` -> the
  one-element tensor attribute;
* ``ReduceMean`` / ``ReduceSum`` / ``ReduceMax`` with the ``axes`` attribute -> ``axes`` input
  (opset 18 form).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from czmodel.errors import FormatError
from czmodel.format.header import TENSOR_DTYPES
from czmodel.graph import OPS, Graph

from ._dtypes import DTYPE_TO_ONNX

EXPORT_OPSET = 20        # Gelu-20 is the newest op form op set 1 follows
_ATTR_TYPES = {"int": onnx.AttributeProto.INT, "float": onnx.AttributeProto.FLOAT,
               "str": onnx.AttributeProto.STRING, "ints": onnx.AttributeProto.INTS,
               "floats": onnx.AttributeProto.FLOATS, "strs": onnx.AttributeProto.STRINGS}


def _attr(op: str, key: str, value: Any) -> onnx.AttributeProto:
    t = _ATTR_TYPES[OPS[op].attrs[key].type]
    if t == onnx.AttributeProto.FLOAT:
        value = float(value)
    elif t == onnx.AttributeProto.FLOATS:
        value = [float(v) for v in value]
    return helper.make_attribute(key, value, attr_type=t)


def _node(op: str, ins: list[str], outs: list[str], name: str, attrs: dict) -> onnx.NodeProto:
    n = helper.make_node(op, ins, outs, name=name)
    n.attribute.extend(_attr(op, k, v) for k, v in attrs.items())
    return n


def _value_info(v: Any, with_shape: bool = True) -> onnx.ValueInfoProto:
    shape = [d if isinstance(d, str) else int(d) for d in v.shape] if with_shape else None
    return helper.make_tensor_value_info(v.name, DTYPE_TO_ONNX[v.dtype], shape)


class _Names:
    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)

    def __call__(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name = f"{base}_{k}"
            k += 1
        self.taken.add(name)
        return name


def graph_to_onnx(graph: Graph, tensors: dict[str, np.ndarray], *, opset: int = EXPORT_OPSET,
                  name: str = "czmodel") -> onnx.ModelProto:
    """An op set 1 graph and its (dense) tensors -> an ONNX model."""
    taken = set(tensors) | {v.name for v in graph.inputs} | {
        o for n in graph.nodes for o in n.outputs} | {n.name for n in graph.nodes}
    fresh = _Names(taken)
    inits: dict[str, np.ndarray] = {}
    nodes: list[onnx.NodeProto] = []
    linears: list[tuple[int, str, str, str, str, str, str]] = []   # for the Gemm pass
    transposed: dict[str, str] = {}

    def const(arr: np.ndarray, base: str) -> str:
        n = fresh(base)
        inits[n] = np.asarray(arr, order="C")
        return n

    for n in graph.nodes:
        for s in n.inputs:
            if s in tensors and s not in inits:
                inits[s] = tensors[s]
        attrs = dict(n.attrs)
        if n.op == "Linear":
            x, w = n.inputs[0], n.inputs[1]
            b = n.inputs[2] if len(n.inputs) > 2 else ""
            if w in tensors:
                if w not in transposed:
                    transposed[w] = const(np.asarray(tensors[w], np.float32).T, f"{w}.T")
                wt = transposed[w]
            else:
                wt = fresh(f"{n.name}_WT")
                nodes.append(_node("Transpose", [w], [wt], fresh(f"{n.name}/wT"), {"perm": [1, 0]}))
            y = n.outputs[0]
            mm_out = fresh(f"{y}_xw") if b else y
            linears.append((len(nodes), x, w, b, y, mm_out, n.name))
            nodes.append(_node("MatMul", [x, wt], [mm_out], n.name, {}))
            if b:
                nodes.append(_node("Add", [mm_out, b], [y], fresh(f"{n.name}/bias"), {}))
            continue
        ins = list(n.inputs)
        if n.op == "Cast":
            attrs["to"] = DTYPE_TO_ONNX[attrs["to"]]
            nodes.append(helper.make_node("Cast", ins, n.outputs, name=n.name, **attrs))
            continue
        if n.op == "ConstantOfShape":
            dt = attrs.pop("dtype", "f32")
            val = np.array([attrs.pop("value", 0.0)], np.float64)
            from czmodel.runtime.reference import cast_array
            t = numpy_helper.from_array(cast_array(val, dt).astype(TENSOR_DTYPES[dt]), "value")
            nd = helper.make_node("ConstantOfShape", ins, n.outputs, name=n.name)
            nd.attribute.append(helper.make_attribute("value", t))
            nodes.append(nd)
            continue
        if n.op in ("ReduceMean", "ReduceSum", "ReduceMax") and "axes" in attrs:
            ax = const(np.array(attrs.pop("axes"), np.int64), f"{n.name}_axes")
            ins = [ins[0], ax]
        nodes.append(_node(n.op, ins, n.outputs, n.name, attrs))

    outputs = [_value_info(v, with_shape=bool(v.shape)) for v in graph.outputs]
    model = _make_model(nodes, graph, inits, outputs, opset, name)
    if linears:
        model = _linear_to_gemm(model, nodes, linears, graph, inits, outputs, opset, name)
    return model


def _make_model(nodes, graph, inits, outputs, opset, name) -> onnx.ModelProto:
    used = {s for n in nodes for s in n.input}
    g = helper.make_graph(nodes, name, [_value_info(v) for v in graph.inputs], outputs,
                          [numpy_helper.from_array(np.asarray(a), k) for k, a in inits.items()
                           if k in used])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="czconvert")
    m.ir_version = min(m.ir_version, 10)
    return m


def _linear_to_gemm(model, nodes, linears, graph, inits, outputs, opset, name):
    try:
        inf = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - keep the MatMul form
        return model
    ranks: dict[str, int] = {}
    for vi in list(inf.graph.value_info) + list(inf.graph.input):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            ranks[vi.name] = len(tt.shape.dim)
    drop: set[int] = set()
    for idx, x, w, b, y, _mm_out, nname in linears:
        if ranks.get(x) != 2:
            continue
        ins = [x, w] + ([b] if b else [])
        nodes[idx] = _node("Gemm", ins, [y], nname, {"transB": 1})
        if b:
            drop.add(idx + 1)
    nodes = [n for k, n in enumerate(nodes) if k not in drop]
    return _make_model(nodes, graph, inits, outputs, opset, name)


def cz_to_onnx(cz_path: str | os.PathLike | bytes, onnx_path: str | os.PathLike | None = None,
               *, opset: int = EXPORT_OPSET) -> onnx.ModelProto:
    """Read a .cz file with a graph and write (and return) the equivalent fp32 ONNX model."""
    import czmodel

    with czmodel.open(cz_path) as f:
        if f.graph is None:
            raise FormatError("this .cz file holds weights only (no graph); there is nothing "
                              "to export as ONNX")
        g = f.graph if isinstance(f.graph, Graph) else Graph.from_header(f.graph, set(f))
        used = {s for n in g.nodes for s in n.inputs if s}
        tensors = {k: np.asarray(f[k]) for k in f if k in used}
    model = graph_to_onnx(g, tensors, opset=opset)
    onnx.checker.check_model(model)
    if onnx_path is not None:
        onnx.save(model, os.fspath(onnx_path))
    return model


__all__ = ["cz_to_onnx", "graph_to_onnx", "EXPORT_OPSET", "TensorProto"]
