"""``relidx``: Deep Compression's relative-index sparse storage, with row pointers.

Each stored entry is reached by a gap symbol (zeros skipped since the previous entry); a
gap that does not fit is split with FILLER symbols (value M = 2**gap_bits - 1) that advance
the position by M and, unlike the paper's "filler zero", consume no value. Row pointers
into the gaps and into the values let every row decode on its own.
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
    Stream,
    check_builder_shape,
    expect_n,
    param_int,
    register,
    view2d,
)
from czmodel.errors import EncodeError

_PTR = ("u32", "u64")


@register
class RelIdx(Codec):
    name = "relidx"
    roles = {"gaps": Role(("u8",), kind="index", symbols=True),
             "gap_ptr": Role(_PTR, kind="index"),
             "val_ptr": Role(_PTR, kind="index")}
    child_roles = ("values",)
    params = ("gap_bits",)
    min_ndim = 1

    def check(self, node: NodeDesc) -> None:
        U.expect_ndim(node, 1)
        gb = param_int(node, "gap_bits", 2, 8)
        U.expect_bits(node, "gaps", gb)
        rows, cols = view2d(node.shape)
        expect_n(node, "gap_ptr", rows + 1)
        expect_n(node, "val_ptr", rows + 1)
        nnz = U.expect_1d_child(node, "values")
        if nnz > node.size:
            raise U.corrupt(node, f"{nnz} values cannot fit in {node.size} positions")

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        gb = param_int(node, "gap_bits", 2, 8)
        fill = (1 << gb) - 1
        rows, cols = view2d(node.shape)
        gaps = U.get_index(ctx, node, "gaps")
        nnz = node.children["values"].shape[0]
        gp = U.check_ptrs(node, "gap_ptr", U.get_stream(ctx, node, "gap_ptr"), gaps.shape[0])
        vp = U.check_ptrs(node, "val_ptr", U.get_stream(ctx, node, "val_ptr"), nnz)
        values = U.child_flat_f32(ctx, node, "values")
        out = np.zeros(rows * cols, np.float32)
        if ctx.reference:
            _reference(node, gaps, gp, vp, values, rows, cols, fill, out)
        else:
            code, row = _relidx(gaps, gp, vp, values, rows, cols, fill, out)
            if code:
                raise U.corrupt(node, f"row {row}: {_MESSAGES[code]}", "gaps")
        return out.reshape(node.shape)


_MESSAGES = {1: "a value lands past the end of the row",
             2: "a filler moves past the end of the row",
             3: "the row's gaps consume more values than val_ptr gives it",
             4: "the row's gaps consume fewer values than val_ptr gives it"}


def _reference(node, gaps, gp, vp, values, rows, cols, fill, out) -> None:
    """Vectorised oracle: positions from a per-row cumulative sum of the gap steps."""
    n = gaps.shape[0]
    row = np.repeat(np.arange(rows, dtype=np.int64), np.diff(gp))
    g = gaps.astype(np.int64)
    filler = g == fill
    step = np.where(filler, fill, g + 1)             # how far each symbol moves p
    end = np.cumsum(step)
    if n:
        end -= np.concatenate(([0], end))[gp[:-1]][row]  # restart the sum at each row
    # a value at p needs p < cols, i.e. end <= cols; a filler needs end <= cols too
    over = np.flatnonzero(end > cols)
    if over.size:
        j = int(over[0])
        raise U.corrupt(node, f"row {int(row[j])}: "
                              f"{_MESSAGES[2 if filler[j] else 1]}", "gaps")
    counts = np.bincount(row[~filler], minlength=rows)
    bad = np.flatnonzero(counts != np.diff(vp))
    if bad.size:
        r = int(bad[0])
        raise U.corrupt(node, f"row {r}: {_MESSAGES[3 if counts[r] > vp[r + 1] - vp[r] else 4]}",
                        "gaps")
    keep = ~filler
    out[row[keep] * cols + end[keep] - 1] = values


@njit(cache=True)
def _relidx(gaps, gp, vp, values, rows, cols, fill, out):  # pragma: no cover
    """Sequential decoder. gp/vp are validated int64 pointers. Returns (code, row)."""
    for r in range(rows):
        v = vp[r]
        v1 = vp[r + 1]
        p = 0
        base = r * cols
        for j in range(gp[r], gp[r + 1]):
            g = np.int64(gaps[j])
            if g == fill:
                p += fill
                if p > cols:
                    return 2, r
            else:
                p += g
                if p >= cols:
                    return 1, r
                if v >= v1:
                    return 3, r
                out[base + p] = values[v]
                v += 1
                p += 1
        if v != v1:
            return 4, r
    return 0, -1


# ----------------------------------------------------------------------------- writer side


def _entry_gaps(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """For each stored entry (row-major): its row and the zeros skipped before it."""
    m = U.need_mask(mask, "relidx: mask")
    if m.ndim < 1:
        raise EncodeError("relidx: mask must have at least 1 dimension")
    rows, cols = view2d(m.shape)
    flat = np.flatnonzero(m.reshape(-1))
    if cols == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), rows, cols
    r = flat // cols
    c = flat - r * cols
    prev_end = np.empty_like(c)
    if c.size:
        prev_end[0] = 0
        prev_end[1:] = c[:-1] + 1
        prev_end[1:][r[1:] != r[:-1]] = 0    # first entry of each row starts from column 0
    return r, c - prev_end, rows, cols


def _raw_bits(skips: np.ndarray, gap_bits: int) -> int:
    fill = (1 << gap_bits) - 1
    return (skips.shape[0] + int((skips // fill).sum())) * gap_bits


def choose_gap_bits(mask) -> int:
    """The gap width in 2..8 with the smallest raw gaps stream (fillers counted); ties ->
    the smaller width."""
    _, skips, _, _ = _entry_gaps(mask)
    return min(range(2, 9), key=lambda k: (_raw_bits(skips, k), k))


def relidx_gaps(mask, gap_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gaps uint8, gap_ptr int64, val_ptr int64) for a boolean ``mask`` (vectorised)."""
    gap_bits = U.need_int(gap_bits, "relidx: gap_bits", 2, 8)
    fill = (1 << gap_bits) - 1
    r, skips, rows, _ = _entry_gaps(mask)
    nfill = skips // fill
    per_entry = nfill + 1                       # fillers, then the entry's own gap
    ends = np.cumsum(per_entry)
    gaps = np.full(int(ends[-1]) if ends.size else 0, fill, np.uint8)
    gaps[ends - 1] = (skips - nfill * fill).astype(np.uint8)
    val_ptr = np.searchsorted(r, np.arange(rows + 1), side="left").astype(np.int64)
    gap_ptr = np.concatenate(([0], ends))[val_ptr].astype(np.int64)
    return gaps, gap_ptr, val_ptr


def relidx(mask, values: Node, *, gap_bits: int | None = None, entropy: str = "auto",
           ptr_dtype: str | None = None) -> Node:
    """Sparse tensor: ``mask`` (bool, the tensor's shape; True = stored) and ``values``, a
    node of shape [mask.sum()] holding the stored entries in row-major order."""
    m = U.need_mask(mask, "relidx: mask")
    if m.ndim < 1:
        raise EncodeError("relidx: mask must have at least 1 dimension")
    shape = check_builder_shape(m.shape)
    values = U.need_node(values, "relidx: values")
    nnz = int(np.count_nonzero(m))
    U.need_child_shape(values, (nnz,), "relidx: values")
    if gap_bits is None:
        gap_bits = choose_gap_bits(m)
    gaps, gap_ptr, val_ptr = relidx_gaps(m, gap_bits)
    pdt = U.ptr_dtype_for(max(gaps.shape[0], nnz), ptr_dtype)
    npd = np.uint32 if pdt == "u32" else np.uint64
    return Node("relidx", shape, {"gap_bits": int(gap_bits)},
                {"gaps": U.symbol_stream(gaps, int(gap_bits), "index", entropy),
                 "gap_ptr": Stream(gap_ptr.astype(npd), pdt, None, "index", entropy),
                 "val_ptr": Stream(val_ptr.astype(npd), pdt, None, "index", entropy)},
                {"values": values})
