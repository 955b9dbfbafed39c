"""``cz demo``: compress the bundled LeNet-300-100 (Fashion-MNIST), run it, print the report.

The bundled checkpoint (czmodel/data/lenet300_fmnist.npz, made by
bench/make_demo_model.py) was trained with iterative pruning: ~90% of its weights are zero
but, like any framework checkpoint, it stores them as fp32. The demo applies the rest of
Deep Compression (weight sharing with k-means, relative-index sparse storage, Huffman),
writes a .cz file, reads it back and measures accuracy on 1,000 real test images.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from importlib import resources

import numpy as np

DEMO_CONFIG = {
    # Deep Compression's fc setting: 5-bit shared weights, Huffman-coded indices and gaps.
    # The checkpoint is already pruned; "sparsity" keeps exactly its non-zeros.
    "default": {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5},
                "entropy": "huffman"},
    "layers": {"*.bias": None, "fc3.weight": {"prune": {"sparsity": 0.72}}},
}


def load_demo_model() -> dict[str, np.ndarray]:
    ref = resources.files("czmodel") / "data" / "lenet300_fmnist.npz"
    with resources.as_file(ref) as p, np.load(p) as z:
        return {k: z[k] for k in z.files}


def mlp_forward(weights, x: np.ndarray) -> np.ndarray:
    """Plain numpy forward pass of the fp32 checkpoint (the baseline to compare with)."""
    h = preprocess(x)
    for i in (1, 2, 3):
        h = h @ weights[f"fc{i}.weight"].T + weights[f"fc{i}.bias"]
        if i < 3:
            h = np.maximum(h, 0)
    return h


def preprocess(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


def lenet300_graph():
    """The model graph stored in the .cz: Linear -> Relu -> Linear -> Relu -> Linear."""
    from czmodel.graph import Graph, OpNode, ValueInfo

    nodes, h = [], "image"
    for i in (1, 2, 3):
        out = "logits" if i == 3 else f"fc{i}"
        nodes.append(OpNode("Linear", f"fc{i}", [h, f"fc{i}.weight", f"fc{i}.bias"], [out]))
        h = out
        if i < 3:
            nodes.append(OpNode("Relu", f"relu{i}", [out], [f"relu{i}"]))
            h = f"relu{i}"
    return Graph([ValueInfo("image", "f32", ["N", 784])],
                 [ValueInfo("logits", "f32", ["N", 10])], nodes)


def _time_call(fn, min_seconds: float = 0.3) -> float:
    """Median seconds per call over batches of back-to-back calls (after warm-up)."""
    for _ in range(3):
        fn()
    samples, t_end = [], time.perf_counter() + min_seconds
    while time.perf_counter() < t_end or len(samples) < 5:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def run_demo(out: str | None = None, as_json: bool = False) -> int:
    import czmodel
    from czmodel.compress.pipeline import save

    data = load_demo_model()
    x, y = data.pop("x_test"), data.pop("y_test")
    dense_acc = float(data.pop("dense_accuracy"))
    data.pop("pruned_accuracy")
    weights = data
    acc_before = float((mlp_forward(weights, x).argmax(1) == y).mean())
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory()
        out = os.path.join(tmp.name, "lenet300_fmnist.cz")
    t0 = time.perf_counter()
    report = save(out, weights, DEMO_CONFIG, graph=lenet300_graph(),
                  metadata={"model": "LeNet-300-100", "dataset": "Fashion-MNIST"})
    t_compress = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = czmodel.load(out, backend="auto", threads=1)
    t_load = time.perf_counter() - t0
    xf = preprocess(x)
    logits = model.run({"image": xf})["logits"]
    acc_after = float((logits.argmax(1) == y).mean())
    one = xf[:1]
    lat_cz = _time_call(lambda: model.run({"image": one}))
    lat_np = _time_call(lambda: mlp_forward(weights, x[:1]))
    fp32_file = sum(v.nbytes for v in weights.values())
    size = os.path.getsize(out)
    result = {"file": out, "file_bytes": size, "fp32_bytes": fp32_file,
              "ratio": fp32_file / size, "accuracy_fp32_pruned_checkpoint": acc_before,
              "accuracy_cz": acc_after, "accuracy_dense_training": dense_acc,
              "test_images": int(len(y)), "compress_seconds": t_compress,
              "load_seconds": t_load, "backend": model.backend.name,
              "latency_batch1_us": lat_cz * 1e6, "latency_numpy_fp32_us": lat_np * 1e6,
              "report": report.to_dict()}
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print("czmodel demo: LeNet-300-100 trained on Fashion-MNIST with iterative pruning\n")
        report.print()
        print(f"\nwrote {out}: {size:,} bytes; the fp32 checkpoint is {fp32_file:,} bytes "
              f"-> {fp32_file / size:.1f}x smaller")
        print(f"accuracy on {len(y)} Fashion-MNIST test images: fp32 checkpoint "
              f"{acc_before:.1%}, .cz {acc_after:.1%} ({(acc_after - acc_before) * 100:+.1f} "
              f"points); compress {t_compress:.2f} s, load {t_load * 1e3:.1f} ms")
        print(f"ran in the {model.backend.name} backend straight from the compressed forms: "
              f"batch-1 latency {lat_cz * 1e6:.0f} us (numpy fp32 dense forward: "
              f"{lat_np * 1e6:.0f} us)")
    if tmp is not None:
        tmp.cleanup()
    return 0
