"""Write a trained, compressed PyTorch model to a .cz file, keeping the trained codebooks.

``czconvert.torch_to_cz`` re-runs compression (k-means) from a config; after trained
quantization the codebooks must be stored exactly as trained instead. ``write_cz`` exports
the graph (TorchScript -> ONNX -> op set 1 via ``convert_graph``), then encodes each shared
weight straight from its ``Codebook``: ``relidx(mask, codebook(kept indices, centroids))``
when sparse, ``codebook(indices, centroids)`` (zero centroid reserved) when dense, with the
chosen entropy stage (Huffman for indices and gaps). Every other tensor is stored as is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from czmodel import codecs as E
from czmodel.compress.report import Report, build_report
from czmodel.format.writer import build_file, write_file

from ..onnx_import import convert_graph
from ..torch_import import export_onnx
from .quantize import Codebook


@dataclass
class _Result:
    name: str
    kept: int


def codebook_node(cb: Codebook, entropy: str = "huffman") -> Any:
    """The encoding tree of one trained codebook."""
    if cb.zero_reserved or cb.mask.all():
        node = E.codebook(cb.indices, cb.centroids, bits=cb.bits)
    else:
        kept = cb.indices[cb.mask].astype(np.uint8)
        node = E.relidx(cb.mask, E.codebook(kept, cb.centroids, bits=cb.bits))
    node.set_entropy(entropy)
    return node


def write_cz(module: Any, example_input: Any, path: str | os.PathLike,
             codebooks: Mapping[str, Codebook], *, entropy: str = "huffman",
             metadata: Mapping | None = None, onnx_model: Any = None) -> Report:
    """Export ``module`` and write ``path`` with ``codebooks`` stored exactly. Returns the
    Deep Compression report. The module's weights must equal the decoded codebooks."""
    if onnx_model is None:
        onnx_model = export_onnx(module, example_input, output_names=["logits"],
                                 dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    graph, tensors, _ = convert_graph(onnx_model)
    nodes: dict[str, Any] = {}
    results = []
    for name, arr in tensors.items():
        cb = codebooks.get(name)
        if cb is None:
            nodes[name] = np.asarray(arr)
            results.append(_Result(name, int(np.asarray(arr).size)))
            continue
        dec = cb.decode()
        if dec.shape != arr.shape or not np.array_equal(dec, arr):
            raise ValueError(f"tensor {name!r}: the graph's weight does not equal its "
                             f"decoded codebook (shape {arr.shape} vs {dec.shape})")
        nodes[name] = codebook_node(cb, entropy)
        results.append(_Result(name, int(cb.mask.sum())))
    missing = set(codebooks) - set(tensors)
    if missing:
        raise ValueError(f"codebooks for tensors not in the graph: {sorted(missing)}")
    meta = {"producer": "czconvert.train", "source": "torch", **dict(metadata or {})}
    write_file(path, build_file(nodes, graph=graph.to_header(), metadata=meta))
    return build_report(path, results)
