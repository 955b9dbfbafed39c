"""ONNX backend node tests against czmodel: convert every generated case whose ops the
converter accepts, run it on each backend and compare with the expected outputs.

The onnx package ships the generators, not the data: ``collect_testcases()`` regenerates every
case (model, inputs, expected outputs). Statuses per case and backend:

* ``pass``: every output matches (float: rtol 1e-4, atol 1e-5; f16 outputs: f16 precision,
  rtol/atol 1e-3; integers and bools: exact; same dtype and shape);
* ``unsupported``: the converter, the loader or a run raised ``UnsupportedError`` (an op set 1
  "not supported" attribute value or rank, by design); the reason is kept;
* ``fail``: anything else (wrong values, another error).

Used by ``tests/test_onnx_node_suite.py`` and ``bench/onnx_node_suite.py``.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from czmodel.errors import UnsupportedError

RTOL, ATOL = 1e-4, 1e-5
RTOL_F16, ATOL_F16 = 1e-3, 1e-3


#: cases whose expected data op set 1 deliberately does not reproduce (checked by name;
#: the case still counts as a pass when it passes)
KNOWN_DEVIATIONS: dict[str, str] = {
    "test_reduce_max_empty_set": "spec/ops.md ReduceMax: an empty reduced axis is a "
                                 "RuntimeInputError (ONNX: -inf)",
    "test_resize_downsample_scales_linear_align_corners":
        "spec/ops.md Resize: align_corners uses the integer output size (out = floor(in*scale))"
        " like ONNX Runtime; the onnx generator uses in*scale = 2.4",
}
#: cases whose expected outputs are printed with 4 decimals in the onnx generator: compared
#: at onnx's own default tolerance (rtol 1e-3) instead of 1e-4
ROUNDED_EXPECTED = {"test_averagepool_2d_ceil_last_window_starts_on_pad": 1e-3}


@dataclass
class CaseResult:
    name: str
    ops: list[str]
    status: dict[str, str] = field(default_factory=dict)     # backend -> pass/fail/unsupported
    reason: dict[str, str] = field(default_factory=dict)     # backend -> first error line


def available_backends() -> list[str]:
    """"reference" always; "numba" and "c" when ``czmodel.runtime.model`` can load them."""
    from czmodel.runtime.model import backend_class

    out = ["reference"]
    for name in ("numba", "c"):
        try:
            cls = backend_class(name)
        except (ValueError, ImportError):
            continue
        if getattr(cls, "available", lambda: True)():
            out.append(name)
    return out


def collect_cases() -> list[Any]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return list(collect_testcases())


def case_ops(case: Any) -> list[str]:
    return sorted({n.op_type for n in case.model.graph.node})


def selected(cases: Iterable[Any]) -> list[Any]:
    """Cases whose ops are all accepted by the converter (default ONNX domain)."""
    from czconvert.onnx_import import SUPPORTED_OPS

    ok = set(SUPPORTED_OPS)
    out = []
    for c in cases:
        nodes = c.model.graph.node
        if nodes and all(n.domain in ("", "ai.onnx") and n.op_type in ok for n in nodes):
            out.append(c)
    return out


def _first_line(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}"
    return s.splitlines()[0][:300] if s else type(e).__name__


def compare(got: np.ndarray, want: np.ndarray, rtol: float | None = None) -> str | None:
    """None when equal within tolerance, else why not."""
    want = np.asarray(want)
    if not isinstance(got, np.ndarray):
        return f"output is {type(got).__name__}, not an array"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} != expected {want.dtype}"
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != expected {list(want.shape)}"
    if want.dtype.kind == "f":
        rt, atol = (RTOL_F16, ATOL_F16) if want.dtype == np.float16 else (RTOL, ATOL)
        rtol = max(rt, rtol or 0.0)
        g, w = got.astype(np.float64), want.astype(np.float64)
        if not np.array_equal(np.isnan(g), np.isnan(w)):
            return "NaN positions differ"
        fin = ~np.isnan(w)
        if not np.array_equal(g[fin & np.isinf(w)], w[fin & np.isinf(w)]):
            return "inf values differ"
        ok = np.isclose(g, w, rtol=rtol, atol=atol) | np.isnan(w) | (g == w)
        if not ok.all():
            err = np.abs(g - w)[~ok]
            return (f"{int((~ok).sum())} of {w.size} values differ (max abs err "
                    f"{float(err.max()):.3g})")
        return None
    if not np.array_equal(got, want):
        return f"{int((got != want).sum())} of {want.size} values differ"
    return None


def run_case(case: Any, backends: list[str], tmpdir: str) -> CaseResult:
    """Convert one case (no compression) and run every data set on every backend."""
    import czmodel.runtime as rt
    from czconvert.onnx_import import onnx_to_cz

    res = CaseResult(case.name, case_ops(case))
    path = os.path.join(tmpdir, f"{case.name}.cz")
    try:
        with np.errstate(all="ignore"):
            onnx_to_cz(case.model, path)
    except UnsupportedError as e:
        for b in backends:
            res.status[b], res.reason[b] = "unsupported", _first_line(e)
        return res
    except Exception as e:  # noqa: BLE001 - any other converter fault is a failure
        for b in backends:
            res.status[b], res.reason[b] = "fail", "convert: " + _first_line(e)
        return res
    for b in backends:
        try:
            with rt.load(path, backend=b) as m, np.errstate(all="ignore"):
                names = [v.name for v in m.inputs]
                for inputs, outputs in case.data_sets:
                    feeds = _feeds(case, names, inputs)
                    got = m.run(feeds)
                    got_list = [got[v.name] for v in m.outputs]
                    if len(got_list) != len(outputs):
                        raise AssertionError(f"{len(got_list)} outputs, expected "
                                             f"{len(outputs)}")
                    for k, (g, w) in enumerate(zip(got_list, outputs)):
                        why = compare(g, _array(w), ROUNDED_EXPECTED.get(case.name))
                        if why:
                            raise AssertionError(f"output {k} ({m.outputs[k].name}): {why}")
            res.status[b] = "pass"
        except UnsupportedError as e:
            res.status[b], res.reason[b] = "unsupported", _first_line(e)
        except Exception as e:  # noqa: BLE001
            if case.name in KNOWN_DEVIATIONS:
                res.status[b] = "unsupported"
                res.reason[b] = f"by design: {KNOWN_DEVIATIONS[case.name]} ({_first_line(e)})"
            else:
                res.status[b], res.reason[b] = "fail", _first_line(e)
    try:
        os.remove(path)
    except OSError:
        pass
    return res


def _array(x: Any) -> Any:
    import onnx
    from onnx import numpy_helper

    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    return x


def _feeds(case: Any, names: list[str], inputs: list) -> dict[str, np.ndarray]:
    inits = {t.name for t in case.model.graph.initializer}
    onnx_names = [v.name for v in case.model.graph.input if v.name not in inits]
    feeds = {}
    for n, x in zip(onnx_names, inputs):
        if n in names:
            feeds[n] = np.asarray(_array(x))
    return feeds


def run_suite(backends: list[str] | None = None, cases: list[Any] | None = None
              ) -> dict[str, Any]:
    """Run the selected node cases; returns a JSON-able summary (``cases`` and ``per_op``)."""
    backends = backends or available_backends()
    t0 = time.perf_counter()
    all_cases = cases if cases is not None else collect_cases()
    sel = selected(all_cases)
    results: list[CaseResult] = []
    with tempfile.TemporaryDirectory(prefix="cz-node-suite-") as tmp:
        for c in sel:
            results.append(run_case(c, backends, tmp))
    per_op: dict[str, dict[str, dict[str, int]]] = {}
    for r in results:
        for op in r.ops:
            for b in backends:
                d = per_op.setdefault(op, {}).setdefault(
                    b, {"passed": 0, "failed": 0, "unsupported": 0})
                d[{"pass": "passed", "fail": "failed"}.get(r.status[b], "unsupported")] += 1
    totals = {b: {s: sum(1 for r in results if r.status[b] == s)
                  for s in ("pass", "fail", "unsupported")} for b in backends}
    return {"backends": backends, "cases_total": len(all_cases), "cases_selected": len(sel),
            "totals": totals, "seconds": round(time.perf_counter() - t0, 1),
            "tolerance": {"rtol": RTOL, "atol": ATOL, "f16": [RTOL_F16, ATOL_F16]},
            "per_op": dict(sorted(per_op.items())),
            "cases": [asdict(r) for r in results]}


def table(summary: dict[str, Any]) -> str:
    """Per-op pass table: passed / failed / unsupported per backend."""
    bs = summary["backends"]
    head = f"{'op':<24}" + "".join(f"{b + ' p/f/u':>22}" for b in bs)
    lines = [head, "-" * len(head)]

    def cell(p: int, f: int, u: int) -> str:
        return f"{f'{p}/{f}/{u}':>22}"

    for op, d in summary["per_op"].items():
        cells = "".join(cell(d[b]["passed"], d[b]["failed"], d[b]["unsupported"]) for b in bs)
        lines.append(f"{op:<24}{cells}")
    tot = summary["totals"]
    lines.append("-" * len(head))
    lines.append(f"{'cases':<24}" + "".join(
        cell(tot[b]["pass"], tot[b]["fail"], tot[b]["unsupported"]) for b in bs))
    return "\n".join(lines)


def failures(summary: dict[str, Any], status: str = "fail") -> list[tuple[str, str, str]]:
    return [(c["name"], b, c["reason"].get(b, "")) for c in summary["cases"]
            for b in summary["backends"] if c["status"][b] == status]
