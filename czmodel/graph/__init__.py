"""The model graph stored under the header key ``graph`` (spec: ``spec/ops.md``)."""

from __future__ import annotations

from typing import Any

from czmodel.graph.model import Graph, OpNode, ValueInfo
from czmodel.graph.ops import OPS, OpSpec, resolve_attrs


def validate_header_graph(d: Any, tensor_names: set[str] | frozenset[str]) -> Graph:
    """Validate a file header's ``graph`` map (not nil) against the file's tensor names.

    Returns the parsed ``Graph``; raises FormatError / UnsupportedError / LimitError that name
    the offending node and op. The container reader calls this at open."""
    return Graph.from_header(d, tensor_names)


__all__ = ["Graph", "OpNode", "ValueInfo", "OPS", "OpSpec", "resolve_attrs",
           "validate_header_graph"]
