"""The Pareto plot of a plan: file size vs fidelity (PNG, matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any


def pareto_plot(result: Mapping[str, Any], path: str | os.PathLike, *,
                extra: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                title: str | None = None, scale: float | None = None) -> None:
    """``result``: ``PlanResult.to_dict()``. Draws the predicted front (profile sums), every
    jointly evaluated plan (predicted -> measured, the chosen one starred), the budget or
    floor, and ``extra`` series {label: [(bytes, score)]} (e.g. a grid or uniform settings).
    Accuracy is drawn in points (x100)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result.get("metric", {}).get("name", "score")
    if scale is None:
        scale = 100.0 if metric == "accuracy" else 1.0
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    markers = iter("o^sDvP")
    for label, pts in (extra or {}).items():
        if pts:
            xs, ys = zip(*sorted(pts))
            ax.scatter(xs, [y * scale for y in ys], s=10, alpha=0.45, label=label,
                       marker=next(markers))
    fr = result.get("front") or []
    if fr:
        ax.step([p["bytes"] for p in fr], [p["score"] * scale for p in fr], where="post",
                color="tab:blue", lw=1.4, label="planner: predicted front (profile sums)")
    for e in result.get("joint", []):
        px, py = e["predicted_bytes"], e["predicted_score"] * scale
        mx, my = e["measured_bytes"], e["measured_score"] * scale
        ax.annotate("", (mx, my), (px, py), arrowprops={"arrowstyle": "->", "color": "0.4",
                                                         "lw": 0.8})
        ax.scatter([mx], [my], s=140 if e.get("chosen") else 40,
                   marker="*" if e.get("chosen") else "o", color="tab:red", zorder=5,
                   edgecolor="k", linewidth=0.5)
    ax.scatter([], [], marker="*", s=140, color="tab:red", edgecolor="k",
               label="planner: measured (real .cz), chosen starred")
    c = result.get("constraint", {})
    if "budget_bytes" in c:
        ax.axvline(c["budget_bytes"], color="0.3", ls="--", lw=1, label="size budget")
    if "min_score" in c:
        ax.axhline(c["min_score"] * scale, color="0.3", ls="--", lw=1, label="fidelity floor")
    base = result.get("base", {})
    if "score" in base and "bytes" in base:
        ax.scatter([base["bytes"]], [base["score"] * scale], marker="s", color="k", s=30,
                   label="fp32")
    ax.set_xscale("log")
    ax.set_xlabel("file bytes")
    unit = " (%)" if metric == "accuracy" and scale == 100.0 else ""
    ax.set_ylabel(f"{metric}{unit} on the calibration set")
    lo = [e["measured_score"] for e in result.get("joint", [])]
    if "min_score" in c:
        lo.append(c["min_score"])
    if lo and base.get("score") is not None:
        # show the region around the plan: 4x its loss below the fp32 score
        span = max(4 * (base["score"] - min(lo)), 1e-3 * abs(base["score"]), 1e-6)
        ax.set_ylim((base["score"] - span) * scale, (base["score"] + 0.1 * span) * scale)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower right")
    ax.set_title(title or "planner: size vs fidelity", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    plt.close(fig)
