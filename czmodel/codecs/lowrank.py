"""Low-rank factorizations: ``svd`` (W = U @ V on the 2-D view) and ``tucker2`` (a 4-D
conv kernel as 1x1 -> kh x kw -> 1x1 convolutions through a small core).
"""

from __future__ import annotations

import numpy as np

from czmodel.codecs import _util as U
from czmodel.codecs.base import (
    Codec,
    DecodeContext,
    Node,
    NodeDesc,
    check_builder_shape,
    register,
    view2d,
)
from czmodel.errors import CorruptionError, EncodeError, LimitError


def _shape_fault(node: NodeDesc, role: str, want: str) -> CorruptionError:
    c = node.children[role]
    return CorruptionError(f"{node.codec}: child {role!r} has shape {list(c.shape)}, "
                           f"expected {want}", path=c.path)


# ----------------------------------------------------------------------------- svd


@register
class SVD(Codec):
    name = "svd"
    child_roles = ("u", "v")

    def check(self, node: NodeDesc) -> None:
        m, n = view2d(node.shape)
        u, v = node.children["u"].shape, node.children["v"].shape
        if len(u) != 2 or u[0] != m:
            raise _shape_fault(node, "u", f"[{m}, r]")
        r = u[1]
        if tuple(v) != (r, n):
            raise _shape_fault(node, "v", f"[{r}, {n}]")

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        u = U.child_f32(ctx, node, "u")
        v = U.child_f32(ctx, node, "v")
        # Reference and fast path are deliberately the SAME float32 matmul: they must agree
        # bit for bit, and a float64 "oracle" would round differently. (The summation order
        # of a matmul is implementation-defined, so other decoders may differ in the last
        # bits; the spec says so.)
        with np.errstate(all="ignore"):
            w = np.matmul(u, v)
        return np.ascontiguousarray(w, dtype=np.float32).reshape(node.shape)


def svd(u: Node, v: Node, shape) -> Node:
    """W.reshape(view2d(shape)) = u @ v with u of shape [m, r] and v of shape [r, n]."""
    shape = check_builder_shape(shape)
    u = U.need_node(u, "svd: u")
    v = U.need_node(v, "svd: v")
    m, n = view2d(shape)
    if len(u.shape) != 2 or u.shape[0] != m:
        raise EncodeError(f"svd: u has shape {list(u.shape)}, expected [{m}, r]")
    U.need_child_shape(v, (u.shape[1], n), "svd: v")
    return Node("svd", shape, {}, {}, {"u": u, "v": v})


# ----------------------------------------------------------------------------- tucker2


@register
class Tucker2(Codec):
    name = "tucker2"
    child_roles = ("first", "core", "last")
    min_ndim = 4

    def check(self, node: NodeDesc) -> None:
        U.expect_ndim(node, 4, 4)
        o, i, kh, kw = node.shape
        f = node.children["first"].shape
        if len(f) != 2 or f[1] != i:
            raise _shape_fault(node, "first", f"[r_in, {i}]")
        last = node.children["last"].shape
        if len(last) != 2 or last[0] != o:
            raise _shape_fault(node, "last", f"[{o}, r_out]")
        want = (last[1], f[0], kh, kw)
        if tuple(node.children["core"].shape) != want:
            raise _shape_fault(node, "core", str(list(want)))

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        first = U.child_f32(ctx, node, "first")     # [r_in, I]
        core = U.child_f32(ctx, node, "core")       # [r_out, r_in, kh, kw]
        last = U.child_f32(ctx, node, "last")       # [O, r_out]
        # Same float32 computation for reference and fast path (bit-identical by design).
        o, i, kh, kw = node.shape
        r_out, r_in = core.shape[0], core.shape[1]
        # Contract through the smaller intermediate. One of the two is never larger than
        # max(output, core), both already under the memory cap, so a hostile rank cannot
        # blow up memory; check anyway before allocating.
        size_a, size_b = r_out * kh * kw * i, o * r_in * kh * kw
        if min(size_a, size_b) * 4 > ctx.max_bytes:
            raise LimitError(f"tucker2: intermediate of {min(size_a, size_b) * 4} bytes "
                             f"exceeds the cap of {ctx.max_bytes}", path=node.path)
        with np.errstate(all="ignore"):
            if size_a <= size_b:
                # t[a, h, w, i] = sum_b core[a, b, h, w] * first[b, i]
                t = np.matmul(core.transpose(0, 2, 3, 1).reshape(r_out * kh * kw, r_in), first)
                # w[o, h, w, i] = sum_a last[o, a] * t[a, h, w, i]
                w = np.matmul(last, t.reshape(r_out, kh * kw * i)).reshape(o, kh, kw, i)
            else:
                # t[o, b, h, w] = sum_a last[o, a] * core[a, b, h, w]
                t = np.matmul(last, core.reshape(r_out, r_in * kh * kw))
                # w[o, h, w, i] = sum_b t[o, b, h, w] * first[b, i]
                t = t.reshape(o, r_in, kh * kw).transpose(0, 2, 1).reshape(o * kh * kw, r_in)
                w = np.matmul(t, first).reshape(o, kh, kw, i)
        return np.ascontiguousarray(w.transpose(0, 3, 1, 2), dtype=np.float32)

def tucker2(first: Node, core: Node, last: Node, shape) -> Node:
    """4-D kernel (O, I, kh, kw): W[o,i,h,w] = sum_{a,b} last[o,a] core[a,b,h,w] first[b,i]
    with first [r_in, I], core [r_out, r_in, kh, kw], last [O, r_out]."""
    shape = check_builder_shape(shape)
    if len(shape) != 4:
        raise EncodeError(f"tucker2: shape must be 4-D (O, I, kh, kw), got {list(shape)}")
    first = U.need_node(first, "tucker2: first")
    core = U.need_node(core, "tucker2: core")
    last = U.need_node(last, "tucker2: last")
    o, i, kh, kw = shape
    if len(first.shape) != 2 or first.shape[1] != i:
        raise EncodeError(f"tucker2: first has shape {list(first.shape)}, expected [r_in, {i}]")
    if len(last.shape) != 2 or last.shape[0] != o:
        raise EncodeError(f"tucker2: last has shape {list(last.shape)}, expected [{o}, r_out]")
    U.need_child_shape(core, (last.shape[1], first.shape[0], kh, kw), "tucker2: core")
    return Node("tucker2", shape, {}, {}, {"first": first, "core": core, "last": last})
