"""The model a plan is made for: graph + fp32 tensors + which tensors are weights, and the
compression step that turns a config into the real ``.cz`` (exactly what ``cz compress
--config`` does for an ONNX model).

``PlanModel.load(src)`` takes an ``.onnx`` path (converted with ``czconvert``), a ``.cz`` with
a graph (its tensors decoded), or a ``(graph, tensors)`` pair. ``weights`` maps every
compressible tensor to the op type that consumes it (the converter's rule: the W of Conv /
ConvTranspose / Linear / Gemm / MatMul and float Gather tables); those are the planner's
layers. Everything else is stored as is, as the converter does.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from czmodel.errors import CzError, EncodeError
from czmodel.graph.model import Graph


def weight_roles(graph: Graph, tensors: Mapping[str, np.ndarray]) -> tuple[dict[str, str],
                                                                          set[str]]:
    """(compressible weight -> consuming op type, bias tensors): the converter's rule
    (``czconvert.onnx_import._weight_roles``; a test checks the two agree)."""
    weights: dict[str, str] = {}
    biases: set[str] = set()
    for nd in graph.nodes:
        ins = nd.inputs
        if nd.op in ("Conv", "ConvTranspose", "Linear", "Gemm"):
            if len(ins) > 1 and ins[1] in tensors:
                weights[ins[1]] = nd.op
            if len(ins) > 2 and ins[2] in tensors:
                biases.add(ins[2])
        elif nd.op == "MatMul" and len(ins) > 1 and ins[1] in tensors:
            weights[ins[1]] = "MatMul"
        elif nd.op == "Gather" and ins[0] in tensors and np.asarray(tensors[ins[0]]).ndim >= 2:
            weights[ins[0]] = "Gather"
    weights = {k: v for k, v in weights.items() if np.asarray(tensors[k]).dtype.kind == "f"}
    return weights, biases - set(weights)


@dataclass
class PlanModel:
    """A model to plan for. ``onnx_path`` set: the compression step is ``onnx_to_cz``."""

    graph: Graph
    tensors: dict[str, np.ndarray]
    weights: dict[str, str] = field(default_factory=dict)
    onnx_path: str | None = None
    name: str = "model"

    def __post_init__(self) -> None:
        if not self.weights:
            self.weights, _ = weight_roles(self.graph, self.tensors)
        if not self.weights:
            raise EncodeError("the model has no compressible weights (Conv / Linear / Gemm / "
                              "MatMul weights or Gather tables) to plan for")

    @classmethod
    def load(cls, src: Any) -> PlanModel:
        if isinstance(src, PlanModel):
            return src
        if isinstance(src, tuple) and len(src) == 2:
            graph, tensors = src
            return cls(graph, {k: np.asarray(v) for k, v in tensors.items()})
        if not isinstance(src, (str, os.PathLike)):
            raise EncodeError(f"model must be an .onnx / .cz path, a (graph, tensors) pair or "
                              f"a PlanModel, not {type(src).__name__}")
        path = os.fspath(src)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        name = os.path.splitext(os.path.basename(path))[0]
        if path.lower().endswith(".onnx"):
            from czconvert.onnx_import import convert_graph

            graph, tensors, _ = convert_graph(path)
            return cls(graph, dict(tensors), onnx_path=os.path.abspath(path), name=name)
        if path.lower().endswith(".cz"):
            import czmodel

            with czmodel.open(path) as f:
                if f.graph is None:
                    raise EncodeError(f"{path}: weights only (no graph); the planner needs a "
                                      "model it can run")
                g = getattr(f, "graph_model", None) or Graph.from_header(f.graph, set(f))
                tensors = {k: np.asarray(f[k]) for k in f}
            return cls(g, tensors, name=name)
        raise EncodeError(f"{path}: give an .onnx model or a .cz file with a graph")

    # -- sizes ---------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """The planned tensors in graph order."""
        return list(self.weights)

    @property
    def fp32_bytes(self) -> int:
        """Every tensor as float32 (the denominator of compression ratios, as the report)."""
        return int(sum(4 * np.asarray(t).size for t in self.tensors.values()))

    def uses(self) -> dict[str, list[tuple[Any, int]]]:
        """file tensor -> every (node, input index) that reads it."""
        out: dict[str, list[tuple[Any, int]]] = {}
        for n in self.graph.nodes:
            for k, s in enumerate(n.inputs):
                if s in self.tensors:
                    out.setdefault(s, []).append((n, k))
        return out

    # -- the compression step ------------------------------------------------------------
    def write_cz(self, config: Any, path: str | os.PathLike) -> Any:
        """Compress with ``config`` (dict / CompressionConfig) and write ``path``, as
        ``cz compress --config`` would. Returns the compression Report."""
        if self.onnx_path is not None:
            from czconvert.onnx_import import onnx_to_cz

            return onnx_to_cz(self.onnx_path, path, config)
        from czconvert._config import effective_config, split_config
        from czmodel.compress.pipeline import save

        cfg, _ = split_config(config)
        raw = [n for n in self.tensors if n not in self.weights]
        return save(path, self.tensors, effective_config(cfg, raw), op_types=self.weights,
                    graph=self.graph)

    def compressed_bytes(self, config: Any) -> bytes:
        """The file bytes ``write_cz`` produces for ``config``."""
        with tempfile.TemporaryDirectory(prefix="czplan_") as d:
            p = os.path.join(d, "m.cz")
            self.write_cz(config, p)
            with open(p, "rb") as f:
                return f.read()


def load_runtime(source: Any, backend: str = "auto", threads: int | None = 1) -> Any:
    """``czmodel.load`` with ``backend``; "auto" falls back to Numba when the C runtime
    cannot open the file (e.g. its extension was built from older sources). The returned
    model's ``backend.name`` says which ran."""
    import czmodel

    if backend != "auto":
        return czmodel.load(source, backend=backend, threads=threads)
    try:
        return czmodel.load(source, backend="auto", threads=threads)
    except (CzError, OSError):
        return czmodel.load(source, backend="numba", threads=threads)


def split_batches(feeds: Mapping[str, np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    """Cut every input along axis 0 into chunks of ``batch`` samples."""
    n = sample_count(feeds)
    if batch <= 0 or batch >= n:
        return [dict(feeds)]
    return [{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]


def sample_count(feeds: Mapping[str, np.ndarray]) -> int:
    counts = {int(np.asarray(v).shape[0]) for v in feeds.values() if np.asarray(v).ndim}
    if len(counts) != 1:
        raise EncodeError(f"calibration inputs must share their first (sample) dimension, got "
                          f"{ {k: np.asarray(v).shape for k, v in feeds.items()} }")
    return counts.pop()


def as_feeds(graph: Graph, data: Any) -> dict[str, np.ndarray]:
    """``data``: one array (single-input model) or {input name: array}; cast to the declared
    dtype when the kinds agree (float64 .npy -> float32)."""
    from czmodel.format.header import TENSOR_DTYPES

    names = [v.name for v in graph.inputs]
    if not isinstance(data, Mapping):
        if len(names) != 1:
            raise EncodeError(f"the model has inputs {names}: give data as {{name: array}}")
        data = {names[0]: data}
    missing = [n for n in names if n not in data]
    if missing:
        raise EncodeError(f"calibration data lacks the model inputs {missing} (has "
                          f"{sorted(data)})")
    out = {}
    for v in graph.inputs:
        x = np.asarray(data[v.name])
        want = TENSOR_DTYPES[v.dtype]
        if x.dtype != want and (x.dtype.kind == want.kind or
                                (x.dtype.kind in "iu" and want.kind in "iu")):
            x = x.astype(want)
        out[v.name] = np.ascontiguousarray(x)
    sample_count(out)
    return out
