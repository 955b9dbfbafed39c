"""Kernel benchmark: Y = X @ W^T from compressed kernel forms (Numba backend) vs peers.

Ours: relidx + 5-bit codebook at 10% density (``RelidxForm``), int8 per-channel weights with
dynamic per-row activation quantization (``AffineForm``), both built from a real .cz file.
Peers, same process, same run, interleaved: numpy dense fp32 (OpenBLAS), scipy.sparse CSR
(10%), torch CSR (10%, if torch imports), ONNX Runtime MatMul fp32 and dynamic int8
(DynamicQuantizeLinear -> MatMulInteger -> rescale, what ``quantize_dynamic`` emits; if
onnxruntime imports). Conv: ours fp32 (dense form: im2col + BLAS; depthwise: direct kernel)
and int8 vs ORT Conv fp32.

Protocol (shared/benchmarking.md): one thread everywhere (threadpoolctl, numba, torch, ORT
intra_op_num_threads=1); warm-up >= 3 calls and 50 ms; each sample times back-to-back calls
lasting >= 200 us; samples interleaved A B A B; median per call with min/max; every
output is checked against dense float64 math inside the run (int8 paths: relative error).

Run:  python bench/kernels.py [--rounds 15] [--quick]
If OPENBLAS_CORETYPE or OPENBLAS_L2_SIZE are set in your environment, unset them for this
command only:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/kernels.py
(the JSON records which BLAS kernel threadpoolctl reports). Writes bench/results/kernels.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import czmodel  # noqa: E402
from czmodel import encode as E  # noqa: E402
from czmodel.runtime import forms as F  # noqa: E402
from czmodel.runtime import numba_kernels as K  # noqa: E402

try:
    import warnings

    import torch
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
except ImportError:  # pragma: no cover
    torch = None
try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover
    ort = None

SHAPES = [(300, 784), (100, 300), (1536, 384), (384, 1536), (4096, 4096)]
BATCHES = [1, 32]
RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- timing


def _calls_for(f, min_s=200e-6) -> int:
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            f()
        if time.perf_counter() - t >= min_s:
            return n
        n *= 2


def bench(methods: dict, rounds: int) -> dict:
    for f in methods.values():                       # warm-up: >= 3 calls and >= 50 ms
        t = time.perf_counter()
        k = 0
        while k < 3 or time.perf_counter() - t < 0.05:
            f()
            k += 1
    calls = {k: _calls_for(f) for k, f in methods.items()}
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(rounds):
        for k, f in methods.items():                 # interleaved
            n = calls[k]
            t = time.perf_counter()
            for _ in range(n):
                f()
            times[k].append((time.perf_counter() - t) / n * 1e6)
    return {k: {"median_us": float(np.median(v)), "min_us": float(min(v)),
                "max_us": float(max(v)), "calls_per_sample": calls[k]} for k, v in times.items()}


# ----------------------------------------------------------------------------- weights


def build_forms(w: np.ndarray, tmp: Path):
    """relidx + 5-bit codebook at 10% and int8 per-channel, written and read back."""
    m = np.abs(w) >= np.quantile(np.abs(w), 0.9)
    vals = w[m]
    cent = np.quantile(vals, np.linspace(0, 1, 32)).astype(np.float32)
    idx = np.abs(vals[:, None] - cent[None, :]).argmin(axis=1)
    s = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    q = np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int64)
    p = tmp / "w.cz"
    czmodel.write(p, {"sparse": E.relidx(m, E.codebook(idx, cent, bits=5), gap_bits=5)
                      .set_entropy("huffman"),
                      "int8": E.affine(q, s, bits=8, axis=0)})
    f = czmodel.open(p)
    rel, aff = F.build_form(f, "sparse"), F.build_form(f, "int8")
    return rel, np.asarray(f["sparse"], np.float32), aff, np.asarray(f["int8"], np.float32), q, s


def ort_session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def ort_matmul(w: np.ndarray):
    rows, cols = w.shape
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wt"], ["y"])], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", rows])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt")])
    return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def ort_dyn_int8(q: np.ndarray, s: np.ndarray):
    rows, cols = q.shape
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
             helper.make_node("MatMulInteger", ["xq", "wq", "xz"], ["acc"]),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["xs", "ws"], ["sc"]),
             helper.make_node("Mul", ["accf", "sc"], ["y"])]
    g = helper.make_graph(
        nodes, "dq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", cols])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", rows])],
        [numpy_helper.from_array(np.ascontiguousarray(q.T.astype(np.int8)), "wq"),
         numpy_helper.from_array(s.astype(np.float32), "ws")])
    return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def ort_conv(w: np.ndarray, strides, pads, group):
    o = w.shape[0]
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], strides=list(strides), pads=list(pads),
                          group=group)], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")])
    del o
    return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def rel_err(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-30))


# ----------------------------------------------------------------------------- cases


def gemm_case(rows, cols, batch, rounds, tmp):
    w = (RNG.laplace(size=(rows, cols)) * 0.05).astype(np.float32)
    rel, w_sparse, aff, w_int8, q, s = build_forms(w, tmp)
    x = RNG.standard_normal((batch, cols)).astype(np.float32)
    xt = np.ascontiguousarray(x.T)
    csr = sp.csr_matrix(w_sparse)
    m = {"ours relidx+cb5": lambda: K.matmul(rel, x),
         "ours int8": lambda: K.matmul(aff, x),
         "numpy dense": lambda: np.dot(x, w.T),
         "scipy CSR": lambda: csr @ xt}
    checks = {"ours relidx+cb5": (w_sparse, 1e-5), "ours int8": (w_int8, 5e-2),
              "numpy dense": (w, 1e-5), "scipy CSR": (w_sparse, 1e-5)}
    outs = {"scipy CSR": lambda: (csr @ xt).T}
    if torch is not None:
        tcsr = torch.from_numpy(w_sparse).to_sparse_csr()
        txt = torch.from_numpy(xt)
        m["torch CSR"] = lambda: tcsr @ txt
        outs["torch CSR"] = lambda: (tcsr @ txt).numpy().T
        checks["torch CSR"] = (w_sparse, 1e-5)
    if ort is not None:
        s_mm, s_q = ort_matmul(w), ort_dyn_int8(q, s)
        feed = {"x": x}
        m["ORT MatMul fp32"] = lambda: s_mm.run(None, feed)
        m["ORT MatMulInteger"] = lambda: s_q.run(None, feed)
        outs["ORT MatMul fp32"] = lambda: s_mm.run(None, feed)[0]
        outs["ORT MatMulInteger"] = lambda: s_q.run(None, feed)[0]
        checks["ORT MatMul fp32"] = (w, 1e-5)
        checks["ORT MatMulInteger"] = (w_int8, 5e-2)
    errs = {}
    for k, (wref, tol) in checks.items():
        y = (outs.get(k) or m[k])()
        ref = x.astype(np.float64) @ wref.T.astype(np.float64)
        errs[k] = rel_err(y, ref)
        assert errs[k] < tol, (k, rows, cols, batch, errs[k])
    t = bench(m, rounds)
    return {"case": f"{rows}x{cols} b{batch}", "rows": rows, "cols": cols, "batch": batch,
            "resident_bytes": {"relidx+cb5": rel.resident_bytes, "int8": aff.resident_bytes,
                               "dense_fp32": w.nbytes},
            "rel_err": errs, "times": t}


CONVS = [("LeNet-5 conv2 20->50 5x5 12x12", (1, 20, 12, 12), (50, 20, 5, 5), 1, (0, 0, 0, 0)),
         ("64->64 3x3 56x56", (1, 64, 56, 56), (64, 64, 3, 3), 1, (1, 1, 1, 1)),
         ("depthwise 3x3 96ch 56x56", (1, 96, 56, 56), (96, 1, 3, 3), 96, (1, 1, 1, 1))]


def conv_case(name, xs, ws, group, pads, rounds, tmp):
    w = (RNG.standard_normal(ws) * 0.1).astype(np.float32)
    x = RNG.standard_normal(xs).astype(np.float32)
    w2 = w.reshape(ws[0], -1)
    s = (np.abs(w2).max(axis=1) / 127).astype(np.float32)
    q = np.clip(np.rint(w2 / s[:, None]), -127, 127).astype(np.int64).reshape(ws)
    p = tmp / "c.cz"
    czmodel.write(p, {"int8": E.affine(q, s, bits=8, axis=0)})
    f = czmodel.open(p)
    aff = F.build_form(f, "int8", conv_groups=group)
    dense = F.DenseForm(w2)
    kh, kw = ws[2:]
    args = ((kh, kw), (1, 1), pads, (1, 1), group)
    m = {"ours fp32": lambda: K.conv2d(dense, x, None, *args),
         "ours int8": lambda: K.conv2d(aff, x, None, *args)}
    from czmodel.runtime.numba_kernels.conv import conv2d_reference
    ref = conv2d_reference(w, x, None, (1, 1), pads, (1, 1), group).astype(np.float64)
    errs = {"ours fp32": rel_err(m["ours fp32"](), ref),
            "ours int8": rel_err(m["ours int8"](), ref)}
    if ort is not None:
        sess = ort_conv(w, (1, 1), pads, group)
        m["ORT Conv fp32"] = lambda: sess.run(None, {"x": x})
        errs["ORT Conv fp32"] = rel_err(sess.run(None, {"x": x})[0], ref)
    assert errs["ours fp32"] < 1e-5 and errs["ours int8"] < 2e-2, errs
    return {"case": name, "rel_err": errs, "times": bench(m, rounds)}


# ----------------------------------------------------------------------------- report


def ratio(t, a, b):
    if a in t and b in t:
        return t[a]["median_us"] / t[b]["median_us"]
    return None


def fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"


def machine() -> dict:
    model = platform.processor()
    flags = []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split()
                         if f.startswith(("avx", "sse4", "fma", "f16c", "amx", "vnni"))]
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": flags, "cores": os.cpu_count(),
            "platform": platform.platform(),
            "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
            "blas": [{k: i.get(k) for k in ("internal_api", "version", "architecture",
                                            "num_threads")} for i in threadpool_info()]}


def versions() -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__,
         "numba": numba.__version__, "scipy": scipy.__version__}
    if torch is not None:
        v["torch"] = torch.__version__
    if ort is not None:
        v["onnxruntime"] = ort.__version__
        v["onnx"] = onnx.__version__
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="skip 4096x4096")
    args = ap.parse_args()
    numba.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    res = {"machine": machine(), "versions": versions(), "threads": 1, "gemm": [], "conv": []}
    with threadpool_limits(1), tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for rows, cols in SHAPES:
            if args.quick and rows == 4096:
                continue
            for b in BATCHES:
                r = gemm_case(rows, cols, b, args.rounds, tmp)
                t = r["times"]
                r["ratios"] = {"relidx/numpy_dense": ratio(t, "ours relidx+cb5", "numpy dense"),
                               "relidx/scipy_csr": ratio(t, "ours relidx+cb5", "scipy CSR"),
                               "relidx/torch_csr": ratio(t, "ours relidx+cb5", "torch CSR"),
                               "int8/numpy_dense": ratio(t, "ours int8", "numpy dense"),
                               "int8/ort_matmulinteger": ratio(t, "ours int8",
                                                               "ORT MatMulInteger")}
                res["gemm"].append(r)
                print(f"done {r['case']}", file=sys.stderr, flush=True)
        for name, xs, ws, group, pads in CONVS:
            r = conv_case(name, xs, ws, group, pads, args.rounds, tmp)
            r["ratios"] = {"fp32/ort": ratio(r["times"], "ours fp32", "ORT Conv fp32"),
                           "int8/ort_fp32": ratio(r["times"], "ours int8", "ORT Conv fp32")}
            res["conv"].append(r)
    cols = ["ours relidx+cb5", "ours int8", "numpy dense", "scipy CSR", "torch CSR",
            "ORT MatMul fp32", "ORT MatMulInteger"]
    print("\nY = X W^T, single thread, median us per call [min-max]; ratios of medians")
    print("| case | " + " | ".join(cols) + " | rel/dense | rel/torchCSR | int8/ORT-int8 |")
    print("|" + "---|" * (len(cols) + 4))
    for r in res["gemm"]:
        t = r["times"]
        cells = [f"{t[c]['median_us']:.1f} [{t[c]['min_us']:.0f}-{t[c]['max_us']:.0f}]"
                 if c in t else "-" for c in cols]
        q = r["ratios"]
        print(f"| {r['case']} | " + " | ".join(cells) +
              f" | {fmt(q['relidx/numpy_dense'])} | {fmt(q['relidx/torch_csr'])} | "
              f"{fmt(q['int8/ort_matmulinteger'])} |")
    print("\nConv, single thread, median us [min-max]")
    print("| case | ours fp32 | ours int8 | ORT Conv fp32 | fp32/ORT | int8/ORT fp32 |")
    print("|---|---|---|---|---|---|")
    for r in res["conv"]:
        t = r["times"]
        cells = [f"{t[c]['median_us']:.1f} [{t[c]['min_us']:.0f}-{t[c]['max_us']:.0f}]"
                 if c in t else "-" for c in ("ours fp32", "ours int8", "ORT Conv fp32")]
        print(f"| {r['case']} | " + " | ".join(cells) +
              f" | {fmt(r['ratios']['fp32/ort'])} | {fmt(r['ratios']['int8/ort_fp32'])} |")
    out = Path(__file__).resolve().parent / "results" / "kernels.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
