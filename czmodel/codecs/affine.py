"""``affine``: integer quantization, w = (q - zero_point) * scale.

Scale (and optional zero point) is per tensor, per channel along ``axis`` or per group of
``group_size`` consecutive columns of the 2-D view. ``q`` holds the low ``bits`` bits of
each quantized value (two's complement of that width when ``signed``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from czmodel.codecs import _util as U
from czmodel.codecs.base import (
    Codec,
    DecodeContext,
    Node,
    NodeDesc,
    Role,
    check_builder_shape,
    expect_n,
    param_bool,
    param_int,
    register,
    view2d,
)
from czmodel.errors import EncodeError, FormatError
from czmodel.format import limits as L


def _mode(node: NodeDesc) -> tuple[int, bool, int | None, int | None]:
    bits = param_int(node, "bits", 2, 8)
    signed = param_bool(node, "signed")
    axis = param_int(node, "axis", 0, len(node.shape) - 1, optional=True)
    group = param_int(node, "group_size", 1, L.MAX_DIM, optional=True)
    if axis is not None and group is not None:
        raise FormatError("affine: params 'axis' and 'group_size' are mutually exclusive",
                          path=node.path)
    return bits, signed, axis, group


def scale_count(shape: tuple[int, ...], axis: int | None, group: int | None) -> int:
    if axis is not None:
        return shape[axis]
    if group is not None:
        rows, cols = view2d(shape)
        return rows * (-(-cols // group))
    return 1


@register
class Affine(Codec):
    name = "affine"
    roles = {"q": Role(("u8",), symbols=True),
             "scale": Role(("f32", "f16")),
             "zero_point": Role(("u8",), required=False, symbols=True)}
    params = ("bits", "signed", "axis", "group_size")

    def check(self, node: NodeDesc) -> None:
        bits, _, axis, group = _mode(node)
        U.expect_bits(node, "q", bits)
        expect_n(node, "q", node.size)
        n = scale_count(node.shape, axis, group)
        expect_n(node, "scale", n)
        if "zero_point" in node.streams:
            U.expect_bits(node, "zero_point", bits)
            expect_n(node, "zero_point", n)

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        bits, signed, axis, group = _mode(node)
        q = U.get_index(ctx, node, "q")
        scale = U.get_floats(ctx, node, "scale")
        zp = U.get_index(ctx, node, "zero_point") if ctx.has(node, "zero_point") else None
        if ctx.reference:
            with np.errstate(all="ignore"):   # a huge scale overflowing to inf is a value
                out = _reference(node.shape, q, scale, zp, bits, signed, axis, group)
        else:
            out = np.empty(node.size, np.float32)
            has_zp = zp is not None
            zpa = zp if has_zp else np.zeros(0, np.uint8)
            if group is not None:
                rows, cols = view2d(node.shape)
                _affine_group(q, zpa, has_zp, scale, rows, cols, group, bits, signed, out)
            else:
                outer, c, inner = _split(node.shape, axis)
                _affine_channel(q, zpa, has_zp, scale, outer, c, inner, bits, signed, out)
        return out.reshape(node.shape)


def _split(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    """(outer, channels, inner) view of a flat row-major tensor for a per-channel axis."""
    if axis is None:
        return 1, 1, math.prod(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _sext(v: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    v = v.astype(np.int32)
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v


def _reference(shape, q, scale, zp, bits, signed, axis, group) -> np.ndarray:
    qi = _sext(q, bits, signed)
    zi = _sext(zp, bits, signed) if zp is not None else np.zeros(scale.shape, np.int32)
    if group is not None:
        rows, cols = view2d(shape)
        ng = -(-cols // group)
        col_group = np.arange(cols) // group
        s = scale.reshape(rows, ng)[:, col_group]
        z = zi.reshape(rows, ng)[:, col_group]
        w = (qi.reshape(rows, cols) - z).astype(np.float32) * s
    else:
        outer, c, inner = _split(shape, axis)
        w = ((qi.reshape(outer, c, inner) - zi.reshape(1, c, 1)).astype(np.float32)
             * scale.reshape(1, c, 1))
    return np.ascontiguousarray(w, dtype=np.float32).reshape(-1)


@njit(cache=True)
def _affine_channel(q, zp, has_zp, scale, outer, nch, inner, bits, signed, out):  # pragma: no cover
    half = 1 << (bits - 1)
    full = 1 << bits
    i = 0
    for _o in range(outer):
        for c in range(nch):
            s = scale[c]
            z = 0
            if has_zp:
                z = np.int32(zp[c])
                if signed and z >= half:
                    z -= full
            for _j in range(inner):
                v = np.int32(q[i])
                if signed and v >= half:
                    v -= full
                out[i] = np.float32(v - z) * s
                i += 1


@njit(cache=True)
def _affine_group(q, zp, has_zp, scale, rows, cols, g, bits, signed, out):  # pragma: no cover
    half = 1 << (bits - 1)
    full = 1 << bits
    ng = (cols + g - 1) // g
    for r in range(rows):
        for gi in range(ng):
            k = r * ng + gi
            s = scale[k]
            z = 0
            if has_zp:
                z = np.int32(zp[k])
                if signed and z >= half:
                    z -= full
            c0 = gi * g
            c1 = min(c0 + g, cols)
            for c in range(c0, c1):
                i = r * cols + c
                v = np.int32(q[i])
                if signed and v >= half:
                    v -= full
                out[i] = np.float32(v - z) * s


# ----------------------------------------------------------------------------- builder


def _ints(x, what: str, bits: int, signed: bool) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise EncodeError(f"affine: {what} must be an integer array, got dtype {a.dtype}")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if a.size:
        mn, mx = int(a.min()), int(a.max())
        if mn < lo or mx > hi:
            kind = "signed" if signed else "unsigned"
            raise EncodeError(f"affine: {what} values span [{mn}, {mx}], outside the "
                              f"{kind} {bits}-bit range [{lo}, {hi}]")
    return a


def affine(q, scale, zero_point=None, *, bits: int = 8, signed: bool = True,
           axis: int | None = None, group_size: int | None = None,
           entropy: str = "auto") -> Node:
    """Store already-quantized integers ``q`` (the tensor's shape) with their scales.

    ``scale``/``zero_point`` hold 1 value (per tensor), ``shape[axis]`` values (per
    channel) or ``rows * ceil(cols / group_size)`` values (per group, row-major); any array
    shape with that many elements is accepted. A float16 ``scale`` is stored as "f16",
    anything else as "f32".
    """
    bits = U.need_int(bits, "affine: bits", 2, 8)
    if not isinstance(signed, (bool, np.bool_)):
        raise EncodeError(f"affine: signed must be a bool, got {signed!r}")
    signed = bool(signed)
    qa = _ints(q, "q", bits, signed)
    shape = check_builder_shape(qa.shape)
    axis = U.need_axis(axis, len(shape), "affine: axis")
    if group_size is not None:
        group_size = U.need_int(group_size, "affine: group_size", 1, L.MAX_DIM)
    if axis is not None and group_size is not None:
        raise EncodeError("affine: axis and group_size are mutually exclusive")
    n = scale_count(shape, axis, group_size)
    sa = U.need_float_array(scale, "affine: scale")
    if sa.size != n:
        raise EncodeError(f"affine: scale has {sa.size} values, expected {n}")
    sdt = "f16" if sa.dtype == np.float16 else "f32"
    mask = (1 << bits) - 1
    streams = {"q": U.symbol_stream(qa.reshape(-1).astype(np.int64) & mask, bits, "weight",
                                    entropy),
               "scale": U.float_stream(sa, sdt, "affine: scale", entropy)}
    if zero_point is not None:
        za = _ints(zero_point, "zero_point", bits, signed)
        if za.size != n:
            raise EncodeError(f"affine: zero_point has {za.size} values, expected {n}")
        streams["zero_point"] = U.symbol_stream(za.reshape(-1).astype(np.int64) & mask, bits,
                                                "weight", entropy)
    params: dict = {"bits": bits, "signed": signed}
    if axis is not None:
        params["axis"] = axis
    if group_size is not None:
        params["group_size"] = group_size
    return Node("affine", shape, params, streams)
