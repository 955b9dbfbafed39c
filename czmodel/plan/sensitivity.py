"""Sensitivity profiling: for every (layer, candidate) the fidelity loss with only that layer
compressed, its stored bytes and its latency in our runtime -- the table the solver reads.

Each (layer, candidate) is one work item on an executor (process pool by default): the
worker compresses the tensor exactly as the compression step will, measures the marginal
file bytes, runs the model with the compressed form substituted (``fidelity.Runner``:
only the layer's downstream suffix is recomputed) and times the layer's op
(``latency.layer_latency``). "fp32 as is" needs no evaluation: its loss is 0 by
construction. The table is plain JSON (``save`` / ``load``), so profiling once serves many
budgets.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from czmodel.errors import EncodeError
from czmodel.progress import progress_task

from .fidelity import Metric, Runner
from .model import PlanModel, sample_count
from .space import Candidate, Space, compress_candidate


@dataclass
class ProfileContext:
    """Everything a worker needs (sent once per worker)."""

    model: PlanModel
    feeds: dict[str, np.ndarray]
    metric: Metric
    space: Space
    batch: int = 1024
    backend: str = "numba"
    latency: bool = True
    latency_backend: str = "auto"
    latency_batch: int = 1
    latency_repeats: int = 7
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


#: per-process state: context token -> Runner (the fp32 run, built once per worker), the
#: kernel forms of compressed candidates and the values of a plan (conditional profiles)
_STATE: dict[str, Any] = {}


def _state(ctx: Any) -> dict:
    if _STATE.get("token") != ctx.token:
        _STATE.clear()                        # one model per worker at a time
        _STATE.update(token=ctx.token, forms={}, plans={},
                      runner=Runner(ctx.model, ctx.feeds, ctx.batch, ctx.backend))
    return _STATE


def release(ctx: Any) -> None:
    """Drop this process's state for ``ctx`` (the serial executor keeps it in-process)."""
    if _STATE.get("token") == getattr(ctx, "token", None):
        _STATE.clear()


def runner_for(ctx: Any) -> Runner:
    return _state(ctx)["runner"]


def _form(ctx: Any, layer: str, j: int) -> Any:
    """The runtime form of (layer, candidate j); None for "as is"."""
    st = _state(ctx)
    cand = ctx.space.candidates[layer][j]
    key = (layer, cand.label)
    if key not in st["forms"]:
        if cand.spec is None:
            st["forms"][key] = None
        else:
            m = ctx.model
            c = compress_candidate(layer, m.tensors[layer], m.weights[layer], cand)
            st["forms"][key] = st["runner"].prepare(layer, c.data)
    return st["forms"][key]


def profile_item(ctx: ProfileContext, item: tuple[str, int]) -> dict:
    """One (layer, candidate index): bytes, score, latency. A top-level function (pickled
    by reference to the workers)."""
    from .latency import layer_latency

    layer, j = item
    t0 = time.perf_counter()
    cand = ctx.space.candidates[layer][j]
    m = ctx.model
    c = compress_candidate(layer, m.tensors[layer], m.weights[layer], cand)
    runner = runner_for(ctx)
    base = runner.score(ctx.metric)
    if cand.spec is None:
        score, evaluated = base, False
    else:
        form = runner.prepare(layer, c.data)
        _state(ctx)["forms"][layer, cand.label] = form
        envs = runner.run({layer: form})
        score, evaluated = runner.score(ctx.metric, envs), True
        del envs
    lat, lat_backend = None, None
    if ctx.latency:
        lat, lat_backend = layer_latency(m, runner, layer, c.node if c.node is not None else
                                         np.asarray(m.tensors[layer]),
                                         backend=ctx.latency_backend, batch=ctx.latency_batch,
                                         repeats=ctx.latency_repeats)
    return {"layer": layer, "candidate": j, "label": cand.label, "bytes": c.bytes,
            "encoding": c.encoding, "score": score, "base_score": base,
            "evaluated": evaluated, "latency_ms": lat, "latency_backend": lat_backend,
            "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def _plan_values(ctx: ProfileContext, around: tuple[int, ...]
                 ) -> tuple[dict, list[dict], float]:
    """(substituted forms, values, score) of the plan ``around`` (indices in layer order)."""
    st = _state(ctx)
    if around not in st["plans"]:
        st["plans"].clear()
        r = st["runner"]
        subs = {k: f for k, j in zip(ctx.space.layers, around)
                if (f := _form(ctx, k, j)) is not None}
        envs = r.run(subs) if subs else r.envs
        st["plans"][around] = (subs, envs, r.score(ctx.metric, envs))
    return st["plans"][around]


def conditional_item(ctx: ProfileContext, item: tuple[str, int, tuple[int, ...]]) -> dict:
    """The plan ``around`` with ``layer`` switched to candidate ``j``: its score (only the
    layer's suffix is recomputed; the other layers stay at the plan's settings)."""
    layer, j, around = item
    t0 = time.perf_counter()
    subs, envs, plan_score = _plan_values(ctx, tuple(around))
    if j == around[ctx.space.layers.index(layer)]:
        score, evaluated = plan_score, False
    else:
        f = _form(ctx, layer, j)
        sub = {k: v for k, v in subs.items() if k != layer}
        if f is not None:
            sub[layer] = f
        r = runner_for(ctx)
        score, evaluated = r.score(ctx.metric, r.run(sub, envs, changed=(layer,))), True
    return {"layer": layer, "candidate": j, "score": score, "plan_score": plan_score,
            "evaluated": evaluated, "seconds": time.perf_counter() - t0}


@dataclass
class SensitivityTable:
    """layer x candidate -> loss, bytes, latency (plus what is needed to turn a choice into
    a predicted file size). ``loss = base_score - score`` (higher score is better)."""

    model: str
    metric: dict
    base_score: float
    samples: int
    layers: list[dict]                           # name, op_type, shape, params
    candidates: dict[str, list[Candidate]]
    bytes: dict[str, list[int]]
    score: dict[str, list[float]]
    latency_ms: dict[str, list[float | None]]
    fixed_bytes: int                              # file bytes outside the planned layers
    fp32_bytes: int
    evaluations: int
    seconds: float
    executor: str = ""
    workers: int = 1
    notes: dict = field(default_factory=dict)

    @property
    def layer_names(self) -> list[str]:
        return [d["name"] for d in self.layers]

    def loss(self, layer: str) -> list[float]:
        return [self.base_score - s for s in self.score[layer]]

    def cost(self, layer: str, kind: str = "bytes") -> list[float]:
        if kind == "bytes":
            return [float(b) for b in self.bytes[layer]]
        if kind == "latency":
            lat = self.latency_ms[layer]
            if any(x is None for x in lat):
                raise EncodeError("this profile has no latencies (profile with latency=True)")
            return [float(x) for x in lat]
        raise EncodeError(f"cost {kind!r}: bytes or latency")

    def fp32_choice(self) -> dict[str, int]:
        """The as-is candidate of each layer (or its largest, when there is none)."""
        out = {}
        for name in self.layer_names:
            cands = self.candidates[name]
            idx = [j for j, c in enumerate(cands) if c.spec is None]
            out[name] = idx[0] if idx else int(np.argmax(self.bytes[name]))
        return out

    def predicted_bytes(self, choice: Mapping[str, int]) -> int:
        return self.fixed_bytes + sum(self.bytes[k][j] for k, j in choice.items())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = {k: [c.to_dict() for c in v] for k, v in self.candidates.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> SensitivityTable:
        d = dict(d)
        d["candidates"] = {k: [Candidate.from_dict(c) for c in v]
                           for k, v in d["candidates"].items()}
        return cls(**d)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SensitivityTable:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_text(self, scale: float = 1.0, unit: str = "") -> str:
        from czmodel.cli.table import render

        rows = []
        for name in self.layer_names:
            for j, c in enumerate(self.candidates[name]):
                lat = self.latency_ms[name][j]
                rows.append([name, c.label, f"{self.bytes[name][j]:,}",
                             f"{self.score[name][j] * scale:.4f}{unit}",
                             f"{(self.base_score - self.score[name][j]) * scale:+.4f}",
                             "" if lat is None else f"{lat:.3f}"])
        return render(["layer", "candidate", "bytes", self.metric["name"], "loss",
                       "latency ms"], rows, "llrrrr")


def make_context(model: Any, data: Any, metric: Metric, space: Space | None = None, *,
                 batch: int = 1024, backend: str = "numba", latency: bool = True,
                 latency_backend: str = "auto", latency_batch: int = 1,
                 latency_repeats: int = 7, level: str = "default") -> ProfileContext:
    """What the workers get (once): model, calibration feeds, metric, space, settings."""
    from .model import as_feeds

    model = PlanModel.load(model)
    return ProfileContext(model, as_feeds(model.graph, data), metric,
                          space or Space.default(model, level), batch=batch, backend=backend,
                          latency=latency, latency_backend=latency_backend,
                          latency_batch=latency_batch, latency_repeats=latency_repeats)


def _items(ctx: ProfileContext) -> list[tuple[str, int]]:
    # early layers recompute the longest suffix: submit them first (better balance)
    order = {n: i for i, n in enumerate(ctx.model.layers)}
    return sorted(((k, j) for k in ctx.space.layers
                   for j in range(len(ctx.space.candidates[k]))),
                  key=lambda it: (order[it[0]], it[1]))


def _map(ctx: ProfileContext, ex: Any, fn: Any, items: list, desc: str,
         progress: bool | None) -> list[dict]:
    with progress_task(len(items), desc=desc, enable=progress) as bar:
        def done(i: int, r: dict) -> None:
            bar.advance(1)
            cand = ctx.space.candidates[r["layer"]][r["candidate"]]
            bar.set_postfix_str(f"{r['layer']} {cand.label}")
        return ex.map(fn, items, context=ctx, on_done=done)


def profile_table(ctx: ProfileContext, ex: Any, progress: bool | None = None
                  ) -> SensitivityTable:
    """The one-layer-at-a-time profile of ``ctx`` on executor ``ex``."""
    t0 = time.perf_counter()
    model, space, metric = ctx.model, ctx.space, ctx.metric
    rows = _map(ctx, ex, profile_item, _items(ctx), "profiling", progress)
    res = {(r["layer"], r["candidate"]): r for r in rows}
    base = rows[0]["base_score"]
    fixed = _fixed_bytes(model, space, res)
    layers = [{"name": k, "op_type": model.weights[k],
               "shape": list(np.asarray(model.tensors[k]).shape),
               "params": int(np.asarray(model.tensors[k]).size)} for k in space.layers]
    lat_be = sorted({r["latency_backend"] for r in rows if r["latency_backend"]})
    n = sample_count(ctx.feeds)
    per = {k: range(len(space.candidates[k])) for k in space.layers}
    return SensitivityTable(
        model=model.name, metric=metric.to_dict(), base_score=float(base), samples=n,
        layers=layers, candidates={k: list(v) for k, v in space.candidates.items()},
        bytes={k: [res[k, j]["bytes"] for j in per[k]] for k in space.layers},
        score={k: [float(res[k, j]["score"]) for j in per[k]] for k in space.layers},
        latency_ms={k: [res[k, j]["latency_ms"] for j in per[k]] for k in space.layers},
        fixed_bytes=fixed, fp32_bytes=model.fp32_bytes,
        evaluations=sum(1 for r in rows if r["evaluated"]),
        seconds=time.perf_counter() - t0, executor=ex.name, workers=ex.workers,
        notes={"fidelity": f"{metric.name} on {n} calibration samples, {ctx.backend} "
                           "backend, one layer compressed at a time",
               "latency": (f"median of {ctx.latency_repeats} runs of the layer's op alone at "
                           f"batch {ctx.latency_batch}, one thread, {'/'.join(lat_be)} "
                           "backend" if ctx.latency else "not measured"),
               "bytes": "marginal file bytes of the compressed tensor (data, header entry, "
                        "alignment); fixed_bytes = everything else in the file"})


def conditional_table(ctx: ProfileContext, ex: Any, table: SensitivityTable,
                      around: dict[str, int], progress: bool | None = None
                      ) -> SensitivityTable:
    """Re-profile every layer's candidates with the other layers at the plan ``around``
    (candidate indices): the interactions the one-layer profile misses, measured where the
    plan is. The result's ``base_score`` is the plan's score (loss 0 at the plan); bytes and
    latencies are ``table``'s. Costs one evaluation per (layer, candidate) off the plan,
    plus the plan itself."""
    t0 = time.perf_counter()
    space = ctx.space
    key = tuple(int(around[k]) for k in space.layers)
    items = [(k, j, key) for k, j in _items(ctx)]
    rows = _map(ctx, ex, conditional_item, items, "profiling around the plan", progress)
    res = {(r["layer"], r["candidate"]): r for r in rows}
    d = table.to_dict()
    d.update(base_score=float(rows[0]["plan_score"]),
             score={k: [float(res[k, j]["score"]) for j in range(len(space.candidates[k]))]
                    for k in space.layers},
             evaluations=1 + sum(1 for r in rows if r["evaluated"]),
             seconds=time.perf_counter() - t0, executor=ex.name, workers=ex.workers)
    d["notes"] = dict(d.get("notes") or {}, conditional=", ".join(
        f"{k}={space.candidates[k][j].label}" for k, j in zip(space.layers, key)))
    return SensitivityTable.from_dict(d)


def profile(model: Any, data: Any, metric: Metric, space: Space | None = None, *,
            executor: Any = None, workers: int | None = None, batch: int = 1024,
            backend: str = "numba", latency: bool = True, latency_backend: str = "auto",
            latency_batch: int = 1, latency_repeats: int = 7, level: str = "default",
            progress: bool | None = None) -> SensitivityTable:
    """Profile every (layer, candidate) of ``space`` (default: the catalogue at ``level``)
    on calibration ``data`` (array or {input: array}). ``executor``: an Executor, or
    "process" (default) / "serial" / "dask"."""
    from .executors import Executor, make_executor

    ctx = make_context(model, data, metric, space, batch=batch, backend=backend,
                       latency=latency, latency_backend=latency_backend,
                       latency_batch=latency_batch, latency_repeats=latency_repeats,
                       level=level)
    own = not isinstance(executor, Executor)
    ex = make_executor(executor, workers)
    try:
        return profile_table(ctx, ex, progress)
    finally:
        release(ctx)
        if own:
            ex.close()


def _fixed_bytes(model: PlanModel, space: Space, res: Mapping) -> int:
    """File bytes outside the planned layers: the real compressed file with every planned
    layer stored as is, minus those layers' marginal bytes."""
    from .space import build_config

    as_is = Candidate("fp32", None)
    cfg = build_config({k: as_is for k in space.layers})
    total = len(model.compressed_bytes(cfg))
    raw = {}
    for k in space.layers:
        j = next((j for j, c in enumerate(space.candidates[k]) if c.spec is None), None)
        raw[k] = res[k, j]["bytes"] if j is not None else compress_candidate(
            k, model.tensors[k], model.weights[k], as_is).bytes
    return total - sum(raw.values())

