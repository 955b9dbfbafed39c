"""Plots of a compression (matplotlib, written to PNG files; matplotlib is optional).

- weight histogram with the codebook centroids drawn over it (Deep Compression Fig. 4/5),
- distributions of codebook indices and relative-index gaps (the Huffman opportunity),
- per-layer compression bars.
"""

from __future__ import annotations

import os

import numpy as np

from czmodel.errors import UnsupportedError


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UnsupportedError("plots need matplotlib: pip install 'czmodel[plots]'") from None
    return plt


def _streams(czfile, name: str) -> dict[str, np.ndarray]:
    """Decoded symbol streams of one tensor by path ("values/indices", "gaps", ...)."""
    from czmodel.format.header import iter_streams

    e = czfile.entry(name)
    return {s.path: czfile.read_stream(s) for s in iter_streams(e.enc)}


def plot_weights(original: np.ndarray, czfile, name: str, path: str) -> str:
    """Histogram of the original non-zero weights with the stored centroids over it."""
    plt = _plt()
    streams = _streams(czfile, name)
    cents = next((v for k, v in streams.items() if k.endswith("centroids")), None)
    w = np.asarray(original, np.float32).ravel()
    w = w[w != 0]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(w, bins=200, color="#4878a8", alpha=0.8, label="weights (non-zero)")
    if cents is not None:
        c = np.asarray(cents, np.float32).ravel()
        for i, x in enumerate(c):
            ax.axvline(x, color="#d1495b", lw=0.8, alpha=0.7,
                       label="shared weights (centroids)" if i == 0 else None)
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_title(f"{name}: weight distribution and codebook")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_symbols(czfile, name: str, path: str) -> str:
    """Distributions of the codebook indices and the gaps of one tensor."""
    plt = _plt()
    streams = {k: v for k, v in _streams(czfile, name).items()
               if k.endswith(("indices", "gaps")) and v.dtype == np.uint8}
    if not streams:
        raise UnsupportedError(f"tensor {name!r} has no index or gap streams to plot")
    fig, axes = plt.subplots(1, len(streams), figsize=(4.5 * len(streams), 3.2))
    axes = np.atleast_1d(axes)
    for ax, (k, v) in zip(axes, sorted(streams.items())):
        counts = np.bincount(v, minlength=int(v.max(initial=0)) + 1)
        p = counts / max(1, counts.sum())
        h = -(p[p > 0] * np.log2(p[p > 0])).sum()
        ax.bar(np.arange(counts.size), counts, color="#4878a8")
        ax.set_title(f"{k}: entropy {h:.2f} bits", fontsize=9)
        ax.set_xlabel("symbol")
    axes[0].set_ylabel("count")
    fig.suptitle(f"{name}: symbol distributions (what Huffman exploits)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_layers(report, path: str) -> str:
    """Per-layer compression rate bars (P+Q and P+Q+H)."""
    plt = _plt()
    rows = [r for r in report.rows if r.weights > 0]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(rows) + 2), 3.5))
    ax.bar(x - 0.2, [r.rate_pq for r in rows], 0.4, label="P+Q", color="#8cb4d8")
    ax.bar(x + 0.2, [r.rate_pqh for r in rows], 0.4, label="P+Q+H", color="#2f5f8a")
    ax.set_xticks(x, [r.name for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("compression rate (x fp32)")
    ax.legend()
    ax.set_title("per-layer compression")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(originals: dict, cz_path: str, report, out_dir: str) -> list[str]:
    """Every plot for a compressed file; returns the PNG paths written."""
    from czmodel.format.reader import CzFile

    os.makedirs(out_dir, exist_ok=True)
    out = [plot_layers(report, os.path.join(out_dir, "layers.png"))]
    with CzFile(cz_path) as f:
        for name, w in originals.items():
            enc = f.entry(name).enc
            if enc.codec == "dense":
                continue
            safe = name.replace("/", "_")
            out.append(plot_weights(w, f, name, os.path.join(out_dir, f"{safe}.weights.png")))
            try:
                out.append(plot_symbols(f, name, os.path.join(out_dir, f"{safe}.symbols.png")))
            except UnsupportedError:
                pass
    return out
