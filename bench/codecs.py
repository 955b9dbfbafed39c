"""Entropy-stage benchmark: sizes vs the entropy bound and zstd-19; decode throughput.

Streams (~10M symbols each):
  kmeans5 - 5-bit k-means indices of Laplace weights (32 linear centroids min..max)
  gaps4   - 4-bit relative-index gaps of a 10%-dense matrix (15 = filler/escape)

Protocol: single thread, one warm-up call per method, SAMPLES timed rounds in
which every method runs once (ours and peers interleaved), median/min/max.
Throughput = decoded symbols (one byte each) per second, in MB/s.

Run:  python bench/codecs.py [--n 10000000] [--samples 7]
Writes bench/results/codecs.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402
import zstandard  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from czmodel.entropy import bitpack, decode_stream, encode_stream  # noqa: E402
from czmodel.entropy import huffman as hf  # noqa: E402

REF_SLICE = 200_000


def kmeans5(n: int, rng) -> np.ndarray:
    w = rng.laplace(0.0, 1.0, n)
    lo, hi = w.min(), w.max()
    centroids = np.linspace(lo, hi, 32)
    return np.clip(np.rint((w - lo) / (centroids[1] - centroids[0])), 0, 31).astype(np.uint8)


def gaps4(n: int, rng) -> np.ndarray:
    """Relative indexing with 4-bit gaps: zeros skipped d >= 0 -> [15]*(d//15) + [d%15]."""
    d = rng.geometric(0.10, int(n / 1.4)) - 1
    fill = d // 15
    total = int((fill + 1).sum())
    out = np.full(total, 15, np.uint8)
    out[np.cumsum(fill + 1) - 1] = d % 15
    return out[:n]


def entropy_bytes(sym: np.ndarray) -> float:
    p = np.bincount(sym).astype(np.float64)
    p = p[p > 0] / sym.size
    return float(-(p * np.log2(p)).sum() * sym.size / 8)


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def bench(methods: dict, samples: int) -> dict:
    for f in methods.values():          # warm-up
        f()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(samples):
        for k, f in methods.items():    # interleaved
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return times


def run_stream(name: str, sym: np.ndarray, bits: int, samples: int) -> dict:
    n = sym.size
    packed = bitpack.pack_symbols(sym, bits)
    encode_stream(sym[:1000], "u8", bits, "huffman")                # JIT warm-up
    t = time.perf_counter()
    stage, huff = encode_stream(sym, "u8", bits, "huffman")
    t_enc = time.perf_counter() - t
    assert stage == "huffman"
    cz19 = zstandard.ZstdCompressor(level=19, write_content_size=True)
    t = time.perf_counter()
    z_bytes = cz19.compress(sym.tobytes())
    t_z19 = time.perf_counter() - t
    z_packed = cz19.compress(packed)
    _, z_stage = encode_stream(sym, "u8", bits, "zstd")            # czmodel default level
    sizes = {
        "n_symbols": n,
        "entropy_bound": entropy_bytes(sym),
        "huffman": len(huff),
        "raw_packed": len(packed),
        "zstd19_bytes": len(z_bytes),
        "zstd19_packed": len(z_packed),
        "czmodel_zstd_stage": len(z_stage),
    }
    # correctness before timing
    assert np.array_equal(decode_stream(huff, "huffman", "u8", bits, n), sym)
    sl = sym[:REF_SLICE]
    _, huff_sl = encode_stream(sl, "u8", bits, "huffman")
    ref_out = decode_stream(huff_sl, "huffman", "u8", bits, sl.size, reference=True)
    assert np.array_equal(ref_out, sl)

    dctx = zstandard.ZstdDecompressor()
    methods = {
        "huffman_numba": lambda: decode_stream(huff, "huffman", "u8", bits, n),
        "zstd19_bytes": lambda: dctx.decompress(z_bytes),
        "zstd19_packed+unpack": lambda: bitpack.unpack_symbols(dctx.decompress(z_packed), bits, n),
        "raw_unpack_numba": lambda: decode_stream(packed, "raw", "u8", bits, n),
        "memcpy_np_copy": lambda: np.copy(sym),
    }
    times = bench(methods, samples)
    ref = {"huffman_reference": lambda: hf.decode_huffman_ref(huff_sl, bits, sl.size)}
    ref_times = bench(ref, max(5, samples // 2))
    thr = {}
    for k, ts in list(times.items()) + list(ref_times.items()):
        cnt = sl.size if k == "huffman_reference" else n
        mbs = [cnt / t / 1e6 for t in ts]
        thr[k] = {"median_MBps": statistics.median(mbs), "min_MBps": min(mbs),
                  "max_MBps": max(mbs), "samples": len(ts), "symbols": cnt}
    return {"stream": name, "bits": bits, "sizes": sizes, "throughput": thr,
            "encode_seconds": {"huffman": t_enc, "zstd19_bytes": t_z19}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "codecs.json"))
    args = ap.parse_args()
    numba.set_num_threads(1)
    rng = np.random.default_rng(20240501)
    results = [run_stream("kmeans5", kmeans5(args.n, rng), 5, args.samples),
               run_stream("gaps4", gaps4(args.n, rng), 4, args.samples)]
    machine = {"platform": platform.platform(), "python": platform.python_version(),
               "cpu": cpu_model(), "cpus": os.cpu_count(), "numpy": np.__version__,
               "numba": numba.__version__, "zstandard": zstandard.__version__,
               "libzstd": ".".join(map(str, zstandard.ZSTD_VERSION)), "threads": 1}
    for r in results:
        s = r["sizes"]
        print(f"\n== {r['stream']}  ({s['n_symbols']:,} symbols, {r['bits']}-bit)")
        eb = s["entropy_bound"]
        print(f"{'size':<24}{'bytes':>12}{'bits/sym':>10}{'vs bound':>10}")
        for k in ("entropy_bound", "huffman", "zstd19_bytes", "zstd19_packed",
                  "czmodel_zstd_stage", "raw_packed"):
            v = s[k]
            print(f"{k:<24}{v:>12,.0f}{8 * v / s['n_symbols']:>10.3f}{v / eb:>10.3f}")
        print(f"{'decode':<24}{'median MB/s':>12}{'min':>10}{'max':>10}")
        for k, t in r["throughput"].items():
            print(f"{k:<24}{t['median_MBps']:>12.1f}{t['min_MBps']:>10.1f}{t['max_MBps']:>10.1f}")
        print(f"encode: huffman {r['encode_seconds']['huffman']:.2f}s, "
              f"zstd-19 bytes {r['encode_seconds']['zstd19_bytes']:.2f}s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"\nmachine: {machine['cpu']} | numpy {machine['numpy']} numba {machine['numba']} "
          f"zstandard {machine['zstandard']} (libzstd {machine['libzstd']})\nwrote {args.out}")


if __name__ == "__main__":
    main()
