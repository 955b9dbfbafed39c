"""Attacks on the graph: undefined values, cycles, duplicate definitions, unknown ops."""

from __future__ import annotations

import numpy as np

from czmodel.codecs import dense
from czmodel.format.writer import build_file

from . import attack
from ._util import forced

_IO = {"inputs": [{"name": "x", "dtype": "f32", "shape": [2]}],
       "outputs": [{"name": "y", "dtype": "f32", "shape": [2]}]}


def _node(name, op, inputs, outputs):
    return {"op": op, "name": name, "inputs": inputs, "outputs": outputs, "attrs": {}}


def _file(nodes) -> bytes:
    return build_file({"w": forced(dense(np.ones(2, np.float32)), "raw")},
                      graph={"opset": 1, **_IO, "nodes": nodes})


def valid_graph_file() -> bytes:
    return _file([_node("a", "Add", ["x", "w"], ["t"]), _node("r", "Relu", ["t"], ["y"])])


@attack("FormatError", "open", "'nope' is not a graph input")
def a_graph_missing_value():
    """A node reads value 'nope', defined nowhere."""
    return _file([_node("a", "Add", ["x", "nope"], ["t"]), _node("r", "Relu", ["t"], ["y"])])


@attack("FormatError", "open", "earlier")
def a_graph_cycle():
    """a reads u (made by b), b reads t (made by a): a two-node cycle."""
    return _file([_node("a", "Add", ["x", "u"], ["t"]), _node("b", "Relu", ["t"], ["u"]),
                  _node("r", "Relu", ["u"], ["y"])])


@attack("FormatError", "open", "earlier")
def a_graph_self_loop():
    """A node that reads its own output."""
    return _file([_node("a", "Add", ["x", "t"], ["t"]), _node("r", "Relu", ["t"], ["y"])])


@attack("FormatError", "open", "defined twice")
def a_graph_value_defined_twice():
    """Node 'a' redefines the file tensor 'w'."""
    return _file([_node("a", "Relu", ["x"], ["w"]), _node("r", "Relu", ["w"], ["y"])])


@attack("FormatError", "open", "not produced by any node")
def a_graph_output_never_produced():
    """The graph output 'y' is made by no node."""
    return _file([_node("a", "Relu", ["x"], ["t"])])


@attack("UnsupportedError", "open", "unknown op")
def a_graph_unknown_op():
    """An op named 'System' (there is no such op, and no way to name code)."""
    return _file([_node("a", "System", ["x"], ["y"])])


@attack("FormatError", "open", "int64")
def a_graph_int_attr_uint64():
    """An int attribute of 2^64 - 1 (op set 1 ints are int64): C saturates msgpack uint64s
    and must still reject it here."""
    n = _node("f", "Flatten", ["x"], ["y"])
    n["attrs"] = {"axis": (1 << 64) - 1}
    return _file([n])
