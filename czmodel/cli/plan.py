"""``cz plan``: choose per-layer compression settings for a budget and write the config.

Wire it into ``czmodel/cli/main.py`` with ``add_parser(sub)`` on the subparsers object; the
subparser's ``func`` (``cmd_plan``) returns the exit code and raises ``czmodel.errors``
classes for bad input (the main CLI prints them as one line, exit code 1). ``main(argv)``
runs it standalone with the same error handling.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

import numpy as np

from czmodel.errors import EncodeError

EXIT_OK = 0

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}

EPILOG = """\
examples:
  cz plan lenet5.onnx --data calib.npz --budget-size 100kB -o plan.json --plot pareto.png
  cz plan lenet5.onnx --data calib.npz --budget-ratio 40 -o plan.json
  cz plan lenet5.onnx --data calib.npz --min-accuracy 0.89 -o plan.json --json
  cz plan minilm.onnx --data sentences.npz --min-cosine 0.99 --pool mean \\
      --mask attention_mask --executor dask --dask-address tcp://10.0.0.5:8786 -o plan.json
  cz compress lenet5.onnx --config plan.json -o lenet5.cz      # apply the plan

DATA.npz holds the model inputs (one array named "x" for a single-input model, else arrays
named as the graph inputs), samples along axis 0, and "y" (integer labels) when labelled.
Sizes: 100000, 100kB, 1.5MB, 512KiB, 1MiB (kB = 1000 bytes, KiB = 1024).
Candidates (--candidates, or per layer with --layer GLOB=LABELS): fp32, int8, int4, kB
(B-bit k-means), pS (S% pruned), rF (SVD rank F x min dim), e.g. p90-k4, r0.25-int8."""


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise EncodeError(f"size {text!r}: write bytes, or a number with kB, MB, GB, KiB, "
                          "MiB or GiB")
    n = int(round(float(m.group(1)) * _UNITS[unit]))
    if n <= 0:
        raise EncodeError(f"size {text!r} must be positive")
    return n


def load_data(path: str, input_names: list[str], samples: int | None = None
              ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """(feeds, labels or None) from a .npz (see the epilog)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise EncodeError(f"{path}: not a readable .npz of arrays: {e}") from None
    labels = arrays.pop("y", None)
    if labels is None:
        labels = arrays.pop("labels", None)
    if len(input_names) == 1 and input_names[0] not in arrays and "x" in arrays:
        arrays[input_names[0]] = arrays.pop("x")
    missing = [n for n in input_names if n not in arrays]
    if missing:
        raise EncodeError(f"{path}: no array for the model inputs {missing} (it has "
                          f"{sorted(arrays)}; use 'x' for a single-input model and 'y' for "
                          "labels)")
    feeds = {n: arrays[n] for n in input_names}
    if samples is not None:
        feeds = {k: v[:samples] for k, v in feeds.items()}
        labels = None if labels is None else labels[:samples]
    return feeds, labels


def _overrides(items: list[str] | None) -> dict[str, list[str]]:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise EncodeError(f"--layer {it!r}: write GLOB=LABEL,LABEL,... (e.g. "
                              "'fc1.*=fp32,int8,p90-k4' or 'Conv=int8,k5')")
        pat, labs = it.split("=", 1)
        out[pat.strip()] = [s for s in (x.strip() for x in labs.split(",")) if s]
    return out


def cmd_plan(args: argparse.Namespace) -> int:
    import czmodel.plan as P
    from czmodel.cli.table import human_bytes, render

    model = P.PlanModel.load(args.model)
    feeds, labels = load_data(args.data, [v.name for v in model.graph.inputs], args.samples)
    metric_kind = args.metric
    if args.min_accuracy is not None:
        if labels is None:
            raise EncodeError("--min-accuracy needs labels: an array 'y' in the data file")
        metric_kind = metric_kind or "accuracy"
        if metric_kind != "accuracy":
            raise EncodeError("--min-accuracy goes with --metric accuracy")
    if args.min_cosine is not None:
        metric_kind = metric_kind or "cosine"
        if metric_kind != "cosine":
            raise EncodeError("--min-cosine goes with --metric cosine")
    metric = P.make_metric(metric_kind, labels, len(model.graph.outputs[0].shape),
                           pool=args.pool, mask=args.mask)
    space = P.Space.default(model, args.candidates, _overrides(args.layer))
    table = P.SensitivityTable.load(args.table) if args.table else None
    executor = P.make_executor(args.executor, args.workers, args.dask_address)
    try:
        res = P.plan(model, feeds, labels, metric=metric, space=space, table=table,
                     budget_bytes=parse_size(args.budget_size) if args.budget_size else None,
                     budget_ratio=args.budget_ratio, budget_latency_ms=args.budget_latency,
                     min_score=args.min_accuracy if args.min_accuracy is not None
                     else args.min_cosine, executor=executor, method=args.method,
                     refine=args.refine, joint_evals=args.joint_evals, backend=args.backend,
                     batch=args.batch)
    finally:
        executor.close()
    res.save_config(args.output)
    if args.table_out:
        res.table.save(args.table_out)
    if args.plot:
        res.plot(args.plot, title=f"cz plan {model.name}: {metric.name} vs size")
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=_plain))
        return EXIT_OK
    t = res.table
    acc = metric.name == "accuracy"
    fmt = (lambda v: f"{100 * v:.2f}%") if acc else (lambda v: f"{v:.5f}")
    rows = [[k, res.solution.labels[k], f"{t.bytes[k][j]:,}",
             f"{100 * t.loss(k)[j]:+.2f} pt" if acc else f"{t.loss(k)[j]:+.5f}"]
            for k, j in res.solution.choice.items()]
    print(render(["layer", "setting", "bytes", f"{metric.name} loss alone"], rows, "llrr"))
    m = res.measured
    print(f"\nplan: {human_bytes(m['measured_bytes'])} file ({m['ratio']:.1f}x smaller than "
          f"{human_bytes(t.fp32_bytes)} fp32); {metric.name} {fmt(m['measured_score'])} on "
          f"the real .cz ({m['backend']}), predicted {fmt(res.solution.predicted_score)}; "
          f"fp32 {fmt(res.base['score'])} ({t.samples} samples)")
    if not res.feasible:
        print(f"warning: no evaluated plan met {res.constraint}; wrote the closest",
              file=sys.stderr)
    ev = res.evaluations
    print(f"evaluations: {ev['profile']} profile + {ev['refine']} refine + {ev['joint']} joint "
          f"= {ev['total']} "
          f"(grid: {space.grid_size():,} combinations); {res.seconds:.1f} s, "
          f"{t.executor} x{t.workers}")
    print(f"wrote {args.output}" + (f" and {args.plot}" if args.plot else "") +
          f"; apply it with: cz compress {args.model} --config {args.output} -o OUT.cz")
    return EXIT_OK


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``plan`` on an argparse subparsers object."""
    s = sub.add_parser("plan", help="choose per-layer sparsity / bits / ranks for a size, "
                       "latency or fidelity budget and write the compression config",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help=".onnx model (or .cz with a graph)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--budget-size", metavar="SIZE", help="largest file size, e.g. 1MB")
    g.add_argument("--budget-ratio", type=float, metavar="R",
                   help="at least R x smaller than fp32")
    g.add_argument("--budget-latency", type=float, metavar="MS",
                   help="sum of the planned layers' latencies (batch 1, ms)")
    g.add_argument("--min-accuracy", type=float, metavar="A",
                   help="accuracy floor (0-1) on the labelled data: the smallest plan")
    g.add_argument("--min-cosine", type=float, metavar="C",
                   help="output cosine floor vs fp32 (0-1): the smallest plan")
    s.add_argument("--data", required=True, metavar="DATA.npz",
                   help="calibration inputs (x, or arrays named as the graph inputs) and y "
                   "when labelled")
    s.add_argument("--samples", type=int, help="use the first N samples")
    s.add_argument("--metric", choices=("accuracy", "kl", "cosine"),
                   help="fidelity (default: accuracy with labels, else KL of 2-D logits, "
                   "else cosine)")
    s.add_argument("--pool", choices=("mean",), help="cosine: mean-pool axis 1 first")
    s.add_argument("--mask", metavar="INPUT", help="cosine pooling weights (e.g. "
                   "attention_mask)")
    s.add_argument("--candidates", default="default", choices=("default", "small"),
                   help="candidate catalogue per op type")
    s.add_argument("--layer", action="append", metavar="GLOB=LABELS",
                   help="candidates for matching layers (or an op type), repeatable")
    s.add_argument("--executor", default="process", choices=("process", "serial", "dask"))
    s.add_argument("--dask-address", metavar="ADDR", help="dask scheduler (default: a local "
                   "cluster)")
    s.add_argument("--workers", type=int, help="worker processes (default: cores)")
    s.add_argument("--method", default="dp", choices=("dp", "lagrangian"),
                   help="exact Pareto DP or Lagrangian relaxation")
    s.add_argument("--refine", type=int, default=1, metavar="N",
                   help="rounds of re-profiling around the plan (layer interactions; each "
                   "costs one evaluation per candidate)")
    s.add_argument("--joint-evals", type=int, default=3, metavar="N",
                   help="real evaluations of the chosen plan and its neighbours")
    s.add_argument("--backend", default="auto", choices=("auto", "c", "numba", "reference"),
                   help="runtime for the joint evaluation")
    s.add_argument("--batch", type=int, default=1024, help="samples per run")
    s.add_argument("--table", metavar="T.json", help="reuse a saved sensitivity table")
    s.add_argument("--table-out", metavar="T.json", help="save the sensitivity table")
    s.add_argument("-o", "--output", required=True, help="config to write (.json/.yaml)")
    s.add_argument("--plot", metavar="PNG", help="write the Pareto plot")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_plan)
    return s


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: the ``cz`` command itself (same parsing and error handling)."""
    from czmodel.cli.main import main as cz_main

    return cz_main(argv)


if __name__ == "__main__":
    sys.exit(main())
