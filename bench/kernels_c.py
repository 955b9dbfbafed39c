"""C kernel benchmark against peers, interleaved in one process, single-threaded.

Builds runtime_c/build/libczbench.so (runtime_c/bench/bench_kernels.c + the kernels, with
-DCZB_LIB) and loads it through cffi ABI mode. For every case each method runs one timed
batch (repeat the call for >= 200 us) per round, methods interleaved round by round, after
a warmup; the reported time is the median over rounds ("ratios"); the same ratios from the
per-method minima ("ratios_of_min") and the min/max spread are recorded too, because the
machine is shared and medians of multi-ms cells swing with the neighbours' load. Peers: numpy
dense fp32 (threadpool limited to 1), scipy.sparse CSR, torch CSR (MKL sparse, one thread,
if torch imports), ONNX Runtime MatMul / Conv, and for
int8 both the bare MatMulInteger (uint8 input handed over, int32 out) and the fair peer
"ort_dq_mmi" = DynamicQuantizeLinear + MatMulInteger + Cast + 2 Mul, i.e. the same work as
our int8 linear (quantize the activations, integer GEMM, rescale). Note: ORT's AVX2 u8s8
MatMulInteger saturates (vpmaddubsw) with full-range int8 weights, so its output is off by
~20% here (recorded as int8_rel_err); ours is exact. RELIDX runs from the u16 column cache
with the gap stream released (val_ptr + col16 + values: what the format layer builds at open)
and from the gap stream alone ("cz_relidx_walk", the CZ_RELIDX_COLS=0 lean mode). int8 runs with
the weights packed once (czk_affine_prepare, what the graph does at load for Linear / Gemm
weights) and, as "cz_int8_repack", repacking them on every call (batch >= 4). Conv cases run
dense fp32, int8 per-row AFFINE and (group 1) a 65%-pruned 8-bit k-means RELIDX form like
LeNet-5's conv weights ("cz_conv_relidx", checked against ORT on its densified weights; its
ratio to ORT's dense Conv is informational). Our outputs are checked against numpy in the same run. Writes
bench/results/kernels_c.json (partial runs with --only / --quick write nothing).

    python bench/kernels_c.py [--rounds 11] [--quick] [--only linear|conv]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import scipy.sparse as sp
from cffi import FFI
from threadpoolctl import threadpool_limits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RT = os.path.join(ROOT, "runtime_c")
LIB = os.path.join(RT, "build", "libczbench.so")
MIN_S = 200e-6

CDEF = """
typedef struct cz_form cz_form;
cz_form *czb_form_dense(int64_t rows, int64_t cols, const float *w);
cz_form *czb_form_relidx(int64_t rows, int64_t cols, const int16_t *idx, const float *lut, int k, int gap_bits);
cz_form *czb_form_affine_rows(int64_t rows, int64_t cols, const int8_t *q, const float *scale);
void czb_form_set_shape4(cz_form *f, int64_t a, int64_t b, int64_t c, int64_t d);
int czb_linear(const cz_form *f, int64_t batch, const float *x, float *y, int threads);
double czb_time_linear(const cz_form *f, int64_t batch, const float *x, float *y, int threads, double min_s);
int czb_conv(const cz_form *f, const int64_t *pv, const float *x, const float *bias, float *y, int threads);
double czb_time_conv(const cz_form *f, const int64_t *pv, const float *x, const float *bias, float *y, int threads, double min_s);
int czb_features(void);
int czb_relidx_prepare(cz_form *f, int drop_gaps);
int czb_affine_prepare(cz_form *f);
"""


def build():
    src = [os.path.join(RT, "bench", "bench_kernels.c")]
    kdir = os.path.join(RT, "src", "kernels")
    src += sorted(os.path.join(kdir, f) for f in os.listdir(kdir) if f.endswith(".c"))
    src += [os.path.join(RT, "src", "alloc.c"), os.path.join(RT, "src", "status.c")]
    os.makedirs(os.path.dirname(LIB), exist_ok=True)
    cmd = ["gcc", "-O2", "-fopenmp", "-shared", "-fPIC", "-DCZB_LIB", "-I" + os.path.join(RT, "include"),
           "-o", LIB] + src + ["-lm"]
    subprocess.run(cmd, check=True)


def timed_batch(fn):
    n = 0
    t0 = time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= MIN_S:
            return t / n


def run_interleaved(methods: dict, rounds: int) -> dict:
    for f in methods.values():      # warmup
        for _ in range(2):
            timed_batch(f)
    times = {k: [] for k in methods}
    for _ in range(rounds):
        for k, f in methods.items():
            times[k].append(timed_batch(f))
    global LAST_MIN, LAST_SPREAD
    LAST_MIN = {k: min(v) for k, v in times.items()}
    LAST_SPREAD = {k: (min(v) * 1e6, max(v) * 1e6) for k, v in times.items()}
    return {k: statistics.median(v) for k, v in times.items()}


LAST_MIN: dict = {}
LAST_SPREAD: dict = {}


def min_ratios(ratios: dict) -> dict:
    """The same ratios computed from the per-method MINIMUM over rounds (the machine is shared:
    medians of multi-ms cells swing by 2x with the neighbours' load; minima are far steadier)."""
    out = {}
    for name in ratios:
        a, b = name.split("/")
        key = {"relidx": "cz_relidx", "relidx_walk(no cache)": "cz_relidx_walk", "dense": "cz_dense",
               "int8": "cz_int8", "int8_repack": "cz_int8_repack", "conv_f32": "cz_conv_f32",
               "conv_int8": "cz_conv_int8", "conv_relidx": "cz_conv_relidx"}.get(a)
        peer = {"ort_conv": "ort_conv_f32"}.get(b, b)
        if key in LAST_MIN and peer in LAST_MIN:
            out[name] = LAST_MIN[key] / LAST_MIN[peer]
    return out


def torch_single_thread():
    """torch (optional extra) for its CSR peer (MKL sparse), one thread; None if absent."""
    try:
        import torch
    except Exception:
        return None
    import warnings
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.set_num_threads(1)
    return torch


def ort_session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ort_models():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except Exception:
        return None
    from onnx import TensorProto, helper, numpy_helper

    def matmul(W):  # Y = X @ W^T
        B = numpy_helper.from_array(np.ascontiguousarray(W.T), "B")
        g = helper.make_graph([helper.make_node("MatMul", ["X", "B"], ["Y"])], "mm",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", W.shape[1]])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", W.shape[0]])], [B])
        return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))

    def matmul_int(q):  # int32 Y = Xu8 @ q^T  (the integer kernel alone: no quantize/rescale)
        B = numpy_helper.from_array(np.ascontiguousarray(q.T), "B")
        g = helper.make_graph([helper.make_node("MatMulInteger", ["X", "B"], ["Y"])], "mmi",
                              [helper.make_tensor_value_info("X", TensorProto.UINT8, ["n", q.shape[1]])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, ["n", q.shape[0]])], [B])
        return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))

    def dq_matmul_int(q, sc):  # the same work as ours: dynamic quantization + int GEMM + rescale
        B = numpy_helper.from_array(np.ascontiguousarray(q.T), "B")
        S = numpy_helper.from_array(sc.astype(np.float32), "S")
        nodes = [helper.make_node("DynamicQuantizeLinear", ["X"], ["Xq", "Xs", "Xz"]),
                 helper.make_node("MatMulInteger", ["Xq", "B", "Xz"], ["Yi"]),
                 helper.make_node("Cast", ["Yi"], ["Yf"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["Yf", "Xs"], ["Ys"]),
                 helper.make_node("Mul", ["Ys", "S"], ["Y"])]
        g = helper.make_graph(nodes, "dqmmi",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", q.shape[1]])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", q.shape[0]])], [B, S])
        return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))

    def conv(W, b, stride, pad, group):
        inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")]
        node = helper.make_node("Conv", ["X", "W", "b"], ["Y"], strides=[stride, stride],
                                pads=[pad] * 4, group=group)
        g = helper.make_graph([node], "conv",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
        return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))

    return matmul, matmul_int, conv, dq_matmul_int


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="run only cases whose name contains this (linear/conv)")
    args = ap.parse_args()
    build()
    ffi = FFI()
    ffi.cdef(CDEF)
    lib = ffi.dlopen(LIB)
    ptr = lambda a, t="float *": ffi.cast(t, a.ctypes.data)  # noqa: E731
    ort = ort_models()
    tch = torch_single_thread()
    rng = np.random.default_rng(0)
    rows_out = []
    feats = lib.czb_features()
    print(f"cpu features: avx2={feats & 1} avx512={(feats >> 1) & 1} vnni={(feats >> 2) & 1}; "
          f"onnxruntime={'yes' if ort else 'no'}; single thread; median of {args.rounds} interleaved rounds")
    shapes = [(300, 784), (100, 300), (1536, 384), (384, 1536), (4096, 4096)]
    if args.quick:
        shapes = shapes[:2]
    with threadpool_limits(1):
        for R, C in (shapes if args.only in ("", "linear") else []):
            W = rng.uniform(-1, 1, (R, C)).astype(np.float32)
            # relidx + 5-bit codebook at 10% density
            mask = rng.random((R, C)) < 0.10
            idx = np.where(mask, rng.integers(0, 32, (R, C)), -1).astype(np.int16)
            lut = np.sort(rng.uniform(-1, 1, 32)).astype(np.float32)
            Ws = np.where(mask, lut[np.maximum(idx, 0)], 0).astype(np.float32)
            csr = sp.csr_matrix(Ws)
            tcsr = tch.from_numpy(Ws).to_sparse_csr() if tch else None
            # int8 per row
            q = rng.integers(-127, 128, (R, C)).astype(np.int8)
            sc = (rng.uniform(0.5, 1.5, R) / 127).astype(np.float32)
            Wq = (q.astype(np.float32) * sc[:, None]).astype(np.float32)
            fd = lib.czb_form_dense(R, C, ptr(W))
            fr = lib.czb_form_relidx(R, C, ptr(idx, "int16_t *"), ptr(lut), 32, 5)
            fr_walk = lib.czb_form_relidx(R, C, ptr(idx, "int16_t *"), ptr(lut), 32, 5)
            # u16 column cache with the gap stream released: what the format layer builds at open
            lib.czb_relidx_prepare(fr, 1)
            fa = lib.czb_form_affine_rows(R, C, ptr(q, "int8_t *"), ptr(sc))
            # weights packed once (as the graph does at load for Linear / Gemm weights); the
            # unpacked form "cz_int8_repack" repacks them on every batch >= 4 call
            fa_rp = lib.czb_form_affine_rows(R, C, ptr(q, "int8_t *"), ptr(sc))
            packed = lib.czb_affine_prepare(fa) == 0
            sess = (ort[0](W), ort[1](q), ort[3](q, sc)) if ort else None
            for B in (1, 32):
                X = rng.uniform(-1, 1, (B, C)).astype(np.float32)
                Xu8 = rng.integers(0, 256, (B, C)).astype(np.uint8)
                yd, yr, ya = (np.empty((B, R), np.float32) for _ in range(3))
                # correctness, in the same run
                lib.czb_linear(fd, B, ptr(X), ptr(yd), 1)
                lib.czb_linear(fr, B, ptr(X), ptr(yr), 1)
                yw = np.empty((B, R), np.float32)
                lib.czb_linear(fr_walk, B, ptr(X), ptr(yw), 1)
                lib.czb_linear(fa, B, ptr(X), ptr(ya), 1)
                ya_rp = np.empty((B, R), np.float32)
                lib.czb_linear(fa_rp, B, ptr(X), ptr(ya_rp), 1)
                ok_d = np.allclose(yd, X @ W.T, rtol=1e-4, atol=1e-3)
                ok_r = np.allclose(yr, X @ Ws.T, rtol=1e-4, atol=1e-4) and \
                    np.allclose(yw, X @ Ws.T, rtol=1e-4, atol=1e-4)
                ref_a = X @ Wq.T
                ok_a = float(np.abs(ya - ref_a).max()) <= 0.02 * float(np.abs(ref_a).max()) \
                    and np.array_equal(ya, ya_rp)   # packed once == repacked, bit for bit
                peer_err = None
                xv = X[0] if B == 1 else None
                XT = np.ascontiguousarray(X.T)
                m = {
                    "cz_dense": lambda: lib.czb_linear(fd, B, ptr(X), ptr(yd), 1),
                    "cz_relidx": lambda: lib.czb_linear(fr, B, ptr(X), ptr(yr), 1),
                    "cz_relidx_walk": lambda: lib.czb_linear(fr_walk, B, ptr(X), ptr(yr), 1),
                    "cz_int8": lambda: lib.czb_linear(fa, B, ptr(X), ptr(ya), 1),
                    "cz_int8_repack": lambda: lib.czb_linear(fa_rp, B, ptr(X), ptr(ya_rp), 1),
                    "numpy_dense": (lambda: W @ xv) if B == 1 else (lambda: X @ W.T),
                    "scipy_csr": (lambda: csr @ xv) if B == 1 else (lambda: csr @ XT),
                }
                if tch:
                    xt = tch.from_numpy(np.ascontiguousarray(XT))   # (C, B): y^T = W_csr @ X^T
                    m["torch_csr"] = lambda: tcsr @ xt
                    ok_r = ok_r and np.allclose((tcsr @ xt).numpy().T, X @ Ws.T, rtol=1e-4, atol=1e-4)
                if sess:
                    m["ort_matmul"] = lambda: sess[0].run(None, {"X": X})
                    m["ort_matmulinteger"] = lambda: sess[1].run(None, {"X": Xu8})
                    m["ort_dq_mmi"] = lambda: sess[2].run(None, {"X": X})
                    # the peer's own error (informational): MLAS's AVX2 u8s8 kernel uses saturating
                    # vpmaddubsw, so with full-range int8 weights ORT is NOT exact here
                    ydq = sess[2].run(None, {"X": X})[0]
                    peer_err = float(np.abs(ydq - ref_a).max() / np.abs(ref_a).max())
                t = run_interleaved(m, args.rounds)
                row = {"case": f"linear {R}x{C}", "batch": B, "int8_packed_at_load": bool(packed),
                       "times_us": {k: v * 1e6 for k, v in t.items()},
                       "correct": {"dense": bool(ok_d), "relidx": bool(ok_r), "int8": bool(ok_a)},
                       "int8_rel_err": {"cz_int8": float(np.abs(ya - ref_a).max() / np.abs(ref_a).max()),
                                        "ort_dq_mmi": peer_err if sess else None},
                       "ratios": {
                           "relidx/numpy_dense": t["cz_relidx"] / t["numpy_dense"],
                           "relidx_walk(no cache)/numpy_dense": t["cz_relidx_walk"] / t["numpy_dense"],
                           "relidx/scipy_csr": t["cz_relidx"] / t["scipy_csr"],
                           "dense/numpy_dense": t["cz_dense"] / t["numpy_dense"],
                       }}
                if tch:
                    row["ratios"]["relidx/torch_csr"] = t["cz_relidx"] / t["torch_csr"]
                if sess:
                    row["ratios"]["dense/ort_matmul"] = t["cz_dense"] / t["ort_matmul"]
                    row["ratios"]["int8/ort_matmulinteger"] = t["cz_int8"] / t["ort_matmulinteger"]
                    row["ratios"]["int8/ort_dq_mmi"] = t["cz_int8"] / t["ort_dq_mmi"]
                    row["ratios"]["int8_repack/ort_matmulinteger"] = t["cz_int8_repack"] / t["ort_matmulinteger"]
                row["ratios_of_min"] = min_ratios(row["ratios"])
                row["times_us_minmax"] = LAST_SPREAD
                rows_out.append(row)
                print(f"{row['case']:>20} b={B:<3} " + " ".join(f"{k}={v*1e6:9.1f}us" for k, v in t.items())
                      + "  | " + " ".join(f"{k}={v:.2f}x" for k, v in row["ratios"].items())
                      + f"  ok={ok_d and ok_r and ok_a}", flush=True)
        # conv cases: (name, n, c, h, w, oc, k, stride, pad, group)
        convs = [("lenet5 conv1 1->20 5x5 28x28", 1, 1, 28, 28, 20, 5, 1, 0, 1),
                 ("lenet5 conv2 20->50 5x5 12x12", 1, 20, 12, 12, 50, 5, 1, 0, 1),
                 ("64->64 3x3 56x56", 1, 64, 56, 56, 64, 3, 1, 1, 1),
                 ("depthwise 3x3 96ch 56x56", 1, 96, 56, 56, 96, 3, 1, 1, 96)]
        for name, n, c, h, w, oc, k, s, pd, g in (convs if args.only in ("", "conv") else []):
            cg = c // g
            Wc = (rng.uniform(-1, 1, (oc, cg, k, k)) / np.sqrt(cg * k * k)).astype(np.float32)
            bc = rng.uniform(-0.1, 0.1, oc).astype(np.float32)
            X = rng.uniform(-1, 1, (n, c, h, w)).astype(np.float32)
            oh = (h + 2 * pd - k) // s + 1
            ow = (w + 2 * pd - k) // s + 1
            pv = np.array([n, c, h, w, oc, k, k, g, s, s, 1, 1, pd, pd, pd, pd, oh, ow], np.int64)
            W2 = np.ascontiguousarray(Wc.reshape(oc, -1))
            fd = lib.czb_form_dense(oc, W2.shape[1], ptr(W2))
            lib.czb_form_set_shape4(fd, oc, cg, k, k)
            qc = np.clip(np.round(W2 / (np.abs(W2).max(1, keepdims=True) / 127)), -127, 127).astype(np.int8)
            sqc = (np.abs(W2).max(1) / 127).astype(np.float32)
            fa = lib.czb_form_affine_rows(oc, W2.shape[1], ptr(qc, "int8_t *"), ptr(sqc))
            yd = np.empty((n, oc, oh, ow), np.float32)
            ya = np.empty_like(yd)
            pvp = ffi.cast("int64_t *", pv.ctypes.data)
            lib.czb_conv(fd, pvp, ptr(X), ptr(bc), ptr(yd), 1)
            lib.czb_conv(fa, pvp, ptr(X), ptr(bc), ptr(ya), 1)
            m = {"cz_conv_f32": lambda: lib.czb_conv(fd, pvp, ptr(X), ptr(bc), ptr(yd), 1),
                 "cz_conv_int8": lambda: lib.czb_conv(fa, pvp, ptr(X), ptr(bc), ptr(ya), 1)}
            yr = Wr = None
            if g == 1:   # 65%-pruned 8-bit k-means weights as LeNet-5's (a RELIDX form)
                keep = rng.random(W2.shape) < 0.35
                lut = np.sort(rng.uniform(-1, 1, 256) / np.sqrt(cg * k * k)).astype(np.float32)
                idx = np.where(keep, rng.integers(0, 256, W2.shape), -1).astype(np.int16)
                Wr = np.where(keep, lut[np.maximum(idx, 0)], 0).astype(np.float32)
                fr = lib.czb_form_relidx(oc, W2.shape[1], ptr(idx, "int16_t *"), ptr(lut), 256, 8)
                lib.czb_relidx_prepare(fr, 1)
                yr = np.empty_like(yd)
                lib.czb_conv(fr, pvp, ptr(X), ptr(bc), ptr(yr), 1)
                m["cz_conv_relidx"] = lambda: lib.czb_conv(fr, pvp, ptr(X), ptr(bc), ptr(yr), 1)
            ok = None
            if ort:
                cs = ort[2](Wc, bc, s, pd, g)
                ref = cs.run(None, {"X": X})[0]
                ok = bool(np.allclose(yd, ref, rtol=1e-4, atol=1e-4)) and \
                    float(np.abs(ya - ref).max()) <= 0.03 * float(np.abs(ref).max())
                if yr is not None:
                    csr = ort[2](Wr.reshape(Wc.shape), bc, s, pd, g)
                    ok = ok and bool(np.allclose(yr, csr.run(None, {"X": X})[0], rtol=1e-4,
                                                 atol=1e-4))
                m["ort_conv_f32"] = lambda: cs.run(None, {"X": X})
            t = run_interleaved(m, args.rounds)
            row = {"case": f"conv {name}", "batch": n, "times_us": {k2: v * 1e6 for k2, v in t.items()},
                   "correct": ok, "ratios": {}}
            if ort:
                row["ratios"] = {"conv_f32/ort_conv": t["cz_conv_f32"] / t["ort_conv_f32"],
                                 "conv_int8/ort_conv_f32": t["cz_conv_int8"] / t["ort_conv_f32"]}
                if "cz_conv_relidx" in t:   # (informational: sparse weights vs dense ORT)
                    row["ratios"]["conv_relidx/ort_conv_f32"] = t["cz_conv_relidx"] / t["ort_conv_f32"]
            row["ratios_of_min"] = min_ratios(row["ratios"])
            row["times_us_minmax"] = LAST_SPREAD
            rows_out.append(row)
            print(f"{row['case']:>40} " + " ".join(f"{k2}={v*1e6:9.1f}us" for k2, v in t.items())
                  + "  | " + " ".join(f"{k2}={v:.2f}x" for k2, v in row["ratios"].items()) + f"  ok={ok}",
                  flush=True)
    # targets: judged on medians (the protocol); the same judged on per-method minima is
    # reported beside them because the machine is shared and noisy
    def judge(rk):
        tg = {}
        lin = [r for r in rows_out if r["case"].startswith("linear")]
        big1 = next((r for r in lin if r["case"] == "linear 4096x4096" and r["batch"] == 1), None)
        if big1:
            tg["relidx 10% b1 4096^2 <= 0.25x numpy dense"] = big1[rk]["relidx/numpy_dense"] <= 0.25
        lin32 = [r for r in lin if r["batch"] == 32]
        if lin32:
            tg["relidx b32 <= scipy CSR on every shape"] = all(r[rk]["relidx/scipy_csr"] <= 1.0 for r in lin32)
            if all("relidx/torch_csr" in r[rk] for r in lin32):
                tg["relidx b32 <= torch CSR (MKL) on every shape"] = \
                    all(r[rk]["relidx/torch_csr"] <= 1.0 for r in lin32)
        if ort and lin:
            tg["int8 <= 1.25x ORT DynamicQuantizeLinear+MatMulInteger+rescale everywhere"] = \
                all(r[rk]["int8/ort_dq_mmi"] <= 1.25 for r in lin)
            tg["int8 <= 1.25x bare ORT MatMulInteger (u8 input given, int32 out) everywhere"] = \
                all(r[rk]["int8/ort_matmulinteger"] <= 1.25 for r in lin)
        # conv targets on the shapes they were set on (conv1, 1 input channel, is reported
        # beside them)
        cv = [r for r in rows_out if r["case"].startswith("conv") and "conv1" not in r["case"]]
        if ort and cv:
            tg["conv f32 <= 1.3x ORT Conv"] = all(r[rk]["conv_f32/ort_conv"] <= 1.3 for r in cv)
            tg["int8 conv <= 0.7x ORT fp32 Conv"] = all(r[rk]["conv_int8/ort_conv_f32"] <= 0.7 for r in cv)
        return tg
    tg = judge("ratios")
    tg_min = judge("ratios_of_min")
    print("\ntargets (median | min):")
    for k, v in tg.items():
        print(f"  {'MET   ' if v else 'MISSED'} | {'MET   ' if tg_min.get(k) else 'MISSED'} {k}")
    out = {"machine": {"platform": platform.platform(), "python": sys.version.split()[0],
                       "cpu_features": feats, "numpy": np.__version__},
           "method": "single thread; each method one timed batch (>=200us) per round, interleaved; "
                     "median (ratios) and minimum (ratios_of_min) over rounds",
           "rounds": args.rounds, "results": rows_out, "targets": tg, "targets_on_minima": tg_min}
    if args.only or args.quick:   # partial runs do not overwrite the recorded results
        return
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "kernels_c.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
