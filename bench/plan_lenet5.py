"""The planner vs an exhaustive grid on LeNet-5 / Fashion-MNIST.

Model: docs/results/deep_compression/lenet5_fp32.onnx (the trained fp32 LeNet-5, no
retraining here: every setting is applied post-training). Reduced space: 4 layers x 5
candidates = 625 combinations (conv1, conv2, fc1, fc2; pruning, k-means, int4/int8, SVD).

* grid: every combination evaluated on the full 10,000-image test set (exact file sizes
  from the real writer, ``czmodel.plan.sizes``); "grid best" at a budget = the highest
  test accuracy among combinations whose file fits -- an oracle that saw the test labels.
* planner: profiles one layer at a time on 2,000 test images drawn at random (seed 0; the
  "calibration" set), solves for each size budget (exact Pareto DP), then evaluates its
  choice and up to 2 neighbours on the real compressed .cz (czmodel.load) on the same
  2,000 images and keeps the best. Its final number is the test accuracy of the chosen
  .cz on all 10,000 images (C runtime). Before the joint check, one refinement round
  re-profiles every layer's candidates around the plan (interactions) and solves again;
  the "no-refine" column is the same planner without it (ablation).

Also reported: the grid's best chosen with the planner's information (2,000 images), the
grid's wall time on those 2,000 images, evaluation counts and wall times.

    python bench/plan_lenet5.py            # full: 625-point grid (~10 min on 2 shared cores)
    python bench/plan_lenet5.py --quick    # 3 candidates per layer (81 points), small sets

Writes bench/results/plan_lenet5.json (quick: plan_lenet5_quick.json) and
docs/results/plan/lenet5_pareto.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "converters"))

import czmodel.plan as P  # noqa: E402
from czmodel.datasets import load_fashion_mnist  # noqa: E402
from czmodel.plan.grid import grid_search  # noqa: E402
from czmodel.plan.model import load_runtime  # noqa: E402
from czmodel.plan.sizes import FileSizer  # noqa: E402
from czmodel.progress import progress_task  # noqa: E402

ONNX = os.path.join(ROOT, "docs", "results", "deep_compression", "lenet5_fp32.onnx")
SPACE = {
    "conv1.weight": ["fp32", "int8", "k5", "k4", "p50-k5"],
    "conv2.weight": ["int8", "k5", "p50-k5", "p70-k5", "p80-k4"],
    "fc1.weight": ["int4", "r0.125-int8", "p70-k5", "p80-k4", "p90-k4"],
    "fc2.weight": ["int8", "k5", "k4", "k3", "p50-k5"],
}
QUICK_SPACE = {
    "conv1.weight": ["int8", "k4", "p50-k5"],
    "conv2.weight": ["k5", "p70-k5", "p80-k4"],
    "fc1.weight": ["r0.125-int8", "p80-k4", "p90-k4"],
    "fc2.weight": ["int8", "k4", "p50-k5"],
}
BUDGETS = [56_000, 60_000, 75_000, 90_000, 100_000, 175_000]
QUICK_BUDGETS = [70_000, 100_000]
TARGET_POINTS, TARGET_FACTOR = 0.2, 10.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def accuracy_cz(data: bytes, x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    m = load_runtime(data, "auto", threads=None)
    try:
        out = np.concatenate([m.run({"input": x[i:i + 1000]})["logits"]
                              for i in range(0, len(x), 1000)])
        return float((out.argmax(1) == y).mean()), m.backend.name
    finally:
        m.close()


def run(args: argparse.Namespace) -> dict:
    t_all = time.perf_counter()
    _, _, xte, yte = load_fashion_mnist()
    x_all = (xte.astype(np.float32)[:, None] / 255.0)
    y_all = yte.astype(np.int64)
    n_test = 2000 if args.quick else len(x_all)
    n_cal = 500 if args.quick else args.calib
    x_all, y_all = x_all[:n_test], y_all[:n_test]
    cal = np.sort(np.random.default_rng(0).permutation(n_test)[:n_cal])
    x_cal, y_cal = x_all[cal], y_all[cal]
    space_labels = QUICK_SPACE if args.quick else SPACE
    budgets = args.budgets or (QUICK_BUDGETS if args.quick else BUDGETS)
    model = P.PlanModel.load(ONNX)
    space = P.Space({k: [P.parse_label(s, model.tensors[k].shape) for s in v]
                     for k, v in space_labels.items()})
    log(f"LeNet-5: {model.fp32_bytes:,} fp32 bytes; space {space.grid_size()} combinations; "
        f"test {n_test} images, calibration {n_cal}; budgets {budgets}")
    ex = P.ProcessExecutor(args.workers)
    res: dict = {"network": "LeNet-5 (Fashion-MNIST, fp32, post-training settings)",
                 "space": space_labels, "grid_points": space.grid_size(), "budgets": budgets,
                 "test_images": n_test, "calibration_images": n_cal,
                 "calibration_indices_seed": 0, "workers": ex.workers,
                 "loadavg_start": os.getloadavg()}

    # -- exact sizes of every combination ------------------------------------------------
    t0 = time.perf_counter()
    sizer = FileSizer(model)
    layers = space.layers
    import itertools
    combos = list(itertools.product(*[range(len(space.candidates[k])) for k in layers]))
    sizes = {}
    with progress_task(len(combos), desc="grid sizes") as bar:
        for ch in combos:
            sizes[ch] = sizer.size({k: space.candidates[k][j] for k, j in zip(layers, ch)})
            bar.advance(1)
    res["sizes_seconds"] = time.perf_counter() - t0
    log(f"exact file sizes of {len(combos)} combinations: {res['sizes_seconds']:.1f} s "
        f"({min(sizes.values()):,} .. {max(sizes.values()):,} bytes)")

    # -- the grid on the whole test set (the oracle) and on the calibration set (timing) --
    metrics = {"test": P.Accuracy(y_all), "cal": P.Accuracy(y_all, index=cal)}
    t0 = time.perf_counter()
    with progress_task(None, desc="grid (test set)") as bar:
        grid = grid_search(model, {"input": x_all}, metrics, space, executor=ex,
                           on_done=lambda i, r: bar.advance(len(r)))
    t_grid = time.perf_counter() - t0
    log(f"grid: {len(grid)} evaluations on {n_test} images in {t_grid:.1f} s")
    t0 = time.perf_counter()
    with progress_task(None, desc="grid (calibration set)") as bar:
        grid_cal = grid_search(model, {"input": x_cal}, {"cal": P.Accuracy(y_cal)}, space,
                               executor=ex, on_done=lambda i, r: bar.advance(len(r)))
    t_grid_cal = time.perf_counter() - t0
    same = all(abs(a["scores"]["cal"] - b["scores"]["cal"]) < 1e-12
               for a, b in zip(grid, grid_cal))
    log(f"grid: {len(grid_cal)} evaluations on the {n_cal} calibration images in "
        f"{t_grid_cal:.1f} s (same scores as the test-set run's subset: {same})")
    for g in grid:
        g["bytes"] = sizes[tuple(g["choice"][k] for k in layers)]
    res["grid"] = {"evaluations": len(grid), "seconds_test_set": t_grid,
                   "seconds_calibration_set": t_grid_cal, "subset_scores_agree": same,
                   "points": [{"labels": list(g["labels"].values()), "bytes": g["bytes"],
                               "test": g["scores"]["test"], "cal": g["scores"]["cal"]}
                              for g in grid]}

    # -- the planner (one session: profile once, then every budget) --------------------------
    planner = P.Planner(model, {"input": x_cal}, y_cal, space=space, executor=ex, latency=False)
    t0 = time.perf_counter()
    table = planner.profile()
    t_prof = time.perf_counter() - t0
    log(f"planner profile: {table.evaluations} evaluations in {t_prof:.1f} s")
    print(table.to_text(100.0))
    res["profile"] = {"evaluations": table.evaluations, "seconds": t_prof,
                      "table": table.to_dict()}

    rows = []
    for b in budgets:
        t0 = time.perf_counter()
        pr = planner.plan(budget_bytes=b, joint_evals=args.joint_evals, refine=args.refine)
        t_plan = time.perf_counter() - t0
        data = model.compressed_bytes(pr.config)
        acc_test, backend = accuracy_cz(data, x_all, y_all)
        fits = [g for g in grid if g["bytes"] <= b]
        best = max(fits, key=lambda g: (g["scores"]["test"], -g["bytes"]))
        best_cal = max(fits, key=lambda g: (g["scores"]["cal"], -g["bytes"]))
        best_choice = {k: space.candidates[k][best["choice"][k]] for k in layers}
        best_real, _ = accuracy_cz(sizer.file_bytes(best_choice), x_all, y_all)
        n_eval = pr.evaluations["total"]
        row = {
            "budget_bytes": b,
            "grid_best": {"labels": list(best["labels"].values()), "bytes": best["bytes"],
                          "test_accuracy": best["scores"]["test"],
                          "test_accuracy_real_cz": best_real},
            "grid_best_by_calibration": {"labels": list(best_cal["labels"].values()),
                                         "bytes": best_cal["bytes"],
                                         "test_accuracy": best_cal["scores"]["test"]},
            "planner": {"labels": list(pr.solution.labels.values()), "bytes": len(data),
                        "test_accuracy": acc_test, "backend": backend,
                        "calibration_accuracy_predicted": pr.solution.predicted_score,
                        "calibration_accuracy_measured": pr.measured["measured_score"],
                        "joint": [{k: e[k] for k in ("labels", "predicted_bytes",
                                                     "measured_bytes", "predicted_score",
                                                     "measured_score", "chosen")}
                                  for e in pr.joint],
                        "evaluations": n_eval, "refine_evaluations": pr.evaluations["refine"],
                        "joint_evaluations": pr.evaluations["joint"],
                        "refined": pr.refined,
                        "seconds_refine_and_joint": t_plan,
                        "seconds_total": t_prof + t_plan},
            "diff_points": 100.0 * (best["scores"]["test"] - acc_test),
            "eval_factor": len(grid) / n_eval,
        }
        # ablation: the same session without the refinement round
        pr0 = planner.plan(budget_bytes=b, joint_evals=args.joint_evals, refine=0)
        acc0, _ = accuracy_cz(model.compressed_bytes(pr0.config), x_all, y_all)
        row["planner_no_refine"] = {"labels": list(pr0.solution.labels.values()),
                                    "bytes": pr0.measured["measured_bytes"],
                                    "test_accuracy": acc0,
                                    "evaluations": pr0.evaluations["total"],
                                    "diff_points": 100.0 * (best["scores"]["test"] - acc0)}
        row["pass"] = bool(row["diff_points"] <= TARGET_POINTS + 1e-9 and len(data) <= b
                           and row["eval_factor"] >= TARGET_FACTOR)
        rows.append(row)
        log(f"budget {b:,}: grid best {100 * best['scores']['test']:.2f}% "
            f"({best['bytes']:,} B), planner {100 * acc_test:.2f}% ({len(data):,} B) "
            f"{row['planner']['labels']}; diff {row['diff_points']:+.2f} pt, "
            f"{n_eval} evaluations; without refinement {100 * acc0:.2f}% "
            f"({row['planner_no_refine']['evaluations']} evaluations)")
    planner.close()
    ex.close()
    res["budgets_results"] = rows
    joint_total = sum(r["planner"]["joint_evaluations"] + r["planner"]["refine_evaluations"]
                      for r in rows)
    res["summary"] = {
        "all_pass": all(r["pass"] for r in rows),
        "max_diff_points": max(r["diff_points"] for r in rows),
        "grid_evaluations": len(grid),
        "planner_evaluations_all_budgets": table.evaluations + joint_total,
        "eval_factor_all_budgets": len(grid) / (table.evaluations + joint_total),
        "min_eval_factor_per_budget": min(r["eval_factor"] for r in rows),
        "fp32_test_accuracy": accuracy_cz(sizer.file_bytes({}), x_all, y_all)[0],
        "fp32_bytes": model.fp32_bytes,
    }
    res["loadavg_end"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - t_all
    return res


def print_table(res: dict) -> None:
    from czmodel.cli.table import render

    rows = []
    for r in res["budgets_results"]:
        g, p = r["grid_best"], r["planner"]
        rows.append([f"{r['budget_bytes']:,}", f"{100 * g['test_accuracy']:.2f}",
                     f"{g['bytes']:,}", f"{100 * r['grid_best_by_calibration']['test_accuracy']:.2f}",
                     f"{100 * p['test_accuracy']:.2f}", f"{p['bytes']:,}",
                     f"{r['diff_points']:+.2f}", f"{p['evaluations']}",
                     f"{100 * r['planner_no_refine']['test_accuracy']:.2f}",
                     f"{r['eval_factor']:.0f}x", f"{p['seconds_total']:.0f}",
                     "/".join(p["labels"]), "yes" if r["pass"] else "NO"])
    s = res["summary"]
    print()
    print(render(["budget B", "grid best %", "grid B", "grid@cal %", "planner %", "planner B",
                  "diff pt", "evals", "no-refine %", "fewer", "planner s", "planner setting",
                  "pass"], rows, "rrrrrrrrrrrll"))
    print(f"\ngrid: {s['grid_evaluations']} evaluations, {res['grid']['seconds_test_set']:.0f} s "
          f"on {res['test_images']} images ({res['grid']['seconds_calibration_set']:.0f} s on "
          f"the {res['calibration_images']} calibration images); planner: "
          f"{res['profile']['evaluations']} profile evaluations "
          f"({res['profile']['seconds']:.0f} s) + per budget refine + joint, "
          f"{s['planner_evaluations_all_budgets']}"
          f" for all {len(res['budgets_results'])} budgets ({s['eval_factor_all_budgets']:.0f}x "
          f"fewer); fp32 {100 * s['fp32_test_accuracy']:.2f}%; max diff "
          f"{s['max_diff_points']:+.2f} pt; all pass: {s['all_pass']}")


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    pts = res["grid"]["points"]
    ax.scatter([p["bytes"] for p in pts], [100 * p["test"] for p in pts], s=8, c="0.65",
               label=f"grid: {len(pts)} combinations (test accuracy)")
    pts = sorted(pts, key=lambda p: p["bytes"])
    env, best = [], -1.0
    for p in pts:
        best = max(best, p["test"])
        env.append((p["bytes"], 100 * best))
    ax.step(*zip(*env), where="post", color="0.3", lw=1, label="grid best within size")
    for i, r in enumerate(res["budgets_results"]):
        ax.axvline(r["budget_bytes"], color="tab:blue", ls=":", lw=0.8,
                   label="size budgets" if i == 0 else None)
        ax.scatter([r["planner"]["bytes"]], [100 * r["planner"]["test_accuracy"]], marker="*",
                   s=150, color="tab:red", edgecolor="k", lw=0.5, zorder=5,
                   label="planner (real .cz, test accuracy)" if i == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("file bytes")
    ax.set_ylabel("test accuracy (%)")
    lo = min(100 * r["planner"]["test_accuracy"] for r in res["budgets_results"])
    ax.set_ylim(lo - 4, 100 * res["summary"]["fp32_test_accuracy"] + 0.6)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"LeNet-5 / Fashion-MNIST: planner vs exhaustive grid "
                 f"({res['grid_points']} points)", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="81-point space, small sets")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    ap.add_argument("--calib", type=int, default=2000, help="calibration images")
    ap.add_argument("--budgets", type=int, nargs="*", help="size budgets in bytes")
    ap.add_argument("--joint-evals", type=int, default=3)
    ap.add_argument("--refine", type=int, default=1, help="re-profiling rounds per budget")
    ap.add_argument("--out", default=None, help="JSON output")
    ap.add_argument("--plot", default=None, help="PNG output ('' to skip)")
    args = ap.parse_args(argv)
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   "plan_lenet5_quick.json" if args.quick else
                                   "plan_lenet5.json")
    res = run(args)
    print_table(res)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    png = args.plot if args.plot is not None else (
        "" if args.quick else os.path.join(ROOT, "docs", "results", "plan", "lenet5_pareto.png"))
    if png:
        plot(res, png)
    log(f"wrote {out}" + (f" and {png}" if png else ""))
    # the targets (0.2 points, 10x fewer evaluations) are for the full run
    return 0 if args.quick or res["summary"]["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
