"""The Numba backend: Linear / Gemm / Conv run straight from kernel forms (never densified);
every other op is the reference backend's numpy implementation (cheap or shape ops).

``prepare_weight`` builds a form (``czmodel.runtime.forms``) for a file tensor when every use
is the weight input of Linear, Gemm with ``transB=1`` (B is (out, in), the compressed
layout) or Conv; a tensor with no fast form becomes a ``DenseForm`` and the fallback is
recorded in ``backend.log.fallbacks``. Affine (int8/int4) weights run the int8 kernels with
dynamic per-row activation quantization (outputs differ from float math by the activation
rounding, ~1e-2 relative).

``threads``: numba's thread count (``numba.set_num_threads``) and, process-wide, the BLAS
thread pool (threadpoolctl) used by the dense parts. Registered lazily by
``czmodel.runtime.model`` (``BACKENDS["numba"]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from czmodel.errors import RuntimeInputError
from czmodel.graph.model import OpNode
from czmodel.runtime import forms as F
from czmodel.runtime import numba_kernels as K
from czmodel.runtime.numba_kernels.conv import resolve_pads
from czmodel.runtime.reference import ReferenceBackend

_FORM_OPS = ("Linear", "Gemm", "Conv")


def _err(node: OpNode, msg: str) -> RuntimeInputError:
    return RuntimeInputError(f"{node.where()}: {msg}")


def _f32(x: Any, node: OpNode, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise _err(node, f"{what} must be a float tensor")
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _bias(b: Any, rows: int, node: OpNode) -> np.ndarray | None:
    if b is None:
        return None
    if isinstance(b, F.Form):          # a bias consumed elsewhere as a weight: never here
        raise _err(node, "bias must be a dense tensor")
    b = _f32(b, node, "B")
    if b.shape != (rows,):
        raise _err(node, f"B must have shape [{rows}], got {list(b.shape)}")
    return b


def op_linear(inputs, attrs, node):
    x, w, b = inputs[0], inputs[1], inputs[2]
    if not isinstance(w, F.Form):
        w = _f32(w, node, "W")
        if w.ndim != 2:
            raise _err(node, f"W must be 2-D (out, in), got {list(w.shape)}")
        w = F.DenseForm(w)
    x = _f32(x, node, "X")
    if x.ndim < 1 or x.shape[-1] != w.cols:
        raise _err(node, f"X {list(x.shape)} last dim must equal W's in-dim {w.cols}")
    y = K.matmul(w, x.reshape(-1, w.cols))
    bias = _bias(b, w.rows, node)
    y = y + bias if bias is not None else np.ascontiguousarray(y)
    return [y.reshape(x.shape[:-1] + (w.rows,))]


_REF_GEMM = ReferenceBackend().op("Gemm")


def op_gemm(inputs, attrs, node):
    a, w, c = inputs[0], inputs[1], inputs[2]
    if not isinstance(w, F.Form):
        return _REF_GEMM(inputs, attrs, node)
    if not attrs["transB"]:
        raise _err(node, "a kernel-form B needs transB=1")
    a = _f32(a, node, "A")
    if a.ndim != 2:
        raise _err(node, f"A must be 2-D, got {list(a.shape)}")
    a = a.T if attrs["transA"] else a
    if a.shape[1] != w.cols:
        raise _err(node, f"inner dims differ: {list(a.shape)} x ({w.cols}, {w.rows})")
    y = np.array(K.matmul(w, a), dtype=np.float32, order="C")
    if attrs["alpha"] != 1.0:
        y *= np.float32(attrs["alpha"])
    if c is not None:
        c = _f32(c, node, "C")
        y += np.float32(attrs["beta"]) * c
    return [y]


def op_conv(inputs, attrs, node):
    x, w, b = inputs[0], inputs[1], inputs[2]
    if not isinstance(w, F.Form):
        w = _f32(w, node, "W")
        if w.ndim != 4:
            raise _err(node, f"W must be 4-D, got {list(w.shape)}")
        form, wshape = F.DenseForm(w.reshape(w.shape[0], -1)), w.shape
    else:
        form, wshape = w, getattr(w, "shape", None)
        if wshape is None or len(wshape) != 4:
            raise _err(node, "W must be a 4-D conv kernel")
    x = _f32(x, node, "X")
    if x.ndim != 4:
        raise _err(node, f"X has rank {x.ndim}; op set 1 supports 2-D Conv only")
    o, cg, kh, kw = wshape
    g = attrs["group"]
    if attrs["kernel_shape"] is not None and list(attrs["kernel_shape"]) != [kh, kw]:
        raise _err(node, f"kernel_shape {attrs['kernel_shape']} differs from W {list(wshape)}")
    if x.shape[1] != cg * g or o % g:
        raise _err(node, f"X has {x.shape[1]} channels and W is {list(wshape)}: with "
                         f"group={g} need C == W.shape[1] * group and M divisible by group")
    s = attrs["strides"] or [1, 1]
    d = attrs["dilations"] or [1, 1]
    pads = resolve_pads(attrs["auto_pad"], attrs["pads"], x.shape[2:], (kh, kw), s, d)
    for n, k, p0, p1, dd in zip(x.shape[2:], (kh, kw), pads[:2], pads[2:], d):
        if n + p0 + p1 - dd * (k - 1) - 1 < 0:
            raise _err(node, f"input {list(x.shape[2:])} is smaller than the dilated kernel")
    return [K.conv2d(form, x, _bias(b, o, node), (kh, kw), s, pads, d, g)]


class NumbaBackend(ReferenceBackend):
    """Compressed-form kernels in Numba; the reference's numpy for every other op."""

    name = "numba"
    OPS: dict[str, Callable] = {"Linear": op_linear, "Gemm": op_gemm, "Conv": op_conv}

    def __init__(self, threads: int | None = None, *, precise: bool = False) -> None:
        super().__init__(threads=threads, precise=precise)
        self.log = F.BuildLog()
        if threads is not None:
            numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
            try:  # optional: caps numpy's BLAS threads (the dev extra installs it)
                from threadpoolctl import threadpool_limits
            except ImportError:
                self._blas_limit = None
            else:
                self._blas_limit = threadpool_limits(limits=int(threads))   # process-wide

    def op(self, op: str) -> Callable:
        fn = self.OPS.get(op)
        if fn is None:
            return super().op(op)
        if not self.precise:
            return fn
        # precise: float weights reach the op dense (prepare_weight) and run the reference,
        # which accumulates in float64; int8 forms keep their exact integer kernels
        ref = super().op(op)

        def precise_op(inputs, attrs, node):
            return fn(inputs, attrs, node) if isinstance(inputs[1], F.AffineForm) \
                else ref(inputs, attrs, node)
        return precise_op

    def prepare_weight(self, name: str, file: Any, uses: list[tuple[OpNode, int]]) -> object:
        groups = {1}
        for node, k in uses:
            if k != 1 or node.op not in _FORM_OPS:
                return file[name]
            if node.op == "Gemm" and not node.attrs.get("transB", 0):
                return file[name]
            if node.op == "Conv":
                groups.add(int(node.attrs.get("group", 1)))
        entry = file.entry(name)
        want_ndim = {"Linear": 2, "Gemm": 2, "Conv": 4}
        if any(len(entry.shape) != want_ndim[n.op] for n, _ in uses) or len(groups) > 2:
            return file[name]                     # malformed use: let the op report it
        if entry.dtype not in ("f32", "f16", "f64", "bf16"):
            return file[name]
        form = F.build_form(file, name, self.log, conv_groups=max(groups))
        if self.precise and not isinstance(form, F.AffineForm):
            return file[name]                     # dense, for the float64 reference ops
        return form
