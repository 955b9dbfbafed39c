"""Small helpers shared by the codec modules (writer-side validation, reader-side fetches)."""

from __future__ import annotations

from typing import Any

import numpy as np

from czmodel.codecs.base import DecodeContext, Node, NodeDesc, Stream
from czmodel.errors import CorruptionError, EncodeError, FormatError
from czmodel.format import limits as L

U32_MAX = (1 << 32) - 1

# ----------------------------------------------------------------------------- reader side


def corrupt(node: NodeDesc, msg: str, role: str | None = None) -> CorruptionError:
    """A CorruptionError located at ``node`` (or at its stream ``role``)."""
    path = node.streams[role].path if role is not None and role in node.streams else node.path
    return CorruptionError(f"{node.codec}: {msg}", path=path)


def get_stream(ctx: DecodeContext, node: NodeDesc, role: str) -> np.ndarray:
    """The decoded stream, verified to be 1-D with exactly the count the header declared.

    The container already guarantees this; checking again is cheap and keeps every index
    computed from header counts in bounds (numba kernels do not bounds-check).
    """
    a = np.asarray(ctx.stream(node, role))
    if a.ndim != 1 or a.shape[0] != node.streams[role].n:
        raise corrupt(node, f"stream {role!r} decoded to {a.shape}, expected "
                            f"({node.streams[role].n},)", role)
    return a


def get_floats(ctx: DecodeContext, node: NodeDesc, role: str) -> np.ndarray:
    """A float stream (f32/f16) as contiguous float32 (f16 -> f32 is exact)."""
    return np.ascontiguousarray(get_stream(ctx, node, role), dtype=np.float32)


def get_index(ctx: DecodeContext, node: NodeDesc, role: str) -> np.ndarray:
    """A u8 symbol stream as contiguous uint8."""
    return np.ascontiguousarray(get_stream(ctx, node, role), dtype=np.uint8)


def child_f32(ctx: DecodeContext, node: NodeDesc, role: str) -> np.ndarray:
    """Decode child ``role`` and convert it to contiguous float32 (its own shape)."""
    c = ctx.child(node, role)
    with np.errstate(all="ignore"):       # e.g. an f64 child beyond the f32 range -> inf
        return np.ascontiguousarray(c, dtype=np.float32).reshape(node.children[role].shape)


def child_flat_f32(ctx: DecodeContext, node: NodeDesc, role: str) -> np.ndarray:
    return child_f32(ctx, node, role).reshape(-1)


def expect_bits(node: NodeDesc, role: str, bits: int) -> None:
    s = node.streams[role]
    if s.bits != bits:
        raise FormatError(f"{node.codec}: stream {role!r} has bits={s.bits}, expected {bits}",
                          path=s.path)


def expect_bits_range(node: NodeDesc, role: str, lo: int, hi: int) -> int:
    s = node.streams[role]
    if type(s.bits) is not int or not lo <= s.bits <= hi:
        raise FormatError(f"{node.codec}: stream {role!r} has bits={s.bits}, expected "
                          f"{lo}..{hi}", path=s.path)
    return s.bits


def expect_1d_child(node: NodeDesc, role: str) -> int:
    """Child ``role`` must be 1-D; returns its length."""
    c = node.children[role]
    if len(c.shape) != 1:
        raise CorruptionError(f"{node.codec}: child {role!r} has shape {list(c.shape)}, "
                              f"expected a 1-D shape", path=c.path)
    return c.shape[0]


def expect_ndim(node: NodeDesc, lo: int, hi: int | None = None) -> None:
    nd = len(node.shape)
    if nd < lo or (hi is not None and nd > hi):
        want = f"{lo}" if hi == lo else f">= {lo}" if hi is None else f"{lo}..{hi}"
        raise FormatError(f"{node.codec}: shape {list(node.shape)} has {nd} dims, "
                          f"expected {want}", path=node.path)


def check_ptrs(node: NodeDesc, role: str, ptr: np.ndarray, total: int) -> np.ndarray:
    """Row pointers: ptr[0] == 0, non-decreasing, ptr[-1] == total. Returns int64 copy."""
    if ptr.shape[0] == 0 or int(ptr[0]) != 0:
        raise corrupt(node, f"{role}[0] must be 0", role)
    if int(ptr[-1]) != total:
        raise corrupt(node, f"{role}[last]={int(ptr[-1])} must equal {total}", role)
    if ptr.shape[0] > 1:
        bad = np.flatnonzero(ptr[1:] < ptr[:-1])
        if bad.size:
            raise corrupt(node, f"{role} decreases at row {int(bad[0])}", role)
    # 0 <= every pointer <= total < 2**63 now, so the int64 cast is exact
    return ptr.astype(np.int64)


# ----------------------------------------------------------------------------- writer side


def need_node(x: Any, what: str) -> Node:
    if not isinstance(x, Node):
        raise EncodeError(f"{what} must be a czmodel Node (build it with a codec builder), "
                          f"got {type(x).__name__}")
    return x


def need_int(x: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise EncodeError(f"{what} must be an integer, got {x!r}")
    x = int(x)
    if not lo <= x <= hi:
        raise EncodeError(f"{what}={x} must be in [{lo}, {hi}]")
    return x


def need_axis(axis: Any, ndim: int, what: str = "axis") -> int | None:
    if axis is None:
        return None
    if ndim == 0:
        raise EncodeError(f"{what}={axis!r} given for a 0-d tensor")
    a = need_int(axis, what, -ndim, ndim - 1)
    return a + ndim if a < 0 else a


def need_mask(mask: Any, what: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise EncodeError(f"{what} must be a boolean array, got dtype {m.dtype}")
    if m.ndim > L.MAX_NDIM or any(d > L.MAX_DIM for d in m.shape):
        raise EncodeError(f"{what} shape {m.shape} exceeds the format's limits")
    return m


def need_child_shape(child: Node, shape: tuple[int, ...], what: str) -> None:
    if tuple(child.shape) != tuple(shape):
        raise EncodeError(f"{what} node has shape {list(child.shape)}, expected {list(shape)}")


def need_float_array(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise EncodeError(f"{what} must be a real numeric array, got dtype {a.dtype}")
    return a


def float_stream(values: np.ndarray, dtype: str, what: str, entropy: str,
                 kind: str = "weight") -> Stream:
    """A float stream ("f32" or "f16"); every value must be finite after the cast."""
    if dtype not in ("f32", "f16"):
        raise EncodeError(f"{what} dtype must be 'f32' or 'f16', got {dtype!r}")
    npd = np.float32 if dtype == "f32" else np.float16
    src = need_float_array(values, what).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        data = src.astype(npd)
    if data.size and not np.isfinite(data).all():
        raise EncodeError(f"{what} holds values that are not finite as {dtype}")
    return Stream(np.ascontiguousarray(data), dtype, None, kind, entropy)


def symbol_stream(symbols: np.ndarray, bits: int, kind: str, entropy: str) -> Stream:
    s = np.ascontiguousarray(symbols, dtype=np.uint8).reshape(-1)
    return Stream(s, "u8", bits, kind, entropy)


def ptr_dtype_for(max_value: int, ptr_dtype: str | None) -> str:
    if ptr_dtype is None:
        return "u32" if max_value <= U32_MAX else "u64"
    if ptr_dtype not in ("u32", "u64"):
        raise EncodeError(f"ptr_dtype must be 'u32', 'u64' or None, got {ptr_dtype!r}")
    if ptr_dtype == "u32" and max_value > U32_MAX:
        raise EncodeError(f"ptr_dtype 'u32' cannot hold {max_value}; use 'u64'")
    return ptr_dtype


def min_bits(k: int) -> int:
    """Smallest b >= 1 with k <= 2**b."""
    return max(1, (int(k) - 1).bit_length())
