"""Choose one setting per layer: a multiple-choice knapsack.

Given per layer a list of options (cost, loss) -- cost = stored bytes (or latency), loss =
the fidelity loss measured with that layer alone compressed, assumed additive -- two modes:

* **budget**: minimise the total loss subject to total cost <= budget;
* **floor**: minimise the total cost subject to total loss <= max_loss (a fidelity floor).

Two methods:

* ``pareto_front`` (method "dp", exact): dynamic programming over layers keeping the Pareto
  front of (cost, loss) of partial choices. A partial choice dominated in both cost and
  loss can never complete to a better plan (both are sums), so the final front holds the
  optimum for EVERY budget / floor at once -- which is also the predicted Pareto plot. The
  front is bounded by the number of distinct cost sums; past ``max_points`` it is thinned
  to the best point per cost bucket (then ``exact=False``).
* ``lagrangian`` (method "lagrangian"): relax the constraint with a multiplier lambda; each
  layer then independently picks the point of its lower convex hull minimising
  ``loss + lambda * cost``. The breakpoints of lambda are the hull slopes; a binary search
  over them finds the smallest lambda that meets the budget (largest that meets the floor),
  then a greedy pass spends what is left. Near-linear time, optimal at hull points (a
  solution minimising loss + lambda*cost is optimal for its own cost), within the duality
  gap elsewhere.

Both are pure functions of numbers (no model); ``solve(table, ...)`` applies them to a
``SensitivityTable``.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from czmodel.errors import EncodeError


@dataclass
class Point:
    cost: float
    loss: float
    choice: tuple[int, ...]


@dataclass
class Front:
    """Pareto front, cost ascending and loss strictly descending."""

    points: list[Point]
    exact: bool = True

    def best_within(self, budget: float) -> Point | None:
        """Least loss with cost <= budget."""
        costs = [p.cost for p in self.points]
        i = bisect.bisect_right(costs, budget + 1e-9 * max(1.0, abs(budget))) - 1
        return self.points[i] if i >= 0 else None

    def cheapest_within(self, max_loss: float) -> Point | None:
        """Least cost with loss <= max_loss."""
        tol = 1e-12 * max(1.0, abs(max_loss))
        for p in self.points:
            if p.loss <= max_loss + tol:
                return p
        return None


def pareto_front(costs: Sequence[Sequence[float]], losses: Sequence[Sequence[float]],
                 max_points: int | None = 200_000) -> Front:
    """Exact Pareto front of sum(cost) vs sum(loss) over one option per layer."""
    if len(costs) != len(losses) or any(len(c) != len(ls) or not c
                                         for c, ls in zip(costs, losses)):
        raise EncodeError("every layer needs at least one option, with a cost and a loss each")
    fc, fl = np.zeros(1), np.zeros(1)
    backs: list[tuple[np.ndarray, np.ndarray]] = []
    exact = True
    for c, ls in zip(costs, losses):
        c, ls = np.asarray(c, np.float64), np.asarray(ls, np.float64)
        m = len(c)
        tc = (fc[:, None] + c[None, :]).ravel()
        tl = (fl[:, None] + ls[None, :]).ravel()
        order = np.lexsort((tl, tc))                   # by cost, then loss
        tc, tl = tc[order], tl[order]
        prev_min = np.minimum.accumulate(np.concatenate(([np.inf], tl[:-1])))
        keep = tl < prev_min
        idx = order[keep]
        fc, fl = tc[keep], tl[keep]
        parent, option = idx // m, idx % m
        if max_points is not None and len(fc) > max_points:
            exact = False
            edges = np.linspace(fc[0], fc[-1], max_points + 1)
            bucket = np.minimum(np.searchsorted(edges, fc, side="right") - 1, max_points - 1)
            last = np.r_[bucket[1:] != bucket[:-1], True]     # lowest loss in each bucket
            fc, fl, parent, option = fc[last], fl[last], parent[last], option[last]
        backs.append((parent, option))
    points = []
    for i in range(len(fc)):
        ch, k = [], i
        for parent, option in reversed(backs):
            ch.append(int(option[k]))
            k = int(parent[k])
        points.append(Point(float(fc[i]), float(fl[i]), tuple(reversed(ch))))
    return Front(points, exact)


# -- Lagrangian relaxation -------------------------------------------------------------------
def lower_hull(cost: Sequence[float], loss: Sequence[float]) -> list[int]:
    """Indices of the lower convex hull of (cost, loss), cost ascending, loss descending."""
    pts = sorted(range(len(cost)), key=lambda j: (cost[j], loss[j]))
    eff: list[int] = []
    for j in pts:                                     # Pareto-efficient first
        if not eff or loss[j] < loss[eff[-1]]:
            if eff and cost[j] == cost[eff[-1]]:
                continue
            eff.append(j)
    hull: list[int] = []
    for j in eff:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is above the segment a -> j: drop it
            cross = ((cost[b] - cost[a]) * (loss[j] - loss[a])
                     - (loss[b] - loss[a]) * (cost[j] - cost[a]))
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def _totals(choice, costs, losses) -> tuple[float, float]:
    c = ls = 0.0
    for j, cc, ll in zip(choice, costs, losses):
        c += cc[j]
        ls += ll[j]
    return c, ls


def lambda_path(costs: Sequence[Sequence[float]], losses: Sequence[Sequence[float]]
                ) -> list[tuple[float, tuple[int, ...]]]:
    """The minimisers of ``loss + lambda * cost`` as lambda rises from 0: ``[(lambda,
    choice)]``, cost falling along the list. Exact: the breakpoints are the hull slopes, so
    the path is built by applying the hull segments in slope order (no float ties)."""
    hulls = [lower_hull(c, ls) for c, ls in zip(costs, losses)]
    pos = [len(h) - 1 for h in hulls]                 # lambda = 0: each layer's least loss
    segs = []
    for k, (h, c, ls) in enumerate(zip(hulls, costs, losses)):
        for i in range(len(h) - 1, 0, -1):            # toward cheaper points
            a, b = h[i - 1], h[i]
            segs.append(((ls[a] - ls[b]) / (c[b] - c[a]), k, len(h) - 1 - i))
    segs.sort()                                       # per layer the slopes rise too
    path = [(0.0, tuple(h[p] for h, p in zip(hulls, pos)))]
    for slope, k, _ in segs:
        pos[k] -= 1
        path.append((slope, tuple(h[p] for h, p in zip(hulls, pos))))
    return path


def lagrangian(costs: Sequence[Sequence[float]], losses: Sequence[Sequence[float]], *,
               budget: float | None = None, max_loss: float | None = None,
               fill: bool = True) -> Point | None:
    """Lagrangian relaxation (see the module doc). Exactly one of ``budget`` / ``max_loss``.
    Returns None when no choice meets the constraint."""
    if (budget is None) == (max_loss is None):
        raise EncodeError("give exactly one of budget and max_loss")
    path = lambda_path(costs, losses)
    tots = [_totals(ch, costs, losses) for _, ch in path]
    if budget is not None:
        tol = 1e-9 * max(1.0, abs(budget))
        # cost falls along the path: binary search for the smallest lambda that fits
        i = bisect.bisect_left([-c for c, _ in tots], -(budget + tol))
        if i == len(path):
            return None
        best = path[i][1]
    else:
        tol = 1e-12 * max(1.0, abs(max_loss))
        # loss rises along the path: the largest lambda still above the floor
        i = bisect.bisect_right([ls for _, ls in tots], max_loss + tol) - 1
        if i < 0:
            return None
        best = path[i][1]
    best = list(best)
    if fill:
        _greedy(best, costs, losses, budget, max_loss)
    c, ls = _totals(best, costs, losses)
    return Point(c, ls, tuple(best))


def _greedy(choice: list[int], costs, losses, budget, max_loss) -> None:
    """Spend what the relaxation left: single-layer moves, best ratio first."""
    while True:
        c, ls = _totals(choice, costs, losses)
        best, best_gain = None, 0.0
        for k, (cc, ll) in enumerate(zip(costs, losses)):
            j0 = choice[k]
            for j in range(len(cc)):
                dc, dl = cc[j] - cc[j0], ll[j] - ll[j0]
                if budget is not None:           # buy loss reduction with spare budget
                    if dl < 0 and c + dc <= budget + 1e-9 * max(1, abs(budget)):
                        gain = -dl / max(dc, 1e-12) if dc > 0 else np.inf
                        if gain > best_gain or (gain == best_gain and best and dl < best[2]):
                            best, best_gain = (k, j, dl), gain
                elif dc < 0 and ls + dl <= max_loss + 1e-12 * max(1.0, abs(max_loss)):
                    gain = -dc / max(dl, 1e-12) if dl > 0 else np.inf
                    if gain > best_gain:
                        best, best_gain = (k, j, dc), gain
        if best is None:
            return
        choice[best[0]] = best[1]


# -- on a sensitivity table -------------------------------------------------------------------
@dataclass
class Solution:
    """One setting per layer (candidate index and label) and what the profile predicts."""

    choice: dict[str, int]
    labels: dict[str, str]
    predicted_loss: float
    predicted_score: float
    predicted_bytes: int
    predicted_latency_ms: float | None
    mode: str
    method: str
    exact: bool = True
    constraint: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("choice", "labels", "predicted_loss",
                                              "predicted_score", "predicted_bytes",
                                              "predicted_latency_ms", "mode", "method",
                                              "exact", "constraint")}


def table_arrays(table: Any, cost: str = "bytes") -> tuple[list[list[float]],
                                                          list[list[float]]]:
    names = table.layer_names
    return [table.cost(k, cost) for k in names], [table.loss(k) for k in names]


def make_solution(table: Any, choice: Sequence[int] | Mapping[str, int], mode: str,
                  method: str, exact: bool = True, constraint: dict | None = None
                  ) -> Solution:
    names = table.layer_names
    ch = dict(choice) if isinstance(choice, Mapping) else dict(zip(names, choice))
    ch = {k: int(ch[k]) for k in names}
    loss = 0.0
    for k in names:
        loss += table.loss(k)[ch[k]]
    lats = [table.latency_ms[k][ch[k]] for k in names]
    return Solution(ch, {k: table.candidates[k][ch[k]].label for k in names}, loss,
                    table.base_score - loss, table.predicted_bytes(ch),
                    None if any(x is None for x in lats) else float(sum(lats)), mode, method,
                    exact, dict(constraint or {}))


def front(table: Any, cost: str = "bytes", max_points: int | None = 200_000) -> Front:
    """The predicted Pareto front of a table (costs per layer, without fixed bytes)."""
    return pareto_front(*table_arrays(table, cost), max_points=max_points)


def solve(table: Any, *, budget_bytes: float | None = None,
          budget_latency_ms: float | None = None, max_loss: float | None = None,
          method: str = "dp", max_points: int | None = 200_000,
          exclude: Sequence[Sequence[int]] = ()) -> Solution | None:
    """Budget mode (``budget_bytes`` = whole-file bytes, or ``budget_latency_ms`` = the sum
    of the planned layers' latencies): least predicted loss. Floor mode (``max_loss``):
    fewest bytes. ``exclude``: choices (tuples in layer order) not to return again (the
    planner's "next point" after a joint evaluation). None when nothing meets the
    constraint."""
    given = [x is not None for x in (budget_bytes, budget_latency_ms, max_loss)]
    if sum(given) != 1:
        raise EncodeError("give exactly one of budget_bytes, budget_latency_ms, max_loss")
    kind = "latency" if budget_latency_ms is not None else "bytes"
    costs, losses = table_arrays(table, kind)
    if budget_bytes is not None:
        mode, limit = "budget", float(budget_bytes) - table.fixed_bytes
        constraint = {"budget_bytes": float(budget_bytes)}
    elif budget_latency_ms is not None:
        mode, limit = "budget", float(budget_latency_ms)
        constraint = {"budget_latency_ms": float(budget_latency_ms)}
    else:
        mode, limit = "floor", float(max_loss)
        constraint = {"max_loss": float(max_loss)}
    excl = {tuple(e) for e in exclude}
    if method == "dp":
        fr = pareto_front(costs, losses, max_points)
        pts = [p for p in fr.points if p.choice not in excl]
        sub = Front(pts, fr.exact)
        p = sub.best_within(limit) if mode == "budget" else sub.cheapest_within(limit)
        exact = fr.exact
    elif method == "lagrangian":
        if excl:
            raise EncodeError("exclude needs method 'dp'")
        p = lagrangian(costs, losses, **({"budget": limit} if mode == "budget"
                                         else {"max_loss": limit}))
        exact = False
    else:
        raise EncodeError(f"method {method!r}: use dp or lagrangian")
    if p is None:
        return None
    return make_solution(table, p.choice, mode, method, exact, constraint)
