"""Turn a ``LayerSpec`` into an encoding tree for one tensor, and ``save`` a dict of arrays.

Order per tensor (Deep Compression): low rank (optional) -> prune -> quantize the kept
values -> entropy stage per stream. Pruned tensors are stored sparse (relidx, or nm/block
for structured masks) with the kept values as the quantized child.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from czmodel import codecs as E
from czmodel.codecs.base import Node
from czmodel.errors import EncodeError

_SPARSE_DENSITY_MAX = 0.6   # above this density a dense encoding is smaller than relidx


@dataclass
class TensorResult:
    """What compression did to one tensor (feeds the report)."""

    name: str
    shape: tuple[int, ...]
    op_type: str | None
    spec: Any
    node: Node
    kept: int               # stored non-zeros (== size when not pruned)


def _quantize(values: np.ndarray, q: dict | None, *, shape: tuple[int, ...],
              allow_per_channel: bool) -> Node:
    """Encode ``values`` (already shaped ``shape``) with the quantize spec."""
    from czmodel.compress import affine as A
    from czmodel.compress import fixedpoint as F
    from czmodel.compress import kmeans as K
    from czmodel.compress import special as S

    v = np.asarray(values, np.float32).reshape(shape)
    if not q or q.get("method") is None:
        return E.dense(v, "f32")
    method = q["method"]
    bits = int(q.get("bits", 8))
    per_channel = bool(q.get("per_channel", False)) and allow_per_channel and v.ndim >= 1
    if v.size == 0:
        return E.dense(v)
    if method == "kmeans":
        if per_channel:
            idx, cent = K.share_weights(v, bits, per_channel=True, init=q.get("init", "linear"))
            return E.codebook(idx, cent, bits=bits, axis=0)
        cent, idx = K.kmeans_1d(v.reshape(-1), bits, init=q.get("init", "linear"))
        return E.codebook(idx.reshape(shape), cent, bits=bits)
    if method in ("fp16", "bf16"):
        # half precision, stored as is (the entropy stage may still shrink the exponent bytes):
        # for models whose outputs sit on near-ties that 8-bit codes flip (PP-OCR rec)
        return E.dense(v, "f16" if method == "fp16" else "bf16")
    if method in ("binary", "ternary"):
        fn = S.binary if method == "binary" else S.ternary
        idx, cent = fn(v, per_channel=per_channel)
        k = cent.shape[-1]
        return E.codebook(idx, cent, bits=1 if k <= 2 else 2, axis=0 if cent.ndim == 2 else None)
    if method == "pow2":
        idx, cent = S.pow2(v, bits)
        return E.codebook(idx, cent, bits=bits)
    if method == "affine":
        symmetric = bool(q.get("symmetric", True))
        group = q.get("group_size") if v.ndim >= 2 else None
        axis = 0 if (per_channel and group is None) else None
        fraction = q.get("outlier_fraction")
        if fraction:
            return _outlier(v, bits, float(fraction), axis)
        qv, scale, zp = A.quantize_affine(v, bits=bits, symmetric=symmetric, axis=axis,
                                          group_size=group)
        return E.affine(qv, scale, None if symmetric else zp, bits=bits, signed=symmetric,
                        axis=axis, group_size=group)
    if method == "fixed":
        qv, frac = F.dynamic_fixed_point(v, bits)
        scale = np.array([2.0 ** -frac], np.float32)
        return E.affine(qv, scale, bits=bits, signed=True)
    if method == "minifloat":
        qv = F.minifloat(v, int(q.get("exp_bits", 4)), int(q.get("man_bits", 3)))
        cent, idx = np.unique(qv.reshape(-1).astype(np.float32), return_inverse=True)
        if cent.size > 256:
            raise EncodeError(f"minifloat produced {cent.size} distinct values (max 256)")
        return E.codebook(idx.reshape(shape).astype(np.uint8), cent)
    raise EncodeError(f"unknown quantize method {method!r}")


def _outlier(v: np.ndarray, bits: int, fraction: float, axis: int | None) -> Node:
    """V-Quant: bulk in ``bits``-bit affine + the largest weights as a sparse fp16 tensor."""
    from czmodel.compress import affine as A
    from czmodel.compress.outlier import split_outliers

    bulk, omask = split_outliers(v, fraction)
    qv, scale, _ = A.quantize_affine(bulk, bits=bits, symmetric=True, axis=axis)
    bulk_node = E.affine(qv, scale, bits=bits, signed=True, axis=axis)
    if not omask.any() or v.ndim == 0:
        return bulk_node
    deq = A.dequantize_affine(qv, scale, None, axis=axis)
    # the sparse term carries the residual at outlier positions, so the sum is exact there
    resid = (v - deq)[omask]
    sparse = E.relidx(omask, E.dense(resid.astype(np.float32), "f16"))
    return E.sum_(bulk_node, sparse)


def compress_tensor(name: str, w: np.ndarray, spec: Any, op_type: str | None = None
                    ) -> TensorResult:
    """Encode one tensor according to ``spec`` (a LayerSpec, or None for lossless)."""
    w = np.asarray(w)
    if spec is None or not np.issubdtype(w.dtype, np.floating) or w.ndim == 0:
        return TensorResult(name, w.shape, op_type, spec, E.dense(w), w.size)
    w = w.astype(np.float32)
    q = spec.quantize
    if spec.lowrank:
        node = _lowrank(w, spec.lowrank, q)
        return _finish(TensorResult(name, w.shape, op_type, spec, node, w.size), spec)
    mask = _prune_mask(w, spec.prune)
    if mask is None:
        node = _quantize(w, q, shape=w.shape, allow_per_channel=True)
        return _finish(TensorResult(name, w.shape, op_type, spec, node, w.size), spec)
    p = spec.prune or {}
    if p.get("granularity") == "nm":
        n, m = int(p.get("n", 2)), int(p.get("m", 4))
        vals = w.reshape(-1)[mask.reshape(-1)]
        node = E.nm(mask, _quantize(vals, q, shape=vals.shape, allow_per_channel=False),
                    n=n, m=m)
    elif p.get("granularity") == "block":
        bh, bw = p.get("block", (4, 4))
        rows = w.shape[0]
        w2 = w.reshape(rows, -1)
        bm = mask.reshape(rows, -1)[::bh, ::bw]
        blocks = w2.reshape(rows // bh, bh, -1, bw).transpose(0, 2, 1, 3)[bm].reshape(-1)
        node = E.block(bm, _quantize(blocks, q, shape=blocks.shape, allow_per_channel=False),
                       bh=bh, bw=bw, shape=w.shape)
    elif mask.size and mask.mean() > _SPARSE_DENSITY_MAX:
        # Lightly pruned: sparse storage would be larger than dense, so store the pruned
        # tensor densely; the pruned weights stay exactly zero (k-means reserves a zero
        # centroid under a mask; affine codes represent 0 exactly).
        node = _quantize_pruned_dense(np.where(mask, w, np.float32(0)), mask, q)
    else:
        vals = w.reshape(-1)[mask.reshape(-1)]
        node = E.relidx(mask, _quantize(vals, q, shape=vals.shape, allow_per_channel=False),
                        gap_bits=_gap_bits(spec))
    return _finish(TensorResult(name, w.shape, op_type, spec, node, int(mask.sum())), spec)


def _quantize_pruned_dense(w: np.ndarray, mask: np.ndarray, q: dict | None) -> Node:
    from czmodel.compress import kmeans as K

    if q and q.get("method") == "kmeans":
        per_channel = bool(q.get("per_channel", False)) and w.ndim >= 1
        idx, cent = K.share_weights(w, int(q.get("bits", 8)), mask=mask,
                                    per_channel=per_channel, init=q.get("init", "linear"))
        return E.codebook(idx, cent, bits=int(q.get("bits", 8)),
                          axis=0 if per_channel else None)
    return _quantize(w, q, shape=w.shape, allow_per_channel=True)


def _gap_bits(spec: Any) -> int | None:
    g = getattr(spec, "gap_bits", None)
    return None if g in (None, "auto") else int(g)


def _prune_mask(w: np.ndarray, p: dict | None) -> np.ndarray | None:
    from czmodel.compress import prune as P

    if not p:
        return None
    gran = p.get("granularity", "element")
    if gran == "nm":
        mask = P.nm_mask(w, int(p.get("n", 2)), int(p.get("m", 4)))
    elif "quality" in p:
        mask = P.han_mask(w, float(p["quality"]))
    else:
        kw = {"block": tuple(p["block"])} if gran == "block" and "block" in p else {}
        if gran == "block" and "block" not in p:
            kw = {"block": (4, 4)}
            p["block"] = (4, 4)
        mask = P.magnitude_mask(w, float(p.get("sparsity", 0.0)), gran, **kw)
    if gran not in ("nm", "block"):
        mask &= w != 0                      # already-zero weights are never stored
    return mask


def _lowrank(w: np.ndarray, lr: dict, q: dict | None) -> Node:
    from czmodel.compress import lowrank as LR

    method = lr.get("method", "svd")
    if method == "tucker2":
        if w.ndim != 4:
            raise EncodeError(f"tucker2 needs a 4-D conv weight, got shape {w.shape}")
        ranks = lr.get("rank", "vbmf")
        first, core, last = LR.tucker2(w, ranks=tuple(ranks) if isinstance(ranks, list)
                                       else ranks)
        return E.tucker2(*(_quantize(f, q, shape=f.shape, allow_per_channel=True)
                           for f in (first, core, last)), shape=w.shape)
    w2 = w.reshape(w.shape[0], -1) if w.ndim != 2 else w
    u, v = LR.svd(w2, rank=lr.get("rank"), energy=lr.get("energy"),
                  param_budget=lr.get("budget"))
    return E.svd(_quantize(u, q, shape=u.shape, allow_per_channel=True),
                 _quantize(v, q, shape=v.shape, allow_per_channel=True), shape=w.shape)


def _finish(res: TensorResult, spec: Any) -> TensorResult:
    # Huffman codes symbol streams (indices, gaps); other streams take the smallest stage.
    res.node.set_entropy(getattr(spec, "entropy", "auto") or "auto")
    return res


def compress_tensors(tensors: Mapping[str, np.ndarray], config: Any,
                     op_types: Mapping[str, str] | None = None) -> list[TensorResult]:
    from czmodel.progress import progress

    cfg = _as_config(config)
    out = []
    with progress(tensors.items(), total=len(tensors), desc="compressing") as bar:
        for name, w in bar:
            bar.set_postfix_str(name)
            op = (op_types or {}).get(name) or guess_op_type(np.asarray(w))
            spec = cfg.resolve(name, op) if cfg is not None else None
            out.append(compress_tensor(name, w, spec, op))
    return out


def guess_op_type(w: np.ndarray) -> str | None:
    """Weights-only files have no graph: a 4-D weight is a Conv, a 2-D one a Gemm."""
    return {4: "Conv", 2: "Gemm"}.get(w.ndim)


def _as_config(config: Any):
    from czmodel.compress.config import CompressionConfig

    if config is None or isinstance(config, CompressionConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        return CompressionConfig.from_file(config)
    if isinstance(config, Mapping):
        return CompressionConfig.from_dict(dict(config))
    raise EncodeError(f"config must be a dict, a file path or a CompressionConfig, "
                      f"not {type(config).__name__}")


def calibration_to_header(calibration: Mapping[str, Any] | None) -> dict:
    """``{value name: ActivationRange | dict}`` -> the header's plain "calibration" map."""
    out = {}
    for name, r in (calibration or {}).items():
        d = r if isinstance(r, Mapping) else {
            "scale": r.scale, "zero_point": r.zero_point, "min": r.min, "max": r.max,
            "method": r.method}
        out[str(name)] = {k: (float(v) if isinstance(v, (float, np.floating)) else
                              int(v) if isinstance(v, (int, np.integer)) else v)
                          for k, v in d.items()}
    return out


def save(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], config: Any = None, *,
         metadata: dict | None = None, op_types: Mapping[str, str] | None = None,
         calibration: Mapping[str, Any] | None = None, graph: Any = None):
    """Compress ``tensors`` with ``config`` and write ``path``. Returns the Report.

    ``calibration`` maps activation value names to ``ActivationRange`` (from
    ``czmodel.compress.calibrate``) or plain dicts; it is stored in the file header."""
    from czmodel.compress.report import build_report
    from czmodel.format.writer import build_file, write_file
    from czmodel.progress import progress_task

    arrays = {k: np.asarray(v) for k, v in tensors.items()}
    results = compress_tensors(arrays, config, op_types)
    nodes = {r.name: r.node for r in results}
    dtypes = {r.name: _tensor_dtype(arrays[r.name], r.node) for r in results}
    if graph is not None and hasattr(graph, "to_header"):
        graph = graph.to_header()
    with progress_task(len(nodes), desc="entropy coding") as bar:
        data = build_file(_Advancing(nodes, bar), metadata=metadata, tensor_dtypes=dtypes,
                          graph=graph, calibration=calibration_to_header(calibration))
    write_file(path, data)
    return build_report(path, results)


class _Advancing(dict):
    """The nodes for ``build_file``: its one pass over ``items()`` (tensor by tensor:
    entropy coding and packing, often most of a save's time) advances ``bar``."""

    def __init__(self, nodes: Mapping[str, Node], bar: Any) -> None:
        super().__init__(nodes)
        self.bar = bar

    def items(self):  # type: ignore[override]
        for name, node in super().items():
            self.bar.set_postfix_str(name)
            yield name, node
            self.bar.advance(1)


def _tensor_dtype(a: np.ndarray, node: Node) -> str:
    from czmodel.format.header import NUMPY_TO_TENSOR

    # lossy encodings decode to float; keep the caller's float width (f16 stays f16)
    if node.codec == "dense" or a.dtype.kind == "f":
        return NUMPY_TO_TENSOR.get(a.dtype.newbyteorder("="), "f32")
    return "f32"
