"""The backend-neutral graph interpreter (spec: ``spec/ops.md``, "Execution").

A backend supplies one function per op and may pre-pack the file tensors that ops consume
as weights; the ``Executor`` does everything else: validation, weight preparation once at
load, feed checks, node-by-node execution in the file's (topological) order, and freeing of
intermediates after their last use.

Op function contract (every backend)::

    fn(inputs, attrs, node) -> list[np.ndarray]

* ``inputs``: one entry per op input, padded with ``None`` up to the op's maximum input
  count (``czmodel.graph.ops.OPS[op].max_inputs``) except the variadic ``Concat``, which gets
  exactly its inputs. An omitted optional input (``""`` in the graph) is ``None``. An entry is
  an ``np.ndarray`` (graph input, intermediate, or file tensor prepared by the default
  ``prepare_weight``) or whatever the backend's ``prepare_weight`` returned for a file tensor.
* ``attrs``: every attribute of the op with defaults filled in (``None`` = absent optional),
  resolved once at load; do not mutate.
* ``node``: the ``OpNode`` (for error messages: ``node.where()`` = "node 'x' (Op)").
* returns exactly ``len(node.outputs)`` arrays. Never mutate an input array in place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from czmodel.errors import CzError, RuntimeInputError, UnsupportedError
from czmodel.format.header import TENSOR_DTYPES
from czmodel.graph.model import Graph, OpNode
from czmodel.graph.ops import OPS, resolve_attrs

OpFn = Callable[[list, dict, OpNode], list]


class WeightForm:
    """Optional base class for a backend's pre-packed form of a file tensor (e.g. a sparse
    or codebook kernel form). Only that backend's op functions ever see it."""


class Backend:
    """Subclass per backend. ``op(name)`` returns the op function (raise ``UnsupportedError``
    for an op the backend lacks: the executor asks for every op at load, so a model with an
    unsupported op fails at load naming the node). A backend may inherit from
    ``ReferenceBackend`` to fall back to numpy for the ops it does not accelerate."""

    name = "base"

    def __init__(self, threads: int | None = None, *, precise: bool = False) -> None:
        self.threads = threads
        # precise: float products accumulate in double (see czmodel.load); the reference
        # always does, so only the fast backends look at it
        self.precise = bool(precise)

    def op(self, op: str) -> OpFn:
        raise UnsupportedError(f"backend {self.name!r} does not implement op {op!r}")

    def prepare_weight(self, name: str, file: Any, uses: list[tuple[OpNode, int]]) -> object:
        """Called once per file tensor the graph consumes, at load. ``uses`` lists every
        ``(node, input_index)`` that reads it. Default: the dense decoded array. A backend may
        return a kernel form (e.g. straight from ``file.entry(name).enc``) when every use is
        an op input it accelerates (``OPS[node.op].weight_inputs``)."""
        return file[name]


def check_feeds(graph: Graph, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Feeds vs graph inputs: names, dtype, rank, static dims and consistent symbolic dims."""
    if not isinstance(feeds, Mapping):
        raise RuntimeInputError(f"feeds must be a mapping name -> array, got "
                                f"{type(feeds).__name__}")
    want = {v.name: v for v in graph.inputs}
    missing = [n for n in want if n not in feeds]
    extra = sorted(str(n) for n in feeds if n not in want)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing inputs {missing}")
        if extra:
            parts.append(f"unknown inputs {extra}")
        raise RuntimeInputError(f"{' and '.join(parts)} (the graph's inputs are "
                                f"{list(want)})")
    out: dict[str, np.ndarray] = {}
    symbols: dict[str, tuple[int, str]] = {}
    for name, vi in want.items():
        dt = TENSOR_DTYPES[vi.dtype]
        x = feeds[name]
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x, dtype=dt)
            except (TypeError, ValueError) as e:
                raise RuntimeInputError(f"input {name!r}: cannot convert to {vi.dtype}: "
                                        f"{e}") from None
        if x.dtype != dt:
            raise RuntimeInputError(f"input {name!r} has dtype {x.dtype}, the graph wants "
                                    f"{vi.dtype} ({dt}); convert it with .astype")
        if x.ndim != len(vi.shape):
            raise RuntimeInputError(f"input {name!r} has rank {x.ndim} (shape "
                                    f"{list(x.shape)}), the graph wants rank {len(vi.shape)} "
                                    f"{vi.shape}")
        for axis, (got, d) in enumerate(zip(x.shape, vi.shape)):
            if isinstance(d, str):
                if d in symbols and symbols[d][0] != got:
                    raise RuntimeInputError(
                        f"input {name!r} dim {axis} is {got} but symbolic dim {d!r} is "
                        f"{symbols[d][0]} in input {symbols[d][1]!r}")
                symbols.setdefault(d, (got, name))
            elif got != d:
                raise RuntimeInputError(f"input {name!r} has shape {list(x.shape)}, the graph "
                                        f"wants {vi.shape} (dim {axis} must be {d})")
        out[name] = x
    return out


class Executor:
    """Runs ``graph`` with ``backend``; file tensors are prepared once here."""

    def __init__(self, graph: Graph, file: Any, backend: Backend, *,
                 validate: bool = True) -> None:
        tensor_names = frozenset(file)
        self.graph = graph.validate(tensor_names) if validate else graph
        self.backend = backend
        nodes = self.graph.nodes
        self._attrs = [resolve_attrs(n) for n in nodes]
        self._fns: list[OpFn] = []
        for n in nodes:
            try:
                self._fns.append(backend.op(n.op))
            except UnsupportedError as e:
                raise UnsupportedError(f"{n.where()}: {e.message}") from None
        self._pad = [0 if n.op == "Concat" else OPS[n.op].max_inputs for n in nodes]
        uses: dict[str, list[tuple[OpNode, int]]] = {}
        for n in nodes:
            for k, s in enumerate(n.inputs):
                if s in tensor_names:
                    uses.setdefault(s, []).append((n, k))
        self.weights: dict[str, object] = {
            name: backend.prepare_weight(name, file, u) for name, u in uses.items()}
        keep = set(self.weights) | {v.name for v in self.graph.outputs}
        last: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for s in n.inputs:
                if s:
                    last[s] = i
            for s in n.outputs:
                last.setdefault(s, i)      # produced, never read: free right away
        self._free_after: list[list[str]] = [[] for _ in nodes]
        for s, i in last.items():
            if s not in keep:
                self._free_after[i].append(s)

    @property
    def inputs(self):
        return self.graph.inputs

    @property
    def outputs(self):
        return self.graph.outputs

    def run(self, feeds: Mapping[str, Any], *,
            fetch: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the graph. Returns ``{output name: array}``; ``fetch`` adds intermediate values
        by name (kept alive for that purpose; useful to compare backends node by node)."""
        env: dict[str, Any] = dict(self.weights)
        env.update(check_feeds(self.graph, feeds))
        protect = set(fetch or ())
        for i, n in enumerate(self.graph.nodes):
            args = [env[s] if s else None for s in n.inputs]
            if len(args) < self._pad[i]:
                args.extend([None] * (self._pad[i] - len(args)))
            try:
                res = self._fns[i](args, self._attrs[i], n)
            except CzError as e:
                if n.name not in e.message:
                    e.message = f"{n.where()}: {e.message}"
                    e.args = (e._render(),)
                raise
            except Exception as e:  # noqa: BLE001 - numpy shape faults etc. name the node
                raise RuntimeInputError(f"{n.where()}: {type(e).__name__}: {e}") from e
            if not isinstance(res, (list, tuple)) or len(res) != len(n.outputs):
                raise RuntimeInputError(f"{n.where()}: backend {self.backend.name!r} returned "
                                        f"{len(res) if isinstance(res, (list, tuple)) else res!r}"
                                        f" outputs, expected {len(n.outputs)}")
            for s, r in zip(n.outputs, res):
                env[s] = r
            for s in self._free_after[i]:
                if s not in protect:
                    env.pop(s, None)
        out = {v.name: env[v.name] for v in self.graph.outputs}
        for s in fetch or ():
            if s not in env:
                raise KeyError(f"fetch: no value named {s!r}")
            out.setdefault(s, env[s])
        return out
