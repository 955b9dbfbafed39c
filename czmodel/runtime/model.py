"""``czmodel.runtime.load``: run a whole model stored in a .cz file."""

from __future__ import annotations

import importlib
import os
from typing import Any

import numpy as np

from czmodel.errors import FormatError, UnsupportedError
from czmodel.graph.model import Graph, ValueInfo
from czmodel.runtime.executor import Backend, Executor
from czmodel.runtime.reference import ReferenceBackend

#: backend name -> Backend subclass. Other backends register themselves here (or are found
#: lazily through ``_LAZY``).
BACKENDS: dict[str, type[Backend]] = {"reference": ReferenceBackend}
#: backends imported on first use: name -> (module, class name). A missing module (or a
#: backend whose import fails, e.g. no C compiler) is simply unavailable.
_LAZY: dict[str, tuple[str, str]] = {
    "numba": ("czmodel.runtime.numba_backend", "NumbaBackend"),
    "c": ("czmodel.runtime.c_backend", "CBackend"),
}
AUTO_ORDER = ("c", "numba", "reference")


def backend_class(name: str) -> type[Backend]:
    """Resolve a backend name ("auto" = c if available, else numba, else reference)."""
    if name == "auto":
        for cand in AUTO_ORDER:
            cls = _try_backend(cand)
            if cls is not None and getattr(cls, "available", lambda: True)():
                return cls
        return ReferenceBackend
    cls = _try_backend(name)
    if cls is None:
        known = sorted(set(BACKENDS) | set(_LAZY) | {"auto"})
        raise ValueError(f"backend {name!r} is not available (known: {known})")
    return cls


def _try_backend(name: str) -> type[Backend] | None:
    if name in BACKENDS:
        return BACKENDS[name]
    if name in _LAZY:
        mod, attr = _LAZY[name]
        try:
            cls = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError, OSError):
            return None
        BACKENDS[name] = cls
        return cls
    return None


class Model:
    """A loaded model: ``.inputs`` / ``.outputs`` (``ValueInfo`` lists), ``.run(feeds)``."""

    def __init__(self, file: Any, graph: Graph, backend: Backend) -> None:
        self.file = file
        self.graph = graph
        self.backend = backend
        self.executor = Executor(graph, file, backend, validate=False)

    @property
    def inputs(self) -> list[ValueInfo]:
        return self.graph.inputs

    @property
    def outputs(self) -> list[ValueInfo]:
        return self.graph.outputs

    def run(self, feeds: dict[str, np.ndarray], *,
            fetch: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.executor.run(feeds, fetch=fetch)

    def __call__(self, **feeds: np.ndarray) -> dict[str, np.ndarray]:
        return self.run(feeds)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Model({len(self.graph.nodes)} nodes, backend={self.backend.name!r}, "
                f"inputs={[v.name for v in self.inputs]}, "
                f"outputs={[v.name for v in self.outputs]})")


def load(source: str | os.PathLike | bytes | Any, backend: str | Backend = "auto",
         threads: int | None = None, *, max_tensor_bytes: int | None = None,
         precise: bool = False) -> Model:
    """Open a .cz file (path, bytes or an open ``CzFile``) and prepare its graph to run.

    ``backend``: "reference" (numpy), "numba", "c", "auto" (c, else numba, else reference) or
    a ``Backend`` instance. ``precise=True``: every float product (Gemm, MatMul, Conv,
    ConvTranspose) accumulates in float64 and rounds once, as the reference does -- several
    times slower; for checking a conversion against another runtime on models whose outputs
    move with float32 summation order (integer paths are exact either way).
    Raises ``FormatError`` for a file without a graph."""
    import czmodel
    from czmodel.format.reader import CzFile

    f = source if isinstance(source, CzFile) else czmodel.open(
        source, max_tensor_bytes=max_tensor_bytes)
    try:
        if f.graph is None:
            raise FormatError("this file holds weights only (no graph); use czmodel.open to "
                              "read its tensors")
        g = getattr(f, "graph_model", None)   # validated once at open
        if g is None:
            g = f.graph if isinstance(f.graph, Graph) else Graph.from_header(f.graph, set(f))
        if isinstance(backend, Backend):
            be = backend
        elif isinstance(backend, str):
            try:
                kw = {"precise": True} if precise else {}
                be = backend_class(backend)(threads=threads, **kw)
            except ValueError as e:
                raise UnsupportedError(str(e)) from None
        else:
            raise TypeError(f"backend must be a name or a Backend, got {type(backend).__name__}")
        if hasattr(be, "load_model"):   # whole-graph backends (C) run the graph themselves
            m = be.load_model(f, g, max_tensor_bytes=max_tensor_bytes)
            if f is not source:
                f.close()
            return m
        return Model(f, g, be)
    except BaseException:
        if f is not source:
            f.close()
        raise
