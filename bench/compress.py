"""Compression benchmark (issue 3 targets), printed as a table and written to
bench/results/compress.json.

1. A 1536x384 Laplace matrix, 10% density, 5-bit k-means, Huffman: stored size versus fp32,
   the entropy bound, plain CSR (int32 indices + fp32 values) and int8 per-channel.
2. Compress 22.7M parameters shaped like MiniLM (37 matrices 384x384 / 1536x384 /
   384x1536 plus a 30522x384 embedding) with prune + 5-bit k-means + Huffman: wall time.
Run: python bench/compress.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import czmodel  # noqa: E402
from czmodel.compress.pipeline import save  # noqa: E402

DC5 = {"default": {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5},
                   "entropy": "huffman"}}


def entropy_bits(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def laplace_case(tmp: str) -> dict:
    w = np.random.default_rng(0).laplace(size=(1536, 384)).astype(np.float32)
    path = os.path.join(tmp, "laplace.cz")
    t0 = time.perf_counter()
    rep = save(path, {"w": w}, DC5)
    dt = time.perf_counter() - t0
    with czmodel.open(path) as f:
        info = f.info()[0]
        wh = f["w"]
    mask = wh != 0
    # entropy bound: ideal coding of the k-means indices and of the gaps (zeros skipped
    # between stored entries, per row), given their empirical distributions
    from czmodel.codecs.relidx import relidx_gaps
    gaps, _, _ = relidx_gaps(mask, 8)
    _, idx = np.unique(wh[mask], return_inverse=True)
    bound = (entropy_bits(idx) + entropy_bits(gaps)) / 8 + 32 * 4
    nnz = int(mask.sum())
    csr = nnz * 8 + (w.shape[0] + 1) * 4
    int8 = w.size + w.shape[0] * 4
    return {"case": "1536x384 Laplace, 10% density, 5-bit k-means, Huffman",
            "fp32_bytes": w.nbytes, "stored_bytes": info["stored_bytes"],
            "stored_pct": 100 * info["stored_bytes"] / w.nbytes,
            "entropy_bound_pct": 100 * bound / w.nbytes, "csr_int32_pct": 100 * csr / w.nbytes,
            "int8_per_channel_pct": 100 * int8 / w.nbytes, "seconds": dt,
            "encoding": info["encoding"], "report": rep.to_dict()["total"]}


def minilm_case(tmp: str, quick: bool) -> dict:
    rng = np.random.default_rng(1)
    shapes = [(30522, 384)] + [(384, 384)] * 24 + [(1536, 384)] * 6 + [(384, 1536)] * 7
    if quick:
        shapes = [(3052, 384)] + shapes[1:6]
    tensors = {f"layer{i}.weight": (rng.laplace(size=s) * 0.05).astype(np.float32)
               for i, s in enumerate(shapes)}
    n = sum(v.size for v in tensors.values())
    path = os.path.join(tmp, "minilm_like.cz")
    t0 = time.perf_counter()
    rep = save(path, tensors, DC5)
    dt = time.perf_counter() - t0
    return {"case": f"{len(shapes)} MiniLM-shaped matrices, prune 90% + 5-bit k-means + Huffman",
            "parameters": n, "seconds": dt, "file_bytes": os.path.getsize(path),
            "ratio": rep.file_ratio}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lap = laplace_case(tmp)
        mini = minilm_case(tmp, args.quick)
    print(f"{lap['case']}:")
    print(f"  stored {lap['stored_pct']:.2f}% of fp32 (target <= 3.0%); entropy bound "
          f"{lap['entropy_bound_pct']:.2f}%; CSR int32 {lap['csr_int32_pct']:.1f}%; "
          f"int8 per-channel {lap['int8_per_channel_pct']:.1f}%")
    print(f"  encoding {lap['encoding']}")
    print(f"{mini['case']}:")
    print(f"  {mini['parameters']:,} parameters in {mini['seconds']:.1f} s (target <= 60 s); "
          f"{mini['ratio']:.1f}x smaller")
    out = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                       "numpy": np.__version__, "cpus": os.cpu_count()},
           "laplace": lap, "minilm_like": mini, "quick": args.quick}
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "compress.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
