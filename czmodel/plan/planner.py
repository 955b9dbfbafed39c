"""The planner: profile -> solve -> refine around the plan -> joint evaluation of the REAL
compressed model -> correct.

1. **Profile** (``sensitivity``): each layer's candidates, one layer compressed at a time.
2. **Solve** (``solver``): the profile predicts a plan's loss as the sum of per-layer losses;
   the exact Pareto DP (or the Lagrangian relaxation) picks one setting per layer.
3. **Refine** (``refine`` rounds, default 1): layers interact (e.g. a coarser conv1 codebook
   costs accuracy alone but helps once fc1 is pruned), so every layer's candidates are
   profiled again with the other layers at the plan's settings (``conditional_table``) and
   the solver runs on that table; repeated while the plan moves. One evaluation per
   off-plan candidate per round.
4. **Joint evaluation and correction**: the plan is compressed for real (the compression
   step of ``cz compress --config``), opened with ``czmodel.load`` and measured on the
   calibration set.

   * size budget: if the real file is larger than the budget (the additive size model is
     off by alignment and header bytes), the budget given to the solver shrinks by the
     excess and the solver runs again; if the measured score is worse than predicted
     (beyond ``tolerance``), the next point of the predicted front within the budget is
     evaluated too;
   * fidelity floor: if the measured score breaks the floor, the solver's allowed loss
     shrinks by the prediction error and the next (larger) plan is evaluated.

   At most ``joint_evals`` real evaluations; the result is the best measured plan that meets
   the constraint, with every prediction next to its measurement.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from czmodel.errors import EncodeError

from .fidelity import Metric, make_metric
from .model import PlanModel, as_feeds, load_runtime, sample_count, split_batches
from .sensitivity import SensitivityTable
from .solver import Solution, front, solve
from .space import Space, build_config


class JointEvaluator:
    """Compress a config for real, load it with ``czmodel.load`` and measure it; the fp32
    reference (scores, KL / cosine references) is the as-is file through the same path."""

    def __init__(self, model: PlanModel, feeds: dict, metric: Metric, backend: str = "auto",
                 batch: int = 1024) -> None:
        self.model, self.feeds, self.metric = model, feeds, metric
        self.backend, self.batch = backend, batch
        self.count = 0
        names = list(model.weights)
        from .space import Candidate
        ref = self._run(build_config({k: Candidate("fp32", None) for k in names}))
        self.base_out, self.base_bytes, self.backend_name = ref
        self.base_score = metric.score(self.base_out, self.base_out, feeds)

    def _run(self, config: dict) -> tuple[np.ndarray, int, str]:
        with tempfile.TemporaryDirectory(prefix="czplan_") as d:
            path = os.path.join(d, "plan.cz")
            self.model.write_cz(config, path)
            size = os.path.getsize(path)
            m = load_runtime(path, self.backend, threads=None)
            try:
                name = self.metric.output or m.outputs[0].name
                outs = [m.run(ch)[name] for ch in split_batches(self.feeds, self.batch)]
                be = m.backend.name
            finally:
                m.close()
        out = outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)
        return out, size, be

    def __call__(self, config: dict) -> dict:
        t0 = time.perf_counter()
        out, size, be = self._run(config)
        self.count += 1
        score = self.metric.score(out, self.base_out, self.feeds)
        return {"bytes": size, "score": score, "loss": self.base_score - score, "backend": be,
                "seconds": time.perf_counter() - t0}


@dataclass
class PlanResult:
    """The chosen plan (``config``: what ``cz compress --config`` consumes), what was
    predicted and measured, and the predicted Pareto front."""

    config: dict
    solution: Solution
    measured: dict
    feasible: bool
    joint: list[dict]
    front: list[dict]
    constraint: dict
    table: SensitivityTable
    base: dict
    evaluations: dict
    seconds: float
    notes: list[str] = field(default_factory=list)
    refined: list[dict] = field(default_factory=list)

    def save_config(self, path: str | os.PathLike) -> None:
        from czmodel.compress.config import CompressionConfig

        p = str(path)
        if p.lower().endswith((".yaml", ".yml")):
            text = CompressionConfig.from_dict(self.config).to_yaml()
        else:
            text = json.dumps(self.config, indent=2) + "\n"
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)

    def to_dict(self, with_table: bool = False) -> dict:
        d = {"config": self.config, "solution": self.solution.to_dict(),
             "measured": self.measured, "feasible": self.feasible, "joint": self.joint,
             "front": self.front, "constraint": self.constraint, "base": self.base,
             "evaluations": self.evaluations, "seconds": self.seconds, "notes": self.notes,
             "refined": self.refined,
             "metric": self.table.metric, "fp32_bytes": self.table.fp32_bytes,
             "samples": self.table.samples}
        if with_table:
            d["table"] = self.table.to_dict()
        return d

    def plot(self, path: str | os.PathLike, **kw: Any) -> None:
        from .plots import pareto_plot

        pareto_plot(self.to_dict(), path, **kw)


def _thin(points: list, n: int = 300) -> list:
    if len(points) <= n:
        return points
    idx = np.unique(np.linspace(0, len(points) - 1, n).round().astype(int))
    return [points[i] for i in idx]


class Planner:
    """A planning session: the model, the calibration data and metric, one set of workers,
    one profile and one fp32 reference, for as many constraints as wanted::

        with Planner("m.onnx", x, y) as pl:
            for b in (60_000, 100_000):
                pl.plan(budget_bytes=b).save_config(f"plan_{b}.json")

    ``metric``: "accuracy" (needs ``labels``), "kl", "cosine", a Metric, or None (accuracy
    with labels, else KL for 2-D outputs, else cosine). ``table``: a saved profile to reuse.
    ``latency``: measure per-layer latencies while profiling (needed for latency budgets;
    default: only when the first plan asks for one)."""

    def __init__(self, model: Any, data: Any, labels: Any = None, *,
                 metric: str | Metric | None = None, space: Space | None = None,
                 level: str = "default", table: SensitivityTable | None = None,
                 executor: Any = None, workers: int | None = None, backend: str = "auto",
                 batch: int = 1024, latency: bool | None = None,
                 progress: bool | None = None) -> None:
        from .executors import Executor, make_executor
        from .sensitivity import make_context

        self.model = PlanModel.load(model)
        feeds = as_feeds(self.model.graph, data)
        if labels is not None and len(np.asarray(labels).reshape(-1)) != sample_count(feeds):
            raise EncodeError(f"{len(np.asarray(labels).reshape(-1))} labels for "
                              f"{sample_count(feeds)} samples")
        if not isinstance(metric, Metric):
            metric = make_metric(metric, labels, len(self.model.graph.outputs[0].shape))
        self.metric, self.feeds, self.backend, self.batch = metric, feeds, backend, batch
        self.progress, self.table = progress, table
        if table is not None:
            space = Space(table.candidates)
        self.ctx = make_context(self.model, feeds, metric, space, batch=batch,
                                latency=bool(latency), level=level)
        self._latency_auto = latency is None
        self._own = not isinstance(executor, Executor)
        self.executor = make_executor(executor, workers)
        self._joint: JointEvaluator | None = None

    def close(self) -> None:
        from .sensitivity import release

        release(self.ctx)
        if self._own:
            self.executor.close()

    def __enter__(self) -> Planner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def profile(self) -> SensitivityTable:
        """The one-layer-at-a-time profile (computed once)."""
        from .sensitivity import profile_table

        if self.table is None:
            self.table = profile_table(self.ctx, self.executor, self.progress)
        return self.table

    @property
    def joint(self) -> JointEvaluator:
        if self._joint is None:
            self._joint = JointEvaluator(self.model, self.feeds, self.metric, self.backend,
                                         self.batch)
        return self._joint

    def plan(self, *, budget_bytes: float | None = None, budget_ratio: float | None = None,
             budget_latency_ms: float | None = None, min_score: float | None = None,
             method: str = "dp", refine: int = 1, joint_evals: int = 3,
             tolerance: float | None = None) -> PlanResult:
        """One setting per layer for exactly one constraint -- ``budget_bytes`` (file
        size), ``budget_ratio`` (fp32 bytes / file bytes), ``budget_latency_ms`` (sum of the
        planned layers' latencies) or ``min_score`` (fidelity floor: accuracy, cosine, or
        -KL) -- refined by ``refine`` rounds of re-profiling around the plan (one evaluation
        per off-plan candidate each) and checked on up to ``joint_evals`` real compressed
        files (module doc)."""
        from .sensitivity import conditional_table

        t0 = time.perf_counter()
        given = [x is not None for x in (budget_bytes, budget_ratio, budget_latency_ms,
                                         min_score)]
        if sum(given) != 1:
            raise EncodeError("give exactly one of budget_bytes, budget_ratio, "
                              "budget_latency_ms, min_score")
        if budget_ratio is not None:
            if budget_ratio <= 0:
                raise EncodeError(f"budget ratio must be > 0, got {budget_ratio}")
            budget_bytes = self.model.fp32_bytes / float(budget_ratio)
        if budget_latency_ms is not None and self.table is None and self._latency_auto:
            self.ctx.latency = True
        table = self.profile()
        ctx, ex, progress, metric = self.ctx, self.executor, self.progress, self.metric
        joint = self.joint
        n_joint0 = joint.count

        def constrained(tab: SensitivityTable, meth: str, **kw: Any) -> Solution | None:
            ml = None if min_score is None else tab.base_score - float(min_score)
            return solve(tab, budget_bytes=kw.get("limit", budget_bytes),
                         budget_latency_ms=budget_latency_ms,
                         max_loss=None if ml is None else ml - kw.get("slack", 0.0),
                         method=meth, exclude=kw.get("exclude", ()))

        sol = constrained(table, method)
        cur, refined = table, []
        for _ in range(max(0, refine)):
            if sol is None:
                break
            cond = conditional_table(ctx, ex, table, sol.choice, progress)
            new = constrained(cond, method)
            refined.append({"around": dict(sol.labels), "evaluations": cond.evaluations,
                            "plan_score": cond.base_score, "seconds": cond.seconds,
                            "moved_to": None if new is None else dict(new.labels)})
            if new is None:
                break
            cur, moved, sol = cond, new.choice != sol.choice, new
            if not moved:
                break
        if sol is None:
            what = (f"a file of at most {budget_bytes:,.0f} bytes" if budget_bytes is not None
                    else f"{budget_latency_ms} ms" if budget_latency_ms is not None
                    else f"{metric.name} >= {min_score}")
            raise EncodeError(f"no plan meets {what} (the smallest plan is "
                              f"{_smallest(table):,} bytes, the best {metric.name} "
                              f"{table.base_score:.4f})")
        notes = []
        if abs(joint.base_score - table.base_score) > 1e-6:
            notes.append(f"fp32 {metric.name} through czmodel.load ({joint.backend_name}) is "
                         f"{joint.base_score:.6f}, in the profile {table.base_score:.6f}")
        if tolerance is None:
            n = sample_count(self.feeds)
            tolerance = 1.0 / n if metric.name == "accuracy" else 0.0
        max_loss = None if min_score is None else table.base_score - float(min_score)
        constraint = {k: v for k, v in (("budget_bytes", budget_bytes),
                                        ("budget_ratio", budget_ratio),
                                        ("budget_latency_ms", budget_latency_ms),
                                        ("min_score", min_score), ("max_loss", max_loss))
                      if v is not None}
        evaluated: list[dict] = []
        exclude: list[tuple[int, ...]] = []
        limit, slack = budget_bytes, 0.0
        names = table.layer_names
        for it in range(max(1, joint_evals)):
            if it:
                sol = constrained(cur, "dp", limit=limit, slack=slack, exclude=exclude)
                if sol is None:
                    break
            cfg = build_config({k: table.candidates[k][sol.choice[k]] for k in names})
            meas = joint(cfg)
            exclude.append(tuple(sol.choice[k] for k in names))
            fits = budget_bytes is None or meas["bytes"] <= budget_bytes
            meets = min_score is None or meas["score"] >= min_score - 1e-12
            evaluated.append({"labels": sol.labels, "choice": sol.choice, "config": cfg,
                              "predicted_bytes": sol.predicted_bytes,
                              "predicted_score": sol.predicted_score,
                              "predicted_loss": table.base_score - sol.predicted_score,
                              "predicted_latency_ms": sol.predicted_latency_ms,
                              "measured_bytes": meas["bytes"], "measured_score": meas["score"],
                              "measured_loss": meas["loss"], "backend": meas["backend"],
                              "seconds": meas["seconds"], "feasible": bool(fits and meets),
                              "solution": sol})
            if not fits:
                limit -= meas["bytes"] - budget_bytes
                continue
            if min_score is not None:
                if meets:
                    break
                slack += max(sol.predicted_score - meas["score"], 0.0)
                continue
            if meas["score"] >= sol.predicted_score - tolerance:
                break
        ok = [e for e in evaluated if e["feasible"]]
        if min_score is None:
            best = (max(ok, key=lambda e: (e["measured_score"], -e["measured_bytes"])) if ok
                    else min(evaluated, key=lambda e: e["measured_bytes"]))
        else:
            best = (min(ok, key=lambda e: (e["measured_bytes"], -e["measured_score"])) if ok
                    else max(evaluated, key=lambda e: e["measured_score"]))
        for e in evaluated:
            e["chosen"] = e is best
        sol = best["solution"]
        for e in evaluated:
            e.pop("solution", None)
        fr = front(table, "latency" if budget_latency_ms is not None else "bytes")
        front_pts = [{"bytes": table.predicted_bytes(dict(zip(names, p.choice))),
                      "score": table.base_score - p.loss, "loss": p.loss,
                      "labels": [table.candidates[k][j].label for k, j in zip(names, p.choice)]}
                     for p in _thin(fr.points)]
        measured = {k: best[k] for k in ("measured_bytes", "measured_score", "measured_loss",
                                         "backend")}
        measured["ratio"] = table.fp32_bytes / best["measured_bytes"]
        n_ref = sum(r["evaluations"] for r in refined)
        return PlanResult(
            config=best["config"], solution=sol, measured=measured, feasible=best["feasible"],
            joint=evaluated, front=front_pts, constraint=constraint, table=table,
            base={"score": joint.base_score, "bytes": joint.base_bytes,
                  "backend": joint.backend_name, "profile_score": table.base_score},
            evaluations={"profile": table.evaluations, "refine": n_ref,
                         "joint": joint.count - n_joint0,
                         "total": table.evaluations + n_ref + joint.count - n_joint0},
            seconds=time.perf_counter() - t0, notes=notes, refined=refined)


def plan(model: Any, data: Any, labels: Any = None, *, budget_bytes: float | None = None,
         budget_ratio: float | None = None, budget_latency_ms: float | None = None,
         min_score: float | None = None, metric: str | Metric | None = None,
         space: Space | None = None, level: str = "default",
         table: SensitivityTable | None = None, executor: Any = None,
         workers: int | None = None, method: str = "dp", refine: int = 1,
         joint_evals: int = 3, tolerance: float | None = None, backend: str = "auto",
         batch: int = 1024, latency: bool | None = None, progress: bool | None = None
         ) -> PlanResult:
    """Profile (unless ``table`` is given), solve, refine and check one constraint in one
    call: ``Planner(...).plan(...)`` (see both)."""
    with Planner(model, data, labels, metric=metric, space=space, level=level, table=table,
                 executor=executor, workers=workers, backend=backend, batch=batch,
                 latency=latency, progress=progress) as pl:
        return pl.plan(budget_bytes=budget_bytes, budget_ratio=budget_ratio,
                       budget_latency_ms=budget_latency_ms, min_score=min_score,
                       method=method, refine=refine, joint_evals=joint_evals,
                       tolerance=tolerance)


def _smallest(table: SensitivityTable) -> int:
    return table.fixed_bytes + sum(min(table.bytes[k]) for k in table.layer_names)
