"""Exhaustive evaluation of every combination of a (small) space -- the baseline the
planner is measured against.

Each grid point is a whole-model evaluation with every layer at its setting (the same
runtime path as profiling: compressed kernel forms substituted, ``fidelity.Runner``). The
grid is walked depth-first in graph order and the values after each prefix of layers are
kept, so a point only recomputes the suffix after its last changed layer -- the grid gets
the same incremental-execution discount as the planner (its evaluation COUNT is still one
per point). Work items are prefixes of the first layers' choices, spread over an
executor.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .fidelity import Metric, Runner
from .model import PlanModel
from .space import Space, compress_candidate


@dataclass
class GridContext:
    model: PlanModel
    feeds: dict[str, np.ndarray]
    metrics: dict[str, Metric]
    space: Space
    batch: int = 1024
    backend: str = "numba"
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


_STATE: dict[str, Any] = {}


def _state(ctx: GridContext) -> dict:
    if _STATE.get("token") != ctx.token:
        _STATE.clear()
        _STATE.update(token=ctx.token, runner=Runner(ctx.model, ctx.feeds, ctx.batch,
                                                     ctx.backend), forms={}, prefix={})
    return _STATE


def _form(st: dict, ctx: GridContext, layer: str, j: int) -> Any:
    key = (layer, j)
    if key not in st["forms"]:
        cand = ctx.space.candidates[layer][j]
        if cand.spec is None:
            st["forms"][key] = None
        else:
            m = ctx.model
            c = compress_candidate(layer, m.tensors[layer], m.weights[layer], cand)
            st["forms"][key] = st["runner"].prepare(layer, c.data)
    return st["forms"][key]


def _advance(st: dict, ctx: GridContext, envs: list[dict] | None, subs: dict, layer: str,
             j: int) -> tuple[list[dict] | None, dict]:
    """Set ``layer`` to candidate ``j`` on top of ``envs`` (which reflect ``subs``)."""
    f = _form(st, ctx, layer, j)
    if f is None:                              # as is: nothing downstream changes
        return envs, subs
    subs = {**subs, layer: f}
    return st["runner"].run(subs, envs, changed=(layer,)), subs


def grid_item(ctx: GridContext, prefix: tuple[int, ...]) -> list[tuple[tuple[int, ...], dict]]:
    """Every grid point starting with ``prefix``: [(choice, {metric name: score})]."""
    st = _state(ctx)
    layers = ctx.space.layers
    # values after the prefix (the last prefix is cached: neighbours share it)
    key = tuple(prefix)
    if key not in st["prefix"]:
        st["prefix"].clear()
        envs, subs = None, {}
        for layer, j in zip(layers, prefix):
            envs, subs = _advance(st, ctx, envs, subs, layer, j)
        st["prefix"][key] = (envs, subs)
    out: list[tuple[tuple[int, ...], dict]] = []

    def walk(depth: int, envs: list[dict] | None, subs: dict, choice: tuple[int, ...]
             ) -> None:
        if depth == len(layers):
            r = st["runner"]
            out.append((choice, {k: r.score(mt, envs) for k, mt in ctx.metrics.items()}))
            return
        layer = layers[depth]
        for j in range(len(ctx.space.candidates[layer])):
            walk(depth + 1, *_advance(st, ctx, envs, subs, layer, j), choice + (j,))

    walk(len(prefix), *st["prefix"][key], key)
    return out


def grid_search(model: Any, feeds: dict, metrics: dict[str, Metric], space: Space, *,
                executor: Any = None, workers: int | None = None, batch: int = 1024,
                backend: str = "numba", on_done: Any = None) -> list[dict]:
    """Evaluate every point of ``space``; returns [{"choice": {layer: index}, "labels":
    {layer: label}, "scores": {metric: score}}] in lexicographic order of the choices."""
    from .executors import Executor, make_executor

    model = PlanModel.load(model)
    ctx = GridContext(model, feeds, metrics, space, batch, backend)
    layers = space.layers
    sizes = [len(space.candidates[k]) for k in layers]
    split, n = 0, 1
    while split < len(layers) - 1 and n < 8:
        n *= sizes[split]
        split += 1
    prefixes = list(itertools.product(*[range(s) for s in sizes[:split]]))
    own = not isinstance(executor, Executor)
    ex = make_executor(executor, workers)
    try:
        parts = ex.map(grid_item, prefixes, context=ctx, on_done=on_done)
    finally:
        if _STATE.get("token") == ctx.token:
            _STATE.clear()
        if own:
            ex.close()
    out = []
    for part in parts:
        for choice, scores in part:
            out.append({"choice": dict(zip(layers, choice)),
                        "labels": {k: space.candidates[k][j].label
                                   for k, j in zip(layers, choice)},
                        "scores": scores})
    return out
