"""Structured sparsity: ``nm`` (N:M, e.g. 2:4 — n kept entries in every group of m
consecutive columns) and ``block`` (whole bh x bw blocks kept or dropped).
"""

from __future__ import annotations

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
    param_int,
    register,
    view2d,
)
from czmodel.errors import CorruptionError, EncodeError, FormatError
from czmodel.format import limits as L


def nm_position_bits(m: int) -> int:
    return U.min_bits(m)


# ----------------------------------------------------------------------------- nm


def _nm_params(node: NodeDesc) -> tuple[int, int]:
    n = param_int(node, "n", 1, 256)
    m = param_int(node, "m", 1, 256)
    if n > m:
        raise FormatError(f"nm: n={n} exceeds m={m}", path=node.path)
    return n, m


@register
class NM(Codec):
    name = "nm"
    roles = {"positions": Role(("u8",), kind="index", symbols=True)}
    child_roles = ("values",)
    params = ("n", "m")

    def check(self, node: NodeDesc) -> None:
        n, m = _nm_params(node)
        rows, cols = view2d(node.shape)
        if cols % m:
            raise CorruptionError(f"nm: {cols} columns are not a multiple of m={m}",
                                  path=node.path)
        groups = rows * (cols // m)
        U.expect_bits(node, "positions", nm_position_bits(m))
        expect_n(node, "positions", groups * n)
        U.expect_1d_child(node, "values")
        if node.children["values"].shape[0] != groups * n:
            raise CorruptionError(f"nm: child 'values' holds {node.children['values'].shape[0]}"
                                  f" entries, expected {groups * n}",
                                  path=node.children["values"].path)

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        n, m = _nm_params(node)
        groups = node.size // m
        pos = U.get_index(ctx, node, "positions")
        values = U.child_flat_f32(ctx, node, "values")
        if values.shape[0] != groups * n:  # check() guarantees it; keep the kernel safe
            raise U.corrupt(node, "child 'values' has the wrong length")
        out = np.zeros(node.size, np.float32)
        if ctx.reference:
            p = pos.reshape(groups, n).astype(np.int64)
            bad = (p[:, -1] >= m) | np.any(p[:, 1:] <= p[:, :-1], axis=1)
            hit = np.flatnonzero(bad)
            if hit.size:
                raise U.corrupt(node, _nm_msg(int(hit[0]), m), "positions")
            out.reshape(groups, m)[np.arange(groups)[:, None], p] = values.reshape(groups, n)
        else:
            g = _nm(pos, values, groups, n, m, out)
            if g >= 0:
                raise U.corrupt(node, _nm_msg(g, m), "positions")
        return out.reshape(node.shape)


def _nm_msg(group: int, m: int) -> str:
    return (f"group {group}: positions are not strictly increasing or not below m={m}")


@njit(cache=True)
def _nm(pos, values, groups, n, m, out):  # pragma: no cover
    """Scatter; returns -1 or the first bad group (checked before any write lands OOB)."""
    for gi in range(groups):
        prev = -1
        for j in range(n):
            p = np.int64(pos[gi * n + j])
            if p <= prev or p >= m:
                return gi
            out[gi * m + p] = values[gi * n + j]
            prev = p
    return -1


def nm(mask, values: Node, *, n: int, m: int, entropy: str = "auto") -> Node:
    """N:M sparse tensor: ``mask`` (bool, the tensor's shape) has exactly ``n`` True in every
    group of ``m`` consecutive columns of the 2-D view; ``values`` is a node of shape
    [groups * n] holding the kept entries in row-major order."""
    msk = U.need_mask(mask, "nm: mask")
    shape = check_builder_shape(msk.shape)
    values = U.need_node(values, "nm: values")
    m = U.need_int(m, "nm: m", 1, 256)
    n = U.need_int(n, "nm: n", 1, m)
    rows, cols = view2d(shape)
    if cols % m:
        raise EncodeError(f"nm: {cols} columns (2-D view of {list(shape)}) are not a "
                          f"multiple of m={m}")
    groups = rows * cols // m
    g = msk.reshape(groups, m)
    counts = g.sum(axis=1)
    bad = np.flatnonzero(counts != n)
    if bad.size:
        raise EncodeError(f"nm: group {int(bad[0])} keeps {int(counts[bad[0]])} entries, "
                          f"every group must keep exactly n={n}")
    U.need_child_shape(values, (groups * n,), "nm: values")
    pos = np.nonzero(g)[1]                     # row-major: sorted within each group
    return Node("nm", shape, {"n": n, "m": m},
                {"positions": U.symbol_stream(pos, nm_position_bits(m), "index", entropy)},
                {"values": values})


# ----------------------------------------------------------------------------- block


def _block_params(node: NodeDesc) -> tuple[int, int]:
    return param_int(node, "bh", 1, L.MAX_DIM), param_int(node, "bw", 1, L.MAX_DIM)


@register
class Block(Codec):
    name = "block"
    roles = {"mask": Role(("u8",), kind="index", symbols=True)}
    child_roles = ("values",)
    params = ("bh", "bw")

    def check(self, node: NodeDesc) -> None:
        bh, bw = _block_params(node)
        rows, cols = view2d(node.shape)
        if rows % bh or cols % bw:
            raise CorruptionError(f"block: the {rows}x{cols} 2-D view is not a whole number of "
                                  f"{bh}x{bw} blocks", path=node.path)
        nblocks = (rows // bh) * (cols // bw)
        U.expect_bits(node, "mask", 1)
        expect_n(node, "mask", nblocks)
        nv = U.expect_1d_child(node, "values")
        if nv % (bh * bw) or nv // (bh * bw) > nblocks:
            raise CorruptionError(f"block: child 'values' holds {nv} entries, not a whole "
                                  f"number (<= {nblocks}) of {bh}x{bw} blocks",
                                  path=node.children["values"].path)

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        bh, bw = _block_params(node)
        rows, cols = view2d(node.shape)
        nbr, nbc = rows // bh, cols // bw
        mask = U.get_index(ctx, node, "mask")
        if mask.size and int(mask.max()) > 1:
            raise U.corrupt(node, "mask symbol is not 0 or 1", "mask")
        kept = int(np.count_nonzero(mask))
        nv = node.children["values"].shape[0]
        if kept * bh * bw != nv:
            raise U.corrupt(node, f"mask keeps {kept} blocks ({kept * bh * bw} entries) but "
                                  f"child 'values' holds {nv}", "mask")
        values = U.child_flat_f32(ctx, node, "values")
        if values.shape[0] != nv:
            raise U.corrupt(node, "child 'values' has the wrong length")
        if ctx.reference:
            blocks = np.zeros((nbr, nbc, bh, bw), np.float32)
            blocks[mask.reshape(nbr, nbc).astype(bool)] = values.reshape(kept, bh, bw)
            out = blocks.transpose(0, 2, 1, 3).reshape(rows, cols)
        else:
            out = np.zeros(rows * cols, np.float32)
            _block(mask, values, nbr, nbc, bh, bw, cols, out)
        return np.ascontiguousarray(out).reshape(node.shape)


@njit(cache=True)
def _block(mask, values, nbr, nbc, bh, bw, cols, out):  # pragma: no cover
    """Caller has checked count(mask) * bh * bw == len(values), so reads stay in bounds."""
    v = 0
    for br in range(nbr):
        for bc in range(nbc):
            if mask[br * nbc + bc]:
                for i in range(bh):
                    base = (br * bh + i) * cols + bc * bw
                    for j in range(bw):
                        out[base + j] = values[v]
                        v += 1


def block(block_mask, values: Node, *, bh: int, bw: int, shape=None,
          entropy: str = "auto") -> Node:
    """Block-sparse tensor: ``block_mask`` is the (rows/bh, cols/bw) bool array of kept
    blocks; ``values`` a node of shape [nkept * bh * bw] (kept blocks in block-row-major
    order, each block row-major). ``shape`` (default (rows, cols)) may be any shape whose
    2-D view is (rows, cols), e.g. a conv kernel."""
    bm = U.need_mask(block_mask, "block: block_mask")
    if bm.ndim != 2:
        raise EncodeError(f"block: block_mask must be 2-D, got shape {bm.shape}")
    bh = U.need_int(bh, "block: bh", 1, L.MAX_DIM)
    bw = U.need_int(bw, "block: bw", 1, L.MAX_DIM)
    rows, cols = bm.shape[0] * bh, bm.shape[1] * bw
    shape = check_builder_shape((rows, cols) if shape is None else shape)
    if view2d(shape) != (rows, cols):
        raise EncodeError(f"block: shape {list(shape)} has 2-D view {view2d(shape)}, but the "
                          f"block mask covers ({rows}, {cols})")
    values = U.need_node(values, "block: values")
    U.need_child_shape(values, (int(np.count_nonzero(bm)) * bh * bw,), "block: values")
    return Node("block", shape, {"bh": bh, "bw": bw},
                {"mask": U.symbol_stream(bm.reshape(-1), 1, "index", entropy)},
                {"values": values})
