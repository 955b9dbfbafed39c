"""The reference backend: every op of op set 1 in plain numpy (spec: ``spec/ops.md``).

This is the oracle the other backends are tested against, so it favours the obviously
correct over the fast: convolutions and pools loop over kernel offsets, GEMM-like ops and
reductions accumulate in float64 and round once to float32.

Dtype rules: float values are float32 (an f16/f64 operand of a float op is converted and the
result is f32; only ``Cast`` makes f16/f64); integer arithmetic keeps its dtype (two's
complement wrap-around); shape values are int64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from czmodel.errors import LimitError, RuntimeInputError, UnsupportedError
from czmodel.format.header import TENSOR_DTYPES
from czmodel.graph.model import OpNode
from czmodel.runtime.executor import Backend

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)
MAX_RUNTIME_ELEMENTS = 1 << 32     # shape-building ops (Expand, Tile, ConstantOfShape, ...)

try:  # scipy is optional; math.erf is exact to double precision too
    from scipy.special import erf as _erf64
except ImportError:  # pragma: no cover
    _erf64 = np.vectorize(math.erf, otypes=[np.float64])


def _err(node: OpNode, msg: str) -> RuntimeInputError:
    return RuntimeInputError(f"{node.where()}: {msg}")


def _unsup(node: OpNode, msg: str) -> UnsupportedError:
    return UnsupportedError(f"{node.where()}: {msg}")


def _is_float(x: np.ndarray) -> bool:
    return x.dtype.kind == "f"


def _f(x: np.ndarray, node: OpNode, what: str = "input") -> np.ndarray:
    """A float operand as float32 (int/bool operands are an error)."""
    if not isinstance(x, np.ndarray):
        raise _err(node, f"{what} is a {type(x).__name__}, not an array")
    if x.dtype.kind != "f":
        raise _err(node, f"{what} must be a float tensor, got {x.dtype}")
    return x if x.dtype == F32 else x.astype(F32)


def _num(x: np.ndarray, node: OpNode, what: str = "input") -> np.ndarray:
    """A numeric operand: floats as float32, integers unchanged."""
    if not isinstance(x, np.ndarray):
        raise _err(node, f"{what} is a {type(x).__name__}, not an array")
    if x.dtype.kind == "f":
        return x if x.dtype == F32 else x.astype(F32)
    if x.dtype.kind in "iu":
        return x
    raise _err(node, f"{what} must be numeric, got {x.dtype}")


def _same(a: np.ndarray, b: np.ndarray, node: OpNode) -> tuple[np.ndarray, np.ndarray]:
    a, b = _num(a, node, "input 0"), _num(b, node, "input 1")
    if a.dtype != b.dtype:
        raise _err(node, f"operand dtypes differ: {a.dtype} and {b.dtype}")
    return a, b


def _ints(x: np.ndarray | None, node: OpNode, what: str) -> list[int]:
    """A 1-D (or scalar) int32/int64 tensor as a Python int list."""
    if x is None:
        raise _err(node, f"{what} is required")
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu" or x.ndim > 1:
        raise _err(node, f"{what} must be a 1-D integer tensor, got "
                   f"{getattr(x, 'dtype', type(x).__name__)} of rank {getattr(x, 'ndim', '?')}")
    return [int(v) for v in x.reshape(-1)]


def _scalar(x: np.ndarray, node: OpNode, what: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.size != 1 or x.ndim > 1:
        raise _err(node, f"{what} must be a scalar (or a 1-element 1-D tensor)")
    return x.reshape(())


def _axis(a: int, rank: int, node: OpNode, what: str = "axis") -> int:
    if not -rank <= a < rank:
        raise _err(node, f"{what} {a} is out of range for rank {rank}")
    return a + rank if a < 0 else a


def _axes(axes: list[int], rank: int, node: OpNode) -> list[int]:
    out = [_axis(a, rank, node) for a in axes]
    if len(set(out)) != len(out):
        raise _err(node, f"axes {axes} repeat an axis")
    return out


def _cap(n: int, node: OpNode) -> None:
    if n > MAX_RUNTIME_ELEMENTS:
        raise LimitError(f"{node.where()}: result of {n} elements exceeds "
                         f"{MAX_RUNTIME_ELEMENTS}")


def _out32(x: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(x, dtype=F32)]


# -- GEMM family -------------------------------------------------------------------------------
def op_gemm(inputs, attrs, node):
    a, b, c = _f(inputs[0], node, "A"), _f(inputs[1], node, "B"), inputs[2]
    if a.ndim != 2 or b.ndim != 2:
        raise _err(node, f"A and B must be 2-D, got {list(a.shape)} and {list(b.shape)}")
    a = a.T if attrs["transA"] else a
    b = b.T if attrs["transB"] else b
    if a.shape[1] != b.shape[0]:
        raise _err(node, f"inner dims differ: {list(a.shape)} x {list(b.shape)}")
    y = attrs["alpha"] * (a.astype(F64) @ b.astype(F64))
    if c is not None:
        c = _f(c, node, "C").astype(F64)
        try:
            np.broadcast_to(c, y.shape)
        except ValueError:
            raise _err(node, f"C {list(c.shape)} does not broadcast to {list(y.shape)}") from None
        y = y + attrs["beta"] * c
    return _out32(y)


def op_matmul(inputs, attrs, node):
    a, b = _same(inputs[0], inputs[1], node)
    if a.ndim == 0 or b.ndim == 0:
        raise _err(node, "MatMul operands must have rank >= 1")
    if _is_float(a):
        return _out32(np.matmul(a.astype(F64), b.astype(F64)))
    return [np.matmul(a, b).astype(a.dtype)]


def op_linear(inputs, attrs, node):
    x, w, b = _f(inputs[0], node, "X"), _f(inputs[1], node, "W"), inputs[2]
    if w.ndim != 2:
        raise _err(node, f"W must be 2-D (out, in), got {list(w.shape)}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise _err(node, f"X {list(x.shape)} last dim must equal W's in-dim {w.shape[1]}")
    y = x.astype(F64) @ w.astype(F64).T
    if b is not None:
        b = _f(b, node, "B")
        if b.shape != (w.shape[0],):
            raise _err(node, f"B must have shape [{w.shape[0]}], got {list(b.shape)}")
        y = y + b.astype(F64)
    return _out32(y)


# -- convolution and pooling -------------------------------------------------------------------
def _spatial_pads(node, attrs, in_hw, k_eff, strides) -> tuple[list[int], list[int]]:
    """(pads_begin, pads_end) per spatial dim for Conv / pools (ONNX auto_pad rules)."""
    mode = attrs["auto_pad"]
    if mode == "NOTSET":
        p = attrs.get("pads") or [0, 0, 0, 0]
        return p[:2], p[2:]
    if mode == "VALID":
        return [0, 0], [0, 0]
    begin, end = [], []
    for n, k, s in zip(in_hw, k_eff, strides):
        out = -(-n // s)
        total = max(0, (out - 1) * s + k - n)
        small = total // 2
        if mode == "SAME_UPPER":
            begin.append(small)
            end.append(total - small)
        else:
            begin.append(total - small)
            end.append(small)
    return begin, end


def _rank4(x: np.ndarray, node: OpNode, what: str = "X") -> None:
    if x.ndim != 4:
        raise _unsup(node, f"{what} has rank {x.ndim}; op set 1 supports 2-D {node.op} only "
                     "(rank-4 N, C, H, W)")


def op_conv(inputs, attrs, node):
    x, w, b = _f(inputs[0], node, "X"), _f(inputs[1], node, "W"), inputs[2]
    _rank4(x, node)
    _rank4(w, node, "W")
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    g = attrs["group"]
    if attrs["kernel_shape"] is not None and list(attrs["kernel_shape"]) != [kh, kw]:
        raise _err(node, f"kernel_shape {attrs['kernel_shape']} differs from W {list(w.shape)}")
    if c != cg * g or m % g:
        raise _err(node, f"X has {c} channels and W is {list(w.shape)}: with group={g} need "
                   f"C == W.shape[1] * group and M divisible by group")
    s = attrs["strides"] or [1, 1]
    d = attrs["dilations"] or [1, 1]
    keff = [(kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1]
    pb, pe = _spatial_pads(node, attrs, (h, wd), keff, s)
    oh = (h + pb[0] + pe[0] - keff[0]) // s[0] + 1
    ow = (wd + pb[1] + pe[1] - keff[1]) // s[1] + 1
    if oh <= 0 or ow <= 0:
        raise _err(node, f"input {h}x{wd} is smaller than the dilated kernel {keff}")
    xp = np.zeros((n, c, h + pb[0] + pe[0], wd + pb[1] + pe[1]), F64)
    xp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + wd] = x
    xg = xp.reshape(n, g, cg, xp.shape[2], xp.shape[3])
    wg = w.astype(F64).reshape(g, m // g, cg, kh, kw)
    y = np.zeros((n, g, m // g, oh, ow), F64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * d[0], j * d[1]
            patch = xg[:, :, :, r0:r0 + s[0] * (oh - 1) + 1:s[0], c0:c0 + s[1] * (ow - 1) + 1:s[1]]
            y += np.einsum("ngchw,gmc->ngmhw", patch, wg[:, :, :, i, j])
    y = y.reshape(n, m, oh, ow)
    if b is not None:
        b = _f(b, node, "B")
        if b.shape != (m,):
            raise _err(node, f"B must have shape [{m}], got {list(b.shape)}")
        y = y + b.astype(F64)[None, :, None, None]
    return _out32(y)


def op_conv_transpose(inputs, attrs, node):
    x, w, b = _f(inputs[0], node, "X"), _f(inputs[1], node, "W"), inputs[2]
    _rank4(x, node)
    _rank4(w, node, "W")
    n, c, h, wd = x.shape
    cw, mg, kh, kw = w.shape
    g = attrs["group"]
    if attrs["kernel_shape"] is not None and list(attrs["kernel_shape"]) != [kh, kw]:
        raise _err(node, f"kernel_shape {attrs['kernel_shape']} differs from W {list(w.shape)}")
    if c != cw or c % g:
        raise _err(node, f"X has {c} channels, W is {list(w.shape)}, group={g}: need "
                   "C == W.shape[0], divisible by group")
    s = attrs["strides"] or [1, 1]
    d = attrs["dilations"] or [1, 1]
    op = attrs["output_padding"] or [0, 0]
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise _err(node, f"output_padding {op} must be smaller than the stride or dilation")
    p = [0, 0, 0, 0] if attrs["auto_pad"] == "VALID" else (attrs["pads"] or [0, 0, 0, 0])
    keff = [(kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1]
    full = [s[0] * (h - 1) + keff[0] + op[0], s[1] * (wd - 1) + keff[1] + op[1]]
    oh, ow = full[0] - p[0] - p[2], full[1] - p[1] - p[3]
    if oh <= 0 or ow <= 0:
        raise _err(node, f"pads {p} leave an empty output")
    cg = c // g
    xg = x.astype(F64).reshape(n, g, cg, h, wd)
    wg = w.astype(F64).reshape(g, cg, mg, kh, kw)
    y = np.zeros((n, g, mg, full[0], full[1]), F64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * d[0], j * d[1]
            y[:, :, :, r0:r0 + s[0] * (h - 1) + 1:s[0], c0:c0 + s[1] * (wd - 1) + 1:s[1]] += \
                np.einsum("ngchw,gcm->ngmhw", xg, wg[:, :, :, i, j])
    y = y.reshape(n, g * mg, full[0], full[1])[:, :, p[0]:p[0] + oh, p[1]:p[1] + ow]
    if b is not None:
        b = _f(b, node, "B")
        if b.shape != (g * mg,):
            raise _err(node, f"B must have shape [{g * mg}], got {list(b.shape)}")
        y = y + b.astype(F64)[None, :, None, None]
    return _out32(y)


def _pool_geometry(x, attrs, node):
    _rank4(x, node)
    h, wd = x.shape[2:]
    k = attrs["kernel_shape"]
    s = attrs["strides"] or [1, 1]
    d = attrs.get("dilations") or [1, 1]
    keff = [(k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1]
    pb, pe = _spatial_pads(node, attrs, (h, wd), keff, s)
    out = []
    for ax, n in enumerate((h, wd)):
        span = n + pb[ax] + pe[ax] - keff[ax]
        if span < 0:
            raise _err(node, f"input {h}x{wd} is smaller than the window {keff}")
        if attrs["ceil_mode"] and attrs["auto_pad"] == "NOTSET":
            o = -(-span // s[ax]) + 1
            if (o - 1) * s[ax] >= n + pb[ax]:   # last window must start inside input/left pad
                o -= 1
        else:
            o = span // s[ax] + 1
        out.append(o)
    return k, s, d, keff, pb, pe, out


def _pool_windows(xp, k, s, d, out):
    for i in range(k[0]):
        for j in range(k[1]):
            r0, c0 = i * d[0], j * d[1]
            yield xp[..., r0:r0 + s[0] * (out[0] - 1) + 1:s[0],
                     c0:c0 + s[1] * (out[1] - 1) + 1:s[1]]


def _padded(x, pb, need, fill):
    """x padded with ``fill``: pb before, enough after to hold ``need`` rows/cols."""
    n, c, h, w = x.shape
    xp = np.full((n, c, max(need[0], pb[0] + h), max(need[1], pb[1] + w)), fill, F64)
    xp[:, :, pb[0]:pb[0] + h, pb[1]:pb[1] + w] = x
    return xp


def op_maxpool(inputs, attrs, node):
    x = _f(inputs[0], node, "X")
    k, s, d, keff, pb, pe, out = _pool_geometry(x, attrs, node)
    need = [(out[a] - 1) * s[a] + keff[a] for a in (0, 1)]
    xp = _padded(x, pb, need, -np.inf)
    y = np.full(x.shape[:2] + tuple(out), -np.inf, F64)
    for win in _pool_windows(xp, k, s, d, out):
        y = np.maximum(y, win)
    return _out32(y)


def op_avgpool(inputs, attrs, node):
    x = _f(inputs[0], node, "X")
    k, s, d, keff, pb, pe, out = _pool_geometry(x, attrs, node)
    h, w = x.shape[2:]
    need = [(out[a] - 1) * s[a] + keff[a] for a in (0, 1)]
    xp = _padded(x, pb, need, 0.0)
    # divisor: real elements (count_include_pad=0) or elements inside the padded input
    mask = np.zeros((1, 1) + xp.shape[2:], F64)
    if attrs["count_include_pad"]:
        mask[..., :h + pb[0] + pe[0], :w + pb[1] + pe[1]] = 1.0
    else:
        mask[..., pb[0]:pb[0] + h, pb[1]:pb[1] + w] = 1.0
    total = np.zeros(x.shape[:2] + tuple(out), F64)
    count = np.zeros((1, 1) + tuple(out), F64)
    for win, mwin in zip(_pool_windows(xp, k, s, d, out), _pool_windows(mask, k, s, d, out)):
        total += win
        count += mwin
    return _out32(total / count)


def op_global_avgpool(inputs, attrs, node):
    x = _f(inputs[0], node, "X")
    if x.ndim < 3:
        raise _err(node, f"X must have rank >= 3, got {x.ndim}")
    return _out32(x.astype(F64).mean(axis=tuple(range(2, x.ndim)), keepdims=True))


def op_global_maxpool(inputs, attrs, node):
    x = _f(inputs[0], node, "X")
    if x.ndim < 3:
        raise _err(node, f"X must have rank >= 3, got {x.ndim}")
    return [x.max(axis=tuple(range(2, x.ndim)), keepdims=True)]


def op_batchnorm(inputs, attrs, node):
    x = _f(inputs[0], node, "X")
    if x.ndim < 2:
        raise _err(node, f"X must have rank >= 2, got {x.ndim}")
    c = x.shape[1]
    p = []
    for k, nm in enumerate(("scale", "B", "input_mean", "input_var"), 1):
        v = _f(inputs[k], node, nm)
        if v.shape != (c,):
            raise _err(node, f"{nm} must have shape [{c}], got {list(v.shape)}")
        p.append(v.astype(F64).reshape((c,) + (1,) * (x.ndim - 2)))
    scale, bias, mean, var = p
    y = (x.astype(F64) - mean) / np.sqrt(var + np.float64(np.float32(attrs["epsilon"])))
    return _out32(y * scale + bias)


# -- elementwise -------------------------------------------------------------------------------
def _unary_float(fn: Callable[[np.ndarray], np.ndarray]) -> Callable:
    def run(inputs, attrs, node):
        x = _f(inputs[0], node, "X")
        with np.errstate(all="ignore"):
            return _out32(fn(x.astype(F64)))
    return run


def _gelu(x):
    return 0.5 * x * (1.0 + _erf64(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def op_gelu(inputs, attrs, node):
    x = _f(inputs[0], node, "X").astype(F64)
    with np.errstate(all="ignore"):
        return _out32(_gelu(x) if attrs["approximate"] == "none" else _gelu_tanh(x))


def op_relu(inputs, attrs, node):
    x = _num(inputs[0], node, "X")
    return [np.asarray(np.maximum(x, x.dtype.type(0)))]


def op_leaky_relu(inputs, attrs, node):
    x = _f(inputs[0], node, "X")
    return [np.where(x >= 0, x, x * np.float32(attrs["alpha"])).astype(F32)]


def op_neg(inputs, attrs, node):
    x = _num(inputs[0], node, "X")
    if x.dtype.kind == "u":
        raise _err(node, f"Neg of unsigned {x.dtype}")
    return [np.asarray(np.negative(x))]


def op_abs(inputs, attrs, node):
    x = _num(inputs[0], node, "X")
    return [np.asarray(np.abs(x))]


def op_hard_sigmoid(inputs, attrs, node):
    x = _f(inputs[0], node, "X")
    a, b = np.float32(attrs["alpha"]), np.float32(attrs["beta"])
    return _out32(np.clip(a * x + b, 0, 1))


def op_hard_swish(inputs, attrs, node):
    x = _f(inputs[0], node, "X").astype(F64)
    return _out32(x * np.clip(x / 6.0 + 0.5, 0.0, 1.0))


def op_clip(inputs, attrs, node):
    x = _num(inputs[0], node, "X")
    y = x
    for k, fn in ((1, np.maximum), (2, np.minimum)):
        if inputs[k] is not None:
            v = _num(_scalar(inputs[k], node, "min" if k == 1 else "max"), node)
            if v.dtype != x.dtype:
                raise _err(node, f"bound dtype {v.dtype} differs from X dtype {x.dtype}")
            y = fn(y, v)
    return [np.asarray(y, dtype=x.dtype)]


def _binary(fn: Callable, name: str) -> Callable:
    def run(inputs, attrs, node):
        a, b = _same(inputs[0], inputs[1], node)
        with np.errstate(all="ignore"):
            return [np.asarray(fn(a, b, node), dtype=a.dtype)]
    run.__name__ = f"op_{name}"
    return run


def _div(a, b, node):
    if _is_float(a):
        return a / b
    if np.any(b == 0):
        raise _err(node, "integer division by zero")
    q = a // b                          # floor; ONNX integer Div truncates toward zero
    return q + ((q < 0) & (q * b != a)).astype(a.dtype)


def op_pow(inputs, attrs, node):
    a, b = _num(inputs[0], node, "X"), _num(inputs[1], node, "Y")
    with np.errstate(all="ignore"):
        if _is_float(a):
            return _out32(np.power(a.astype(F64), b.astype(F64)))
        if _is_float(b):
            raise _unsup(node, "integer base with a float exponent is not supported")
        if np.any(b < 0):
            raise _err(node, "integer Pow with a negative exponent")
        return [np.power(a, b.astype(a.dtype)).astype(a.dtype)]


def _compare(fn: Callable) -> Callable:
    def run(inputs, attrs, node):
        a, b = inputs[0], inputs[1]
        if a.dtype == np.bool_ and b.dtype == np.bool_ and fn is np.equal:
            return [np.asarray(np.equal(a, b))]
        with np.errstate(over="ignore"):     # f64 beyond the f32 range converts to +-inf
            a, b = _same(a, b, node)
        return [np.asarray(fn(a, b))]        # (0-d operands: an array, not a numpy scalar)
    return run


def op_not(inputs, attrs, node):
    x = inputs[0]
    if x.dtype != np.bool_:
        raise _err(node, f"Not needs a bool tensor, got {x.dtype}")
    return [np.asarray(np.logical_not(x))]


def _logical(fn: Callable) -> Callable:
    def run(inputs, attrs, node):
        for k in (0, 1):
            if inputs[k].dtype != np.bool_:
                raise _err(node, f"input {k} must be a bool tensor, got {inputs[k].dtype}")
        return [np.asarray(fn(inputs[0], inputs[1]))]
    return run


def _float_any(x: np.ndarray, node: OpNode) -> np.ndarray:
    """A float operand in its own width (f16/f32/f64; IsNaN / IsInf must not round f64)."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        raise _err(node, f"X must be a float tensor, got {getattr(x, 'dtype', type(x))}")
    return x


def op_isnan(inputs, attrs, node):
    return [np.asarray(np.isnan(_float_any(inputs[0], node)))]


def op_isinf(inputs, attrs, node):
    x = _float_any(inputs[0], node)
    y = np.zeros(x.shape, np.bool_)
    if attrs["detect_positive"]:
        y |= np.isposinf(x)
    if attrs["detect_negative"]:
        y |= np.isneginf(x)
    return [y]


def _min_max(fn: Callable) -> Callable:
    def run(inputs, attrs, node):
        with np.errstate(over="ignore"):     # f64 beyond the f32 range converts to +-inf
            xs = [_num(x, node, f"input {k}") for k, x in enumerate(inputs) if x is not None]
        if not xs:
            raise _err(node, "needs at least one input")
        for x in xs[1:]:
            if x.dtype != xs[0].dtype:
                raise _err(node, f"operand dtypes differ: {xs[0].dtype} and {x.dtype}")
        try:
            shape = np.broadcast_shapes(*(x.shape for x in xs))
        except ValueError:
            raise _err(node, "shapes " + ", ".join(str(list(x.shape)) for x in xs)
                       + " do not broadcast") from None
        y = np.broadcast_to(xs[0], shape)
        for x in xs[1:]:
            y = fn(y, x)          # numpy: a NaN operand gives NaN
        return [np.array(y, dtype=xs[0].dtype)]
    return run


def op_where(inputs, attrs, node):
    c, x, y = inputs
    if c.dtype != np.bool_:
        raise _err(node, f"condition must be bool, got {c.dtype}")
    if x.dtype.kind == "f" and y.dtype.kind == "f":
        x, y = x.astype(F32, copy=False), y.astype(F32, copy=False)
    if x.dtype != y.dtype:
        raise _err(node, f"X and Y dtypes differ: {x.dtype} and {y.dtype}")
    return [np.where(c, x, y)]


def op_softmax(inputs, attrs, node):
    x = _f(inputs[0], node, "X").astype(F64)
    ax = _axis(attrs["axis"], x.ndim, node)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=ax, keepdims=True))
        return _out32(e / e.sum(axis=ax, keepdims=True))


def op_layernorm(inputs, attrs, node):
    x = _f(inputs[0], node, "X").astype(F64)
    ax = _axis(attrs["axis"], x.ndim, node)
    axes = tuple(range(ax, x.ndim))
    norm_shape = x.shape[ax:]
    scale = _f(inputs[1], node, "Scale").astype(F64)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.float64(np.float32(attrs["epsilon"])))
    for v, nm in ((scale, "Scale"), (inputs[2], "B")):
        if v is None:
            continue
        if np.broadcast_shapes(v.shape, norm_shape) != tuple(norm_shape):
            raise _err(node, f"{nm} {list(v.shape)} does not broadcast to {list(norm_shape)}")
    y = y * scale
    if inputs[2] is not None:
        y = y + _f(inputs[2], node, "B").astype(F64)
    return _out32(y)


# -- reductions --------------------------------------------------------------------------------
def _reduce_axes(inputs, attrs, node, rank) -> tuple[int, ...] | None:
    """Axes to reduce; None = no-op (noop_with_empty_axes with empty axes)."""
    if attrs["axes"] is not None:
        axes = list(attrs["axes"])
    elif inputs[1] is not None:
        axes = _ints(inputs[1], node, "axes")
    else:
        axes = []
    if not axes:
        return None if attrs["noop_with_empty_axes"] else tuple(range(rank))
    return tuple(_axes(axes, rank, node))


def _reduce(kind: str) -> Callable:
    def run(inputs, attrs, node):
        x = inputs[0]
        x = _f(x, node, "X") if kind == "mean" else _num(x, node, "X")
        axes = _reduce_axes(inputs, attrs, node, x.ndim)
        if axes is None:
            return [x]
        keep = bool(attrs["keepdims"])
        if kind == "max":
            if any(x.shape[a] == 0 for a in axes):
                raise _err(node, "ReduceMax over an empty axis")
            return [np.asarray(np.max(x, axis=axes, keepdims=keep))]
        if kind == "sum":
            if _is_float(x):
                return _out32(np.sum(x.astype(F64), axis=axes, keepdims=keep))
            return [np.asarray(np.sum(x, axis=axes, keepdims=keep, dtype=x.dtype))]
        with np.errstate(all="ignore"):
            return _out32(np.mean(x.astype(F64), axis=axes, keepdims=keep))
    return run


def op_argmax(inputs, attrs, node):
    x = _num(inputs[0], node, "X")
    ax = _axis(attrs["axis"], x.ndim, node)
    if x.shape[ax] == 0:
        raise _err(node, "ArgMax over an empty axis")
    if attrs["select_last_index"]:
        idx = x.shape[ax] - 1 - np.argmax(np.flip(x, axis=ax), axis=ax)
    else:
        idx = np.argmax(x, axis=ax)
    idx = idx.astype(I64)
    return [np.expand_dims(idx, ax) if attrs["keepdims"] else idx]


# -- data movement -----------------------------------------------------------------------------
def op_concat(inputs, attrs, node):
    xs = [x for x in inputs if x is not None]
    if not xs:
        raise _err(node, "no inputs")
    dts = {x.dtype for x in xs}
    if len(dts) > 1:
        raise _err(node, f"inputs have different dtypes {sorted(map(str, dts))}")
    rank = xs[0].ndim
    if any(x.ndim != rank for x in xs) or rank == 0:
        raise _err(node, f"inputs must share one rank >= 1, got {[x.ndim for x in xs]}")
    ax = _axis(attrs["axis"], rank, node)
    return [np.concatenate(xs, axis=ax)]


def op_split(inputs, attrs, node):
    x = inputs[0]
    ax = _axis(attrs["axis"], x.ndim, node)
    dim, n = x.shape[ax], len(node.outputs)
    if inputs[1] is not None:
        sizes = _ints(inputs[1], node, "split")
        if len(sizes) != n or any(v < 0 for v in sizes) or sum(sizes) != dim:
            raise _err(node, f"split {sizes} must be {n} non-negative sizes summing to {dim}")
    elif attrs["num_outputs"] is not None:
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        if sizes[-1] < 0:
            raise _err(node, f"cannot split {dim} into {n} chunks of {chunk}")
    else:
        if dim % n:
            raise _err(node, f"axis of size {dim} does not split evenly into {n} outputs")
        sizes = [dim // n] * n
    bounds = np.cumsum([0] + sizes)
    return [np.take(x, np.arange(bounds[i], bounds[i + 1]), axis=ax) for i in range(n)]


def op_slice(inputs, attrs, node):
    x = inputs[0]
    starts = _ints(inputs[1], node, "starts")
    ends = _ints(inputs[2], node, "ends")
    r = x.ndim
    axes = _ints(inputs[3], node, "axes") if inputs[3] is not None else list(range(len(starts)))
    steps = _ints(inputs[4], node, "steps") if inputs[4] is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise _err(node, "starts, ends, axes and steps must have the same length")
    axes = _axes(axes, r, node)
    sl = [slice(None)] * r
    for a, st, en, sp in zip(axes, starts, ends, steps):
        dim = x.shape[a]
        if sp == 0:
            raise _err(node, "step 0")
        st = st + dim if st < 0 else st
        en = en + dim if en < 0 else en
        if sp > 0:
            st, en = min(max(st, 0), dim), min(max(en, 0), dim)
            sl[a] = slice(st, en, sp)
        else:
            st, en = min(max(st, 0), dim - 1), min(max(en, -1), dim - 1)
            sl[a] = slice(st, None if en < 0 else en, sp)
    return [x[tuple(sl)].copy()]


def op_reshape(inputs, attrs, node):
    x = inputs[0]
    shape = _ints(inputs[1], node, "shape")
    allowzero = attrs["allowzero"]
    if allowzero and 0 in shape and -1 in shape:
        raise _err(node, "allowzero=1 forbids 0 together with -1")
    if shape.count(-1) > 1 or any(v < -1 for v in shape):
        raise _err(node, f"shape {shape}: at most one -1 and no other negative values")
    out = []
    for i, v in enumerate(shape):
        if v == 0 and not allowzero:
            if i >= x.ndim:
                raise _err(node, f"shape {shape}: 0 at position {i} copies a dim X lacks")
            v = x.shape[i]
        out.append(v)
    if -1 in out:
        rest = math.prod(v for v in out if v != -1)
        if rest == 0 or x.size % rest:
            raise _err(node, f"cannot reshape {list(x.shape)} to {shape}")
        out[out.index(-1)] = x.size // rest
    if math.prod(out) != x.size:
        raise _err(node, f"cannot reshape {list(x.shape)} ({x.size} elements) to {out}")
    return [x.reshape(out)]


def op_flatten(inputs, attrs, node):
    x = inputs[0]
    a = attrs["axis"]
    if not -x.ndim <= a <= x.ndim:
        raise _err(node, f"axis {a} out of range for rank {x.ndim}")
    a = a + x.ndim if a < 0 else a
    return [x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))]


def op_transpose(inputs, attrs, node):
    x = inputs[0]
    perm = attrs["perm"]
    if perm is None:
        perm = list(range(x.ndim))[::-1]
    if sorted(perm) != list(range(x.ndim)):
        raise _err(node, f"perm {perm} is not a permutation of {x.ndim} axes")
    return [np.ascontiguousarray(np.transpose(x, perm))]


def op_squeeze(inputs, attrs, node):
    x = inputs[0]
    if inputs[1] is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = _axes(_ints(inputs[1], node, "axes"), x.ndim, node)
    for a in axes:
        if x.shape[a] != 1:
            raise _err(node, f"cannot squeeze axis {a} of size {x.shape[a]}")
    return [np.squeeze(x, axis=tuple(axes))]


def op_unsqueeze(inputs, attrs, node):
    x = inputs[0]
    axes = _ints(inputs[1], node, "axes")
    r = x.ndim + len(axes)
    axes = sorted(_axes(axes, r, node))
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return [x.reshape(shape)]


def op_gather(inputs, attrs, node):
    x, idx = inputs
    if idx.dtype not in (np.dtype(np.int32), I64):
        raise _err(node, f"indices must be int32 or int64, got {idx.dtype}")
    if x.ndim == 0:
        raise _err(node, "data must have rank >= 1")
    ax = _axis(attrs["axis"], x.ndim, node)
    dim = x.shape[ax]
    idx = idx.astype(I64)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise _err(node, f"index out of range [{-dim}, {dim - 1}]")
    # np.asarray: a 0-d index into a 1-D tensor gives a numpy scalar, not an array
    return [np.asarray(np.take(x, np.where(idx < 0, idx + dim, idx), axis=ax))]


def _resize_coord(xo, scale, n_in, n_out, mode):
    """Output index array -> source coordinate (float64), ONNX coordinate transforms."""
    if mode == "half_pixel":
        return (xo + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (xo + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(xo)
    if mode == "align_corners":
        return xo * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(xo)
    return xo / scale                                   # asymmetric


def _nearest_index(c, mode):
    if mode == "round_prefer_floor":
        return np.ceil(c - 0.5)
    if mode == "round_prefer_ceil":
        return np.floor(c + 0.5)
    if mode == "floor":
        return np.floor(c)
    return np.ceil(c)


def op_resize(inputs, attrs, node):
    x, _roi, scales, sizes = inputs
    r = x.ndim
    if scales is not None and scales.size > 0 and sizes is not None:
        raise _err(node, "'scales' and 'sizes' are mutually exclusive")
    if scales is not None and scales.size > 0:
        if scales.dtype.kind != "f" or scales.shape != (r,):
            raise _err(node, f"scales must be float of shape [{r}]")
        sc = [float(v) for v in scales.astype(F32)]
        if any(not v > 0 or not math.isfinite(v) for v in sc):
            raise _err(node, f"scales {sc} must be positive and finite")
        out = [int(math.floor(n * s)) for n, s in zip(x.shape, sc)]
    else:
        if sizes is None:
            raise _err(node, "one of scales or sizes is required")
        out = _ints(sizes, node, "sizes")
        if len(out) != r or any(v <= 0 for v in out):
            raise _err(node, f"sizes {out} must be {r} positive values")
        sc = [o / n if n else 1.0 for o, n in zip(out, x.shape)]
    _cap(math.prod(out), node)
    if 0 in x.shape and math.prod(out):
        raise _err(node, "cannot resize an empty tensor")
    mode, ctm = attrs["mode"], attrs["coordinate_transformation_mode"]
    if mode == "linear":
        y = _f(x, node, "X").astype(F64)
    else:
        y = x
    for ax in range(r):
        n_in, n_out, s = x.shape[ax], out[ax], sc[ax]
        if n_in == n_out and s == 1.0:
            continue
        c = _resize_coord(np.arange(n_out, dtype=F64), s, n_in, n_out, ctm)
        if mode == "nearest":
            idx = np.clip(_nearest_index(c, attrs["nearest_mode"]), 0, n_in - 1).astype(I64)
            y = np.take(y, idx, axis=ax)
        else:
            x0 = np.floor(c)
            wgt = c - x0
            i0 = np.clip(x0, 0, n_in - 1).astype(I64)
            i1 = np.clip(x0 + 1, 0, n_in - 1).astype(I64)
            shp = [1] * r
            shp[ax] = n_out
            wgt = wgt.reshape(shp)
            y = np.take(y, i0, axis=ax) * (1 - wgt) + np.take(y, i1, axis=ax) * wgt
    return _out32(y) if mode == "linear" else [np.ascontiguousarray(y)]


def cast_array(x: np.ndarray, to: str) -> np.ndarray:
    """Cast with op set 1's rules: float -> int truncates toward zero, saturates to the
    target range and maps NaN to 0; float -> bool is x != 0; other casts as numpy/C."""
    dt = TENSOR_DTYPES[to]
    if x.dtype.kind == "f" and dt.kind in "iu":
        info = np.iinfo(dt)
        with np.errstate(all="ignore"):
            t = np.asarray(np.trunc(x.astype(F64)))
            t[np.isnan(t)] = 0.0
            low, high = t <= info.min, t >= float(info.max)  # float(int64 max) is 2**63
            out = np.where(low | high, 0.0, t).astype(dt)
        out = np.asarray(out)
        out[low] = info.min
        out[high] = info.max
        return out
    if dt == np.bool_:
        return np.asarray(x != 0)
    with np.errstate(all="ignore"):
        return x.astype(dt)


def op_cast(inputs, attrs, node):
    return [cast_array(inputs[0], attrs["to"])]


def op_shape(inputs, attrs, node):
    shp = list(inputs[0].shape)
    r = len(shp)
    st, en = attrs["start"], attrs["end"]
    st = min(max(st + r if st < 0 else st, 0), r)
    en = r if en is None else min(max(en + r if en < 0 else en, 0), r)
    return [np.array(shp[st:en], dtype=I64)]


def op_identity(inputs, attrs, node):
    return [inputs[0]]


def op_expand(inputs, attrs, node):
    x = inputs[0]
    shape = _ints(inputs[1], node, "shape")
    if any(v < 0 for v in shape):
        raise _err(node, f"shape {shape} has a negative dim")
    try:
        out = np.broadcast_shapes(x.shape, tuple(shape))
    except ValueError:
        raise _err(node, f"X {list(x.shape)} does not broadcast with {shape}") from None
    _cap(math.prod(out), node)
    return [np.broadcast_to(x, out).copy()]


def op_constant_of_shape(inputs, attrs, node):
    shape = _ints(inputs[0], node, "shape")
    if any(v < 0 for v in shape):
        raise _err(node, f"shape {shape} has a negative dim")
    _cap(math.prod(shape), node)
    val = cast_array(np.array(attrs["value"], F64), attrs["dtype"])
    return [np.full(shape, val, dtype=TENSOR_DTYPES[attrs["dtype"]])]


def op_range(inputs, attrs, node):
    st, lim, dl = (_scalar(inputs[k], node, n) for k, n in enumerate(("start", "limit", "delta")))
    st, lim, dl = (_num(v, node) for v in (st, lim, dl))
    if not st.dtype == lim.dtype == dl.dtype:
        raise _err(node, "start, limit and delta must have one dtype")
    if dl == 0:
        raise _err(node, "delta is 0")
    if _is_float(st):
        s, li, d = float(st), float(lim), float(dl)
        n = max(int(math.ceil((li - s) / d)), 0)
        _cap(n, node)
        return _out32(np.float32(s) + np.arange(n, dtype=F64) * np.float32(d))
    s, li, d = int(st), int(lim), int(dl)
    n = max(-(-(li - s) // d), 0)
    _cap(n, node)
    return [(s + np.arange(n, dtype=I64) * d).astype(st.dtype)]


def op_tile(inputs, attrs, node):
    x = inputs[0]
    reps = _ints(inputs[1], node, "repeats")
    if len(reps) != x.ndim or any(v < 0 for v in reps):
        raise _err(node, f"repeats {reps} must be {x.ndim} non-negative values")
    _cap(x.size * math.prod(reps), node)
    return [np.tile(x, reps)]


def op_pad(inputs, attrs, node):
    x, pads_t, cval, axes_t = inputs
    r = x.ndim
    axes = _axes(_ints(axes_t, node, "axes"), r, node) if axes_t is not None else list(range(r))
    pads = _ints(pads_t, node, "pads")
    if len(pads) != 2 * len(axes):
        raise _err(node, f"pads has {len(pads)} values, needs {2 * len(axes)}")
    before, after = [0] * r, [0] * r
    for i, a in enumerate(axes):
        before[a], after[a] = pads[i], pads[i + len(axes)]
    for a in range(r):
        if x.shape[a] + before[a] + after[a] < 0:
            raise _err(node, f"negative pads crop more than axis {a} holds")
    sl = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0))
               for a, (b, e) in enumerate(zip(before, after)))
    x = x[sl]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(before, after)]
    _cap(math.prod(d + b + e for d, (b, e) in zip(x.shape, widths)), node)
    v = 0
    if cval is not None:
        cv = _scalar(cval, node, "constant_value")
        if cv.dtype != x.dtype and not (cv.dtype.kind == x.dtype.kind == "f"):
            raise _err(node, f"constant_value dtype {cv.dtype} differs from X {x.dtype}")
        v = cv.astype(x.dtype)
    return [np.pad(x, widths, mode="constant", constant_values=v)]


# -- quantization ------------------------------------------------------------------------------
def _q_params(x, scale, zp, axis, node, what):
    scale = _f(scale, node, "scale")
    if scale.ndim > 1:
        raise _err(node, "scale must be a scalar or 1-D")
    if zp is not None and zp.shape != scale.shape:
        raise _err(node, f"zero_point shape {list(zp.shape)} differs from scale "
                   f"{list(scale.shape)}")
    shape = [1] * x.ndim
    if scale.ndim == 1 and not (scale.size == 1 and x.ndim == 0):
        ax = _axis(axis, x.ndim, node)
        if scale.shape[0] != x.shape[ax]:
            raise _err(node, f"per-axis scale has {scale.shape[0]} values, axis {ax} of {what} "
                       f"has {x.shape[ax]}")
        shape[ax] = x.shape[ax]
    return scale.reshape(shape), (zp.reshape(shape) if zp is not None else None)


_QRANGE = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def quantize(x32: np.ndarray, scale32: np.ndarray, zp: np.ndarray, dt: np.dtype) -> np.ndarray:
    """saturate(round_half_even(x / scale) + zero_point); x / scale in float32, NaN -> 0."""
    lo, hi = _QRANGE[dt]
    with np.errstate(all="ignore"):
        q = np.rint(np.divide(x32, scale32, dtype=F32)).astype(F64)
    q = np.where(np.isnan(q), 0.0, q) + zp.astype(F64)
    return np.asarray(np.clip(q, lo, hi).astype(dt))


def op_quantize(inputs, attrs, node):
    x, scale, zp = _f(inputs[0], node, "x"), inputs[1], inputs[2]
    if zp is not None and zp.dtype not in _QRANGE:
        raise _unsup(node, f"zero_point dtype {zp.dtype} (op set 1: uint8 or int8)")
    s, z = _q_params(x, scale, zp, attrs["axis"], node, "x")
    if z is None:
        z = np.zeros_like(s, dtype=np.uint8)
    return [quantize(x, s, z, z.dtype)]


def op_dequantize(inputs, attrs, node):
    x, scale, zp = inputs
    if x.dtype not in (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.int32)):
        raise _unsup(node, f"x dtype {x.dtype} (op set 1: uint8, int8, int32)")
    if zp is not None and zp.dtype != x.dtype:
        raise _err(node, f"zero_point dtype {zp.dtype} differs from x {x.dtype}")
    s, z = _q_params(x, scale, zp, attrs["axis"], node, "x")
    xi = x.astype(np.int64) - (z.astype(np.int64) if z is not None else 0)
    return [(xi.astype(F32) * s).astype(F32)]


def op_dynamic_quantize(inputs, attrs, node):
    x = _f(inputs[0], node, "x")
    rmin = min(float(x.min()) if x.size else 0.0, 0.0)
    rmax = max(float(x.max()) if x.size else 0.0, 0.0)
    scale = np.float32((np.float32(rmax) - np.float32(rmin)) / np.float32(255))
    if scale == 0:
        return [np.zeros(x.shape, np.uint8), np.array(scale, F32), np.array(0, np.uint8)]
    zp = quantize(np.array(-rmin, F32), np.array(scale, F32), np.array(0.0), np.dtype(np.uint8))
    return [quantize(x, np.array(scale, F32), zp, np.dtype(np.uint8)), np.array(scale, F32),
            np.array(zp, np.uint8)]


OP_IMPLS: dict[str, Callable] = {
    "Gemm": op_gemm, "MatMul": op_matmul, "Linear": op_linear,
    "Conv": op_conv, "ConvTranspose": op_conv_transpose,
    "MaxPool": op_maxpool, "AveragePool": op_avgpool,
    "GlobalAveragePool": op_global_avgpool, "GlobalMaxPool": op_global_maxpool,
    "BatchNormalization": op_batchnorm,
    "Relu": op_relu, "LeakyRelu": op_leaky_relu, "Clip": op_clip,
    "Sigmoid": _unary_float(lambda x: 1.0 / (1.0 + np.exp(-x))),
    "Tanh": _unary_float(np.tanh),
    "HardSigmoid": op_hard_sigmoid, "HardSwish": op_hard_swish, "Gelu": op_gelu,
    "Erf": _unary_float(_erf64),
    "Softmax": op_softmax, "LayerNormalization": op_layernorm,
    "Add": _binary(lambda a, b, n: a + b, "add"),
    "Sub": _binary(lambda a, b, n: a - b, "sub"),
    "Mul": _binary(lambda a, b, n: a * b, "mul"),
    "Div": _binary(_div, "div"),
    "Pow": op_pow,
    "Sqrt": _unary_float(np.sqrt), "Exp": _unary_float(np.exp), "Log": _unary_float(np.log),
    "Neg": op_neg, "Abs": op_abs, "Not": op_not,
    "Equal": _compare(np.equal), "Less": _compare(np.less), "Greater": _compare(np.greater),
    "LessOrEqual": _compare(np.less_equal), "GreaterOrEqual": _compare(np.greater_equal),
    "And": _logical(np.logical_and), "Or": _logical(np.logical_or),
    "Xor": _logical(np.logical_xor), "IsNaN": op_isnan, "IsInf": op_isinf,
    "Min": _min_max(np.minimum), "Max": _min_max(np.maximum),
    "Where": op_where,
    "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"), "ReduceMax": _reduce("max"),
    "ArgMax": op_argmax,
    "Concat": op_concat, "Split": op_split, "Slice": op_slice, "Reshape": op_reshape,
    "Flatten": op_flatten, "Transpose": op_transpose, "Squeeze": op_squeeze,
    "Unsqueeze": op_unsqueeze, "Gather": op_gather, "Resize": op_resize, "Cast": op_cast,
    "Shape": op_shape, "Identity": op_identity, "Expand": op_expand,
    "ConstantOfShape": op_constant_of_shape, "Range": op_range, "Tile": op_tile, "Pad": op_pad,
    "QuantizeLinear": op_quantize, "DequantizeLinear": op_dequantize,
    "DynamicQuantizeLinear": op_dynamic_quantize,
}


class ReferenceBackend(Backend):
    """Plain numpy; the oracle of every other backend."""

    name = "reference"

    def op(self, op: str) -> Callable:
        fn = OP_IMPLS.get(op)
        if fn is None:
            raise UnsupportedError(f"backend {self.name!r} does not implement op {op!r}")
        return fn
