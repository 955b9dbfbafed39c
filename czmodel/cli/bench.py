"""``cz bench MODEL.cz [--vs ORIGINAL.onnx] [--threads N]``: latency (median, spread),
throughput and resident weight memory, against ONNX Runtime on the original when given.

Protocol (see bench/): warm-up, batches of back-to-back calls lasting >= 200 us, ours and the
peer interleaved so machine noise hits both, outputs compared before timing."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from czmodel.errors import UnsupportedError

_NP = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64,
       "i32": np.int32, "i8": np.int8, "u8": np.uint8, "bool": np.bool_}


def make_feeds(inputs, batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for the graph: symbolic dims -> ``batch`` (first) or ``seq`` (others);
    integer inputs (token ids, masks) get small non-negative values."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in inputs:
        shape = [d if isinstance(d, int) else (batch if i == 0 else seq)
                 for i, d in enumerate(v.shape)]
        dt = _NP.get(v.dtype)
        if dt is None:
            raise UnsupportedError(f"cz bench cannot make inputs of dtype {v.dtype} ({v.name})")
        if np.issubdtype(dt, np.floating):
            feeds[v.name] = rng.standard_normal(shape).astype(dt)
        elif dt is np.bool_:
            feeds[v.name] = np.ones(shape, bool)
        elif "mask" in v.name:
            feeds[v.name] = np.ones(shape, dt)
        else:
            feeds[v.name] = rng.integers(0, 100, size=shape).astype(dt)
    return feeds


def _batch_calls(fn: Callable[[], object], target_s: float = 2e-4) -> int:
    t0 = time.perf_counter()
    fn()
    dt = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(target_s / dt) + 1)


def measure(fns: dict[str, Callable[[], object]], seconds: float) -> dict[str, dict]:
    """Median/min/max seconds per call of each function, interleaved A B A B ..."""
    for fn in fns.values():          # warm up: >= 3 calls and 50 ms
        t_end = time.perf_counter() + 0.05
        for _ in range(3):
            fn()
        while time.perf_counter() < t_end:
            fn()
    reps = {k: _batch_calls(fn) for k, fn in fns.items()}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or min(len(s) for s in samples.values()) < 5:
        for k, fn in fns.items():
            n = reps[k]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[k].append((time.perf_counter() - t0) / n)
    return {k: {"median_s": float(np.median(s)), "min_s": float(np.min(s)),
                "max_s": float(np.max(s)), "samples": len(s)} for k, s in samples.items()}


def run_bench(path: str, vs: str | None, threads: int, batch: int, seq: int,
              seconds: float, backend: str) -> dict:
    import czmodel

    t0 = time.perf_counter()
    model = czmodel.load(path, backend=backend, threads=threads)
    load_s = time.perf_counter() - t0
    feeds = make_feeds(model.inputs, batch, seq)
    fns = {"czmodel": lambda: model.run(feeds)}
    result: dict = {"file": path, "backend": model.backend.name, "threads": threads,
                    "batch": batch, "load_s": load_s,
                    "inputs": {k: list(v.shape) for k, v in feeds.items()}}
    resident = getattr(model, "resident_total", None)
    if resident is not None:
        result["resident_bytes"] = int(resident() if callable(resident) else resident)
    if vs:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UnsupportedError("--vs needs onnxruntime: pip install 'czmodel[onnx]'") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        t0 = time.perf_counter()
        sess = ort.InferenceSession(vs, so, providers=["CPUExecutionProvider"])
        result["ort_session_s"] = time.perf_counter() - t0
        ort_feeds = {i.name: feeds[i.name] for i in sess.get_inputs() if i.name in feeds}
        ours = model.run(feeds)
        theirs = sess.run(None, ort_feeds)
        a = np.asarray(next(iter(ours.values())), np.float64).ravel()
        b = np.asarray(theirs[0], np.float64).ravel()
        if a.shape == b.shape and a.size:
            result["max_abs_diff_vs_ort"] = float(np.abs(a - b).max())
            denom = np.linalg.norm(a) * np.linalg.norm(b)
            result["cosine_vs_ort"] = float(a @ b / denom) if denom else 1.0
        fns["onnxruntime"] = lambda: sess.run(None, ort_feeds)
    result["timing"] = measure(fns, seconds)
    t = result["timing"]
    for k in t:
        t[k]["throughput_per_s"] = batch / t[k]["median_s"]
    if "onnxruntime" in t:
        result["ratio_vs_ort"] = t["czmodel"]["median_s"] / t["onnxruntime"]["median_s"]
    close = getattr(model, "close", None)
    if callable(close):
        close()
    return result


_HEAD = ["engine", "median us", "min us", "max us", "items/s", "samples"]


def _rows(r: dict) -> list[list]:
    return [[k, t["median_s"] * 1e6, t["min_s"] * 1e6, t["max_s"] * 1e6,
             t["throughput_per_s"], t["samples"]] for k, t in r["timing"].items()]


def _summary(r: dict) -> list[str]:
    from czmodel.cli.table import human_bytes

    lines = [f"backend {r['backend']}, {r['threads']} thread(s), batch {r['batch']}, "
             f"load {r['load_s'] * 1e3:.1f} ms"]
    if "resident_bytes" in r:
        lines.append(f"resident weights: {human_bytes(r['resident_bytes'])}")
    if "ratio_vs_ort" in r:
        lines.append(f"czmodel / ONNX Runtime: {r['ratio_vs_ort']:.2f}x (session creation "
                     f"{r['ort_session_s'] * 1e3:.1f} ms); outputs cosine "
                     f"{r.get('cosine_vs_ort', float('nan')):.6f}")
    return lines


def render(r: dict) -> str:
    """The plain-text result (what ``cz bench`` prints when stdout is not a terminal)."""
    from czmodel.cli.table import render as table

    return "\n".join([table(_HEAD, _rows(r), "lrrrrr"), "", *_summary(r)])


def print_result(r: dict) -> None:
    """Print the result: a rich table in a terminal, else exactly ``render(r)``."""
    from czmodel.cli.table import print_table

    print_table(_HEAD, _rows(r), "lrrrrr")
    print("\n" + "\n".join(_summary(r)))
