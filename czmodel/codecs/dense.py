"""``dense``: the tensor's elements stored as they are, in one stream.

Lossless for f32/f16/int/bool tensors; ``bf16`` halves f32 storage by keeping the top 16
bits (round to nearest even at write time), decoded back to f32.
"""

from __future__ import annotations

import numpy as np

from czmodel.codecs.base import (
    Codec,
    DecodeContext,
    Node,
    NodeDesc,
    Role,
    Stream,
    expect_n,
    register,
)
from czmodel.errors import EncodeError

DENSE_DTYPES = ("f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "u16", "u32")
_NUMPY_TO_STREAM = {np.dtype(np.float64): "f64", np.dtype(np.float32): "f32",
                    np.dtype(np.float16): "f16", np.dtype(np.int64): "i64",
                    np.dtype(np.int32): "i32", np.dtype(np.int16): "i16",
                    np.dtype(np.int8): "i8", np.dtype(np.uint8): "u8",
                    np.dtype(np.uint16): "u16", np.dtype(np.uint32): "u32",
                    np.dtype(np.bool_): "u8"}


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even f32 -> bf16 bit patterns (NaN stays NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x.reshape(-1)) if x.size else np.zeros(0, bool)
    out = rounded.astype(np.uint16).reshape(-1)
    out[nan] = 0x7FC0
    return out


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


@register
class Dense(Codec):
    name = "dense"
    roles = {"data": Role(DENSE_DTYPES)}

    def check(self, node: NodeDesc) -> None:
        expect_n(node, "data", node.size)

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        data = ctx.stream(node, "data")
        if node.streams["data"].dtype == "bf16":
            data = bf16_bits_to_f32(data)
        return data.reshape(node.shape)


def dense(array: np.ndarray, dtype: str | None = None, *, entropy: str = "auto") -> Node:
    """Store ``array`` as is (``dtype`` None keeps its dtype; "f16"/"bf16" narrow f32)."""
    a = np.asarray(array)
    if dtype is None:
        try:
            dtype = _NUMPY_TO_STREAM[a.dtype.newbyteorder("=")]
        except KeyError:
            raise EncodeError(f"dense: numpy dtype {a.dtype} cannot be stored") from None
    if dtype not in DENSE_DTYPES:
        raise EncodeError(f"dense: dtype {dtype!r} is not one of {DENSE_DTYPES}")
    flat = a.reshape(-1)
    if dtype == "bf16":
        data = f32_to_bf16_bits(flat.astype(np.float32))
    else:
        data = flat.astype(_stream_np(dtype))
    return Node("dense", tuple(a.shape), {}, {"data": Stream(data, dtype, None, "weight", entropy)})


def _stream_np(dtype: str) -> np.dtype:
    return {v: k for k, v in _NUMPY_TO_STREAM.items() if k != np.dtype(np.bool_)}[dtype]
