"""Per-tensor size accounting for ``CzFile.info()`` and the compression report."""

from __future__ import annotations

import math

from czmodel.codecs.base import NodeDesc
from czmodel.entropy import encoded_raw_size
from czmodel.format.header import iter_streams


def describe(node: NodeDesc) -> str:
    """Encoding tree as text, e.g. ``relidx(gaps:huffman, values=codebook(indices:huffman))``."""
    parts = [f"{role}:{s.entropy}" for role, s in sorted(node.streams.items())]
    parts += [f"{role}={describe(c)}" for role, c in sorted(node.children.items())]
    return f"{node.codec}({', '.join(parts)})"


def tensor_info(entry, sections) -> dict:
    n = math.prod(entry.shape)
    streams = []
    for s in iter_streams(entry.enc):
        streams.append({
            "path": s.path, "kind": s.kind, "entropy": s.entropy, "dtype": s.dtype,
            "bits": s.bits, "n": s.n,
            "raw_bytes": encoded_raw_size(s.dtype, s.bits, s.n),
            "stored_bytes": sections[s.sec][1],
        })
    stored = sum(s["stored_bytes"] for s in streams)
    fp32 = n * 4
    return {
        "name": entry.name, "shape": list(entry.shape), "dtype": entry.dtype,
        "encoding": describe(entry.enc), "elements": n, "stored_bytes": stored,
        "fp32_bytes": fp32, "bits_per_weight": (8 * stored / n) if n else 0.0,
        "ratio": (fp32 / stored) if stored else math.inf if n else 1.0, "streams": streams,
    }
