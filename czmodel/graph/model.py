"""The model graph as plain data (spec: ``spec/ops.md``, "Graph").

``Graph.to_header()`` gives the msgpack-able map stored under the header key ``graph``;
``Graph.from_header()`` validates such a map from an untrusted file and rebuilds the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from czmodel.errors import FormatError, LimitError, UnsupportedError
from czmodel.format import limits as FL
from czmodel.format.header import GRAPH_OPSET_MAX, TENSOR_DTYPES
from czmodel.graph import ops as O

MAX_NODES = 1 << 20            # nodes per graph
MAX_NODE_IO = 64               # inputs, outputs of one node
MAX_GRAPH_IO = 1 << 12         # graph inputs, graph outputs
MAX_ATTR_LIST = 1 << 20        # elements of one list attribute
MAX_ATTRS = 64                 # attributes per node
MAX_NAME = 4096                # characters of any value / node name
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

_GRAPH_KEYS = {"opset", "inputs", "outputs", "nodes"}
_VALUE_KEYS = {"name", "dtype", "shape"}
_NODE_KEYS = {"op", "name", "inputs", "outputs", "attrs"}


@dataclass
class ValueInfo:
    """A graph input or output: name, dtype (a ``TENSOR_DTYPES`` key) and shape (int dims
    or str symbolic dims such as ``"N"``)."""

    name: str
    dtype: str
    shape: list[int | str]

    def to_header(self) -> dict:
        return {"name": self.name, "dtype": self.dtype,
                "shape": [d if isinstance(d, str) else int(d) for d in self.shape]}


@dataclass
class OpNode:
    """One op application. ``inputs`` may contain ``""`` for an omitted optional input.
    ``attrs`` holds only the attributes given explicitly (defaults: ``czmodel.graph.ops``)."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_header(self) -> dict:
        return {"op": self.op, "name": self.name, "inputs": list(self.inputs),
                "outputs": list(self.outputs),
                "attrs": {k: _plain_attr(v) for k, v in self.attrs.items()}}

    def where(self) -> str:
        return f"node {self.name!r} ({self.op})"


def _plain_attr(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_plain_attr(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy scalar
        return v.item()
    return v


@dataclass
class Graph:
    """A model: inputs, outputs and nodes in topological order. Op-set version ``opset``."""

    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    nodes: list[OpNode]
    opset: int = 1

    def to_header(self) -> dict:
        return {"opset": int(self.opset),
                "inputs": [v.to_header() for v in self.inputs],
                "outputs": [v.to_header() for v in self.outputs],
                "nodes": [n.to_header() for n in self.nodes]}

    @classmethod
    def from_header(cls, d: Any, tensor_names: set[str] | frozenset[str]) -> Graph:
        """Validate the header's ``graph`` map (untrusted) against the file's tensor names and
        return the graph. Raises FormatError / UnsupportedError / LimitError naming the node."""
        return _parse_graph(d, frozenset(tensor_names))

    def validate(self, tensor_names: set[str] | frozenset[str]) -> Graph:
        """Check a graph built in Python with the same rules as a file's (returns the
        normalised graph)."""
        return _parse_graph(self.to_header(), frozenset(tensor_names))

    def node(self, name: str) -> OpNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


# -- validation ------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return type(v) is int


def _check_name(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise FormatError(f"{what}: name must be a non-empty string, got {v!r}")
    if len(v) > MAX_NAME:
        raise LimitError(f"{what}: name of {len(v)} characters exceeds {MAX_NAME}")
    return v


def _parse_value(v: Any, what: str) -> ValueInfo:
    if not isinstance(v, dict) or set(v) != _VALUE_KEYS:
        raise FormatError(f"{what} must be a map with keys {sorted(_VALUE_KEYS)}")
    name = _check_name(v["name"], what)
    what = f"{what} {name!r}"
    dt = v["dtype"]
    if not isinstance(dt, str):
        raise FormatError(f"{what}: dtype must be a string")
    if dt not in TENSOR_DTYPES:
        raise UnsupportedError(f"{what}: unknown dtype {dt!r} (known: {list(TENSOR_DTYPES)})")
    shape = v["shape"]
    if not isinstance(shape, list):
        raise FormatError(f"{what}: shape must be a list")
    if len(shape) > FL.MAX_NDIM:
        raise FormatError(f"{what}: shape has more than {FL.MAX_NDIM} dims")
    for s in shape:
        if _is_int(s):
            if s < 0:
                raise FormatError(f"{what}: negative dim {s}")
            if s > FL.MAX_DIM:
                raise LimitError(f"{what}: dim {s} exceeds {FL.MAX_DIM}")
        elif isinstance(s, str):
            if not s or len(s) > MAX_NAME:
                raise FormatError(f"{what}: symbolic dim must be a non-empty string "
                                  f"of at most {MAX_NAME} characters")
        else:
            raise FormatError(f"{what}: dim {s!r} is neither an int nor a symbolic name")
    return ValueInfo(name, dt, list(shape))


def _check_attr(spec: O.Attr, key: str, v: Any, where: str) -> Any:
    t = spec.type

    def scalar(x: Any, base: str) -> Any:
        if base == "int":
            if not _is_int(x):
                raise FormatError(f"{where}: attribute {key!r} must be {t}, got "
                                  f"{type(x).__name__}")
            if not INT64_MIN <= x <= INT64_MAX:
                raise FormatError(f"{where}: attribute {key!r} value {x} is out of int64 range")
            if spec.min is not None and x < spec.min:
                raise FormatError(f"{where}: attribute {key!r} value {x} must be >= {spec.min}")
            return x
        if base == "float":
            if _is_int(x):
                if abs(x) > 1 << 53:
                    raise FormatError(f"{where}: attribute {key!r} value {x} is not a float")
                x = float(x)
            if type(x) is not float:
                raise FormatError(f"{where}: attribute {key!r} must be {t}, got "
                                  f"{type(x).__name__}")
            if not spec.nonfinite and not math.isfinite(x):
                raise FormatError(f"{where}: attribute {key!r} must be finite, got {x}")
            return x
        if not isinstance(x, str):
            raise FormatError(f"{where}: attribute {key!r} must be {t}, got {type(x).__name__}")
        if len(x) > MAX_NAME:
            raise LimitError(f"{where}: attribute {key!r} string exceeds {MAX_NAME} characters")
        return x

    if t in ("ints", "floats", "strs"):
        if not isinstance(v, list):
            raise FormatError(f"{where}: attribute {key!r} must be a list ({t}), got "
                              f"{type(v).__name__}")
        if len(v) > MAX_ATTR_LIST:
            raise LimitError(f"{where}: attribute {key!r} has {len(v)} elements, over "
                             f"{MAX_ATTR_LIST}")
        out = [scalar(x, t[:-1]) for x in v]
    else:
        out = scalar(v, t)
    if spec.choices is not None:
        bad = [x for x in (out if isinstance(out, list) else [out]) if x not in spec.choices]
        if bad:
            raise UnsupportedError(f"{where}: attribute {key!r} value {bad[0]!r} is not "
                                   f"supported (allowed: {list(spec.choices)})")
    return out


def _parse_node(v: Any, i: int) -> OpNode:
    if not isinstance(v, dict):
        raise FormatError(f"graph node {i} must be a map")
    name = v.get("name")
    label = f"graph node {i} {name!r}" if isinstance(name, str) else f"graph node {i}"
    if set(v) != _NODE_KEYS:
        raise FormatError(f"{label}: must be a map with keys {sorted(_NODE_KEYS)}, has "
                          f"{sorted(map(str, v))}")
    name = _check_name(name, f"graph node {i}")
    op = v["op"]
    if not isinstance(op, str):
        raise FormatError(f"{label}: op must be a string")
    where = f"node {name!r} ({op})"
    spec = O.OPS.get(op)
    if spec is None:
        raise UnsupportedError(f"{where}: unknown op {op!r}; op set 1 supports: "
                               f"{', '.join(sorted(O.OPS))}")
    ins, outs, attrs = v["inputs"], v["outputs"], v["attrs"]
    for lst, kind in ((ins, "inputs"), (outs, "outputs")):
        if not isinstance(lst, list) or not all(isinstance(s, str) for s in lst):
            raise FormatError(f"{where}: {kind} must be a list of strings")
        if len(lst) > MAX_NODE_IO:
            raise LimitError(f"{where}: {len(lst)} {kind} exceed {MAX_NODE_IO}")
    # trailing omitted optional inputs are dropped (ONNX allows either form)
    ins = list(ins)
    while ins and ins[-1] == "" and len(ins) > spec.min_inputs:
        ins.pop()
    if not spec.min_inputs <= len(ins) <= spec.max_inputs:
        raise FormatError(f"{where}: takes {_count(spec.min_inputs, spec.max_inputs)} inputs, "
                          f"got {len(ins)}")
    for k in range(min(len(ins), spec.min_inputs)):
        if ins[k] == "":
            raise FormatError(f"{where}: input {k} is required but empty")
    for s in ins:
        if len(s) > MAX_NAME:
            raise LimitError(f"{where}: input name exceeds {MAX_NAME} characters")
    if not spec.min_outputs <= len(outs) <= spec.max_outputs:
        raise FormatError(f"{where}: produces {_count(spec.min_outputs, spec.max_outputs)} "
                          f"outputs, got {len(outs)}")
    for s in outs:
        _check_name(s, f"{where} output")
    if not isinstance(attrs, dict):
        raise FormatError(f"{where}: attrs must be a map")
    if len(attrs) > MAX_ATTRS:
        raise LimitError(f"{where}: {len(attrs)} attributes exceed {MAX_ATTRS}")
    unknown = sorted(set(attrs) - set(spec.attrs))
    if unknown:
        raise FormatError(f"{where}: unknown attribute {unknown[0]!r} (allowed: "
                          f"{sorted(spec.attrs) or 'none'})")
    clean = {}
    for key, spec_a in spec.attrs.items():
        if key in attrs:
            clean[key] = _check_attr(spec_a, key, attrs[key], where)
        elif spec_a.default is O.REQUIRED:
            raise FormatError(f"{where}: required attribute {key!r} is missing")
    node = OpNode(op, name, ins, list(outs), clean)
    if spec.check is not None:
        spec.check(node, O.resolve_attrs(node))
    return node


def _count(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo} to {hi}"


def _parse_graph(d: Any, tensor_names: frozenset[str]) -> Graph:
    if not isinstance(d, dict):
        raise FormatError("'graph' must be a map")
    if set(d) != _GRAPH_KEYS:
        missing, extra = sorted(_GRAPH_KEYS - set(d)), sorted(set(map(str, d)) - _GRAPH_KEYS)
        raise FormatError(f"graph must be a map with keys {sorted(_GRAPH_KEYS)} "
                          f"(missing {missing}, unknown {extra})")
    opset = d["opset"]
    if not _is_int(opset) or opset < 1:
        raise FormatError("graph 'opset' must be a positive integer")
    if opset > GRAPH_OPSET_MAX:
        raise UnsupportedError(f"graph op-set version {opset} is newer than this reader's "
                               f"{GRAPH_OPSET_MAX}")
    for key in ("inputs", "outputs", "nodes"):
        if not isinstance(d[key], list):
            raise FormatError(f"graph {key!r} must be a list")
    if len(d["nodes"]) > MAX_NODES:
        raise LimitError(f"graph has {len(d['nodes'])} nodes, over {MAX_NODES}")
    for key in ("inputs", "outputs"):
        if len(d[key]) > MAX_GRAPH_IO:
            raise LimitError(f"graph has {len(d[key])} {key}, over {MAX_GRAPH_IO}")
    inputs = [_parse_value(v, f"graph input {i}") for i, v in enumerate(d["inputs"])]
    outputs = [_parse_value(v, f"graph output {i}") for i, v in enumerate(d["outputs"])]
    if not outputs:
        raise FormatError("graph must have at least one output")
    defined: dict[str, str] = {}
    for t in tensor_names:
        defined[t] = "a file tensor"
    for v in inputs:
        if v.name in defined:
            raise FormatError(f"graph input {v.name!r} is defined twice (also "
                              f"{defined[v.name]})")
        defined[v.name] = "a graph input"
    nodes: list[OpNode] = []
    node_names: set[str] = set()
    for i, nv in enumerate(d["nodes"]):
        n = _parse_node(nv, i)
        if n.name in node_names:
            raise FormatError(f"{n.where()}: node name used twice")
        node_names.add(n.name)
        for k, s in enumerate(n.inputs):
            if s and s not in defined:
                later = any(isinstance(m, dict) and isinstance(m.get("outputs"), list)
                            and s in m["outputs"] for m in d["nodes"][i:])
                why = (" (it is produced by this or a later node: nodes must be in "
                       "topological order, or the graph has a cycle)" if later else "")
                raise FormatError(f"{n.where()}: input {k} {s!r} is not a graph input, a file "
                                  f"tensor or an output of an earlier node{why}")
        for s in n.outputs:
            if s in defined:
                raise FormatError(f"{n.where()}: output {s!r} is defined twice (already "
                                  f"{defined[s]})")
            defined[s] = f"an output of node {n.name!r}"
        nodes.append(n)
    seen: set[str] = set()
    produced = {s for n in nodes for s in n.outputs}
    for v in outputs:
        if v.name in seen:
            raise FormatError(f"graph output {v.name!r} is listed twice")
        seen.add(v.name)
        if v.name not in produced:
            raise FormatError(f"graph output {v.name!r} is not produced by any node")
    return Graph(inputs, outputs, nodes, opset)
