"""Per-layer latency in our runtime, measured on the layer's compressed form.

How: the layer's op is cut out as a one-node graph (its activation inputs become graph
inputs, taken from the fp32 run of the calibration set: the first ``batch`` samples), the
compressed weight and the node's other tensors go into an in-memory ``.cz``, which is
opened with ``czmodel.load`` (``backend``, one thread: the C runtime when it can open the
file, else Numba) and run ``repeats`` times after one warm-up run; the median wall time in
milliseconds is the layer's latency. Numbers are per call at that batch size, on this
machine, in whatever process measures them (a busy machine inflates them; the median
damps that).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from czmodel.graph.model import Graph, OpNode, ValueInfo


def _rows(a: Any, n: int, batch: int) -> Any:
    a = np.asarray(a)
    return a[:batch] if a.ndim and a.shape[0] == n else a


def one_node_file(model: Any, runner: Any, layer: str, node_or_array: Any,
                  batch: int = 1) -> tuple[bytes, dict[str, np.ndarray]]:
    """(.cz bytes of the one-node graph of ``layer``'s op, its feeds)."""
    from czmodel.format.header import NUMPY_TO_TENSOR
    from czmodel.format.writer import build_file

    node = runner.uses[layer][0][0]
    env = runner.envs[0]
    n = len(next(iter(runner.chunks[0].values())))
    feeds, tensors, inputs = {}, {}, []
    for s in node.inputs:
        if not s or s in feeds or s in tensors:
            continue
        if s == layer:
            tensors[s] = node_or_array
        elif s in model.tensors:
            tensors[s] = np.asarray(model.tensors[s])
        else:
            x = np.ascontiguousarray(_rows(env[s], n, batch))
            feeds[s] = x
            inputs.append(ValueInfo(s, NUMPY_TO_TENSOR[x.dtype], list(x.shape)))
    outputs = []
    for s in node.outputs:
        y = np.asarray(_rows(env[s], n, batch))
        outputs.append(ValueInfo(s, NUMPY_TO_TENSOR.get(y.dtype, "f32"), list(y.shape)))
    g = Graph(inputs, outputs, [OpNode(node.op, node.name, list(node.inputs),
                                       list(node.outputs), dict(node.attrs))])
    dtypes = {layer: "f32"} if not isinstance(node_or_array, np.ndarray) else None
    return build_file(tensors, graph=g.to_header(), tensor_dtypes=dtypes), feeds


def time_model(model: Any, feeds: dict, repeats: int = 7) -> float:
    """Median wall time of ``model.run(feeds)`` in ms (one warm-up run first)."""
    model.run(feeds)
    ts = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        model.run(feeds)
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def layer_latency(model: Any, runner: Any, layer: str, node_or_array: Any, *,
                  backend: str = "auto", batch: int = 1, repeats: int = 7
                  ) -> tuple[float, str]:
    """(median ms of ``layer``'s op on its compressed form, backend name)."""
    from .model import load_runtime

    data, feeds = one_node_file(model, runner, layer, node_or_array, batch)
    m = load_runtime(data, backend, threads=1)
    try:
        return time_model(m, feeds, repeats), m.backend.name
    finally:
        m.close()
