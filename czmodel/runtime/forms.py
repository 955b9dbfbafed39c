"""Kernel forms: the compact, load-time representation a compressed weight is run from.

A form is built once per weight from the tensor's encoding tree: entropy stages are decoded
(``CzFile.read_stream``) and the codec's arrays are kept as they are -- gaps, pointers,
codebook indices and a LUT, int8 values and scales, factors. No form of a compressed layer
holds a dense float32 copy of the weight; the kernels in ``numba_kernels`` compute from these
arrays directly.

Every form sees its weight as the codec's 2-D view: ``rows`` (output channels) x ``cols``
(``I/group * kh * kw`` for a conv kernel, in ``(i, kh, kw)`` order) and reports
``resident_bytes``. ``FORM_BUILDERS`` has one row per codec (adding a codec adds a row);
a tree with no fast form falls back to ``DenseForm`` with the reason recorded in
``DenseForm.fallback`` (and in ``BuildLog.fallbacks``).

``to_dense()`` exists for tests and for the reference oracle only; no kernel calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from czmodel.codecs import _util as U
from czmodel.codecs.base import DecodeContext, NodeDesc, decode_node, view2d
from czmodel.errors import CorruptionError
from czmodel.runtime.executor import WeightForm

# ----------------------------------------------------------------------------- forms


class Form(WeightForm):
    """Base class. ``rows`` x ``cols`` is the 2-D view of the weight."""

    kind = "form"
    rows: int
    cols: int

    def arrays(self) -> list[np.ndarray]:
        return []

    def children(self) -> list[Form]:
        return []

    @property
    def resident_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays()) + sum(c.resident_bytes
                                                          for c in self.children())

    def row_slice(self, r0: int, r1: int) -> Form:  # pragma: no cover - every form overrides
        raise NotImplementedError

    def to_dense(self) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind

    def __repr__(self) -> str:
        return f"<{self.describe()} {self.rows}x{self.cols}, {self.resident_bytes} B>"


class DenseForm(Form):
    """Plain float32 weights (rows, cols), C-contiguous. Also the fallback form."""

    kind = "dense"

    def __init__(self, w: np.ndarray, fallback: str | None = None) -> None:
        w = np.asarray(w, dtype=np.float32)
        self.w = np.ascontiguousarray(w.reshape(w.shape[0] if w.ndim else 1, -1))
        self.rows, self.cols = self.w.shape
        self.fallback = fallback

    def arrays(self):
        return [self.w]

    def row_slice(self, r0, r1):
        return DenseForm(self.w[r0:r1], self.fallback)

    def to_dense(self):
        return self.w

    def describe(self):
        return "dense" + (f"(fallback: {self.fallback})" if self.fallback else "")


class RelidxForm(Form):
    """EIE-style relative-index sparse rows: per row r the gap symbols
    ``gaps[gap_ptr[r]:gap_ptr[r+1]]`` (a symbol == ``fill`` advances by ``fill`` and takes no
    value) and the values ``val_ptr[r]:val_ptr[r+1]``. Values are either codebook indices
    ``idx`` (uint8) into ``lut`` (float32, one per-tensor codebook) or float32 ``values``.

    ``idx``/``values`` carry ONE extra trailing element (0): the branchless kernels read the
    value slot of a filler symbol and discard it, which may touch index ``val_ptr[r+1]``.
    """

    kind = "relidx"

    def __init__(self, rows, cols, gap_ptr, gaps, val_ptr, fill, idx=None, lut=None,
                 values=None) -> None:
        self.rows, self.cols = int(rows), int(cols)
        self.gap_ptr = np.ascontiguousarray(gap_ptr, dtype=np.int64)
        self.gaps = np.ascontiguousarray(gaps, dtype=np.uint8)
        self.val_ptr = np.ascontiguousarray(val_ptr, dtype=np.int64)
        self.fill = int(fill)
        self.idx = idx
        self.lut = lut
        self.values = values

    @property
    def nnz(self) -> int:
        return int(self.val_ptr[-1] - self.val_ptr[0])

    @property
    def uses_lut(self) -> bool:
        return self.idx is not None

    def arrays(self):
        a = [self.gap_ptr, self.gaps, self.val_ptr]
        return a + ([self.idx, self.lut] if self.uses_lut else [self.values])

    def row_slice(self, r0, r1):
        g0, g1 = int(self.gap_ptr[r0]), int(self.gap_ptr[r1])
        v0, v1 = int(self.val_ptr[r0]), int(self.val_ptr[r1])
        gp = self.gap_ptr[r0:r1 + 1] - g0
        vp = self.val_ptr[r0:r1 + 1] - v0
        if self.uses_lut:
            return RelidxForm(r1 - r0, self.cols, gp, self.gaps[g0:g1], vp, self.fill,
                              idx=self.idx[v0:v1 + 1], lut=self.lut)
        return RelidxForm(r1 - r0, self.cols, gp, self.gaps[g0:g1], vp, self.fill,
                          values=self.values[v0:v1 + 1])

    def value_array(self) -> np.ndarray:
        """The nnz stored values as float32 (reference/tests only)."""
        n0, n1 = int(self.val_ptr[0]), int(self.val_ptr[-1])
        if self.uses_lut:
            return self.lut[self.idx[n0:n1]]
        return self.values[n0:n1]

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of every stored value, vectorised (reference/tests only)."""
        gp = self.gap_ptr - self.gap_ptr[0]
        g = self.gaps.astype(np.int64)
        row = np.repeat(np.arange(self.rows, dtype=np.int64), np.diff(gp))
        filler = g == self.fill
        end = np.cumsum(np.where(filler, self.fill, g + 1))
        if g.size:
            end -= np.concatenate(([0], end))[gp[:-1]][row]
        keep = ~filler
        return row[keep], end[keep] - 1

    def to_dense(self):
        out = np.zeros((self.rows, self.cols), np.float32)
        r, c = self.columns()
        out[r, c] = self.value_array()
        return out

    def describe(self):
        v = f"codebook k={self.lut.shape[0]}" if self.uses_lut else "f32 values"
        return f"relidx(fill={self.fill}, {v})"


class CodebookForm(Form):
    """Dense codebook indices (rows, cols) uint8 and a LUT (n_lut, k): n_lut == 1 (one
    per-tensor codebook) or == rows (one per output row, i.e. codebook ``axis=0``)."""

    kind = "codebook"

    def __init__(self, idx: np.ndarray, lut: np.ndarray) -> None:
        self.idx = np.ascontiguousarray(idx, dtype=np.uint8)
        self.rows, self.cols = self.idx.shape
        self.lut = np.ascontiguousarray(lut, dtype=np.float32).reshape(-1, lut.shape[-1])
        self.k = self.lut.shape[1]

    @property
    def per_row(self) -> bool:
        return self.lut.shape[0] > 1

    def arrays(self):
        return [self.idx, self.lut]

    def row_slice(self, r0, r1):
        lut = self.lut[r0:r1] if self.per_row else self.lut
        return CodebookForm(self.idx[r0:r1], lut)

    def to_dense(self):
        if self.lut.shape[0] == 1:
            return self.lut[0][self.idx]
        return np.take_along_axis(self.lut, self.idx.astype(np.int64), axis=1)

    def describe(self):
        return f"codebook(k={self.k}, {'per-row' if self.lut.shape[0] > 1 else 'per-tensor'})"


class AffineForm(Form):
    """Integer weights for the int8 kernels: ``q`` (rows, cols) int8 (signed) or uint8
    (unsigned); int2..int7 are unpacked to one byte per weight at load (int4 is NOT kept
    nibble-packed). ``scale`` (rows, ngroups) float32 -- ngroups == 1 for per-channel (axis
    0) and per-tensor scales (the single scale broadcast to every row); ``zp`` the same
    shape as int32, or None. ``group`` is the group size (0: one group = the whole row).
    w = (q - zp) * scale."""

    kind = "affine"

    def __init__(self, q, scale, zp=None, group: int = 0, bits: int = 8) -> None:
        self.q = np.ascontiguousarray(q)
        self.rows, self.cols = self.q.shape
        self.scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(self.rows, -1)
        self.zp = None if zp is None else np.ascontiguousarray(zp, np.int32).reshape(
            self.rows, -1)
        self.group = int(group)
        self.bits = int(bits)

    @property
    def ngroups(self) -> int:
        return self.scale.shape[1]

    def arrays(self):
        return [self.q, self.scale] + ([self.zp] if self.zp is not None else [])

    def row_slice(self, r0, r1):
        return AffineForm(self.q[r0:r1], self.scale[r0:r1],
                          None if self.zp is None else self.zp[r0:r1], self.group, self.bits)

    def to_dense(self):
        g = self.group or max(self.cols, 1)
        col_group = np.arange(self.cols) // g
        z = 0 if self.zp is None else self.zp[:, col_group]
        return ((self.q.astype(np.int32) - z).astype(np.float32)
                * self.scale[:, col_group]).astype(np.float32)

    def describe(self):
        mode = f"group {self.group}" if self.group else "per-channel"
        return f"affine(int{self.bits}{'' if self.q.dtype == np.int8 else ' unsigned'}, " \
               f"{mode}{', zp' if self.zp is not None else ''})"


class NMForm(Form):
    """N:M sparsity: for every group of m columns of a row, n positions (uint8, relative to
    the group) and n float32 values."""

    kind = "nm"

    def __init__(self, rows, cols, n, m, positions, values) -> None:
        self.rows, self.cols, self.n, self.m = int(rows), int(cols), int(n), int(m)
        self.positions = np.ascontiguousarray(positions, dtype=np.uint8)
        self.values = np.ascontiguousarray(values, dtype=np.float32)

    def arrays(self):
        return [self.positions, self.values]

    def row_slice(self, r0, r1):
        per_row = (self.cols // self.m) * self.n
        return NMForm(r1 - r0, self.cols, self.n, self.m,
                      self.positions[r0 * per_row:r1 * per_row],
                      self.values[r0 * per_row:r1 * per_row])

    def to_dense(self):
        groups = self.rows * self.cols // self.m if self.m else 0
        out = np.zeros((groups, self.m), np.float32)
        p = self.positions.reshape(groups, self.n).astype(np.int64)
        out[np.arange(groups)[:, None], p] = self.values.reshape(groups, self.n)
        return out.reshape(self.rows, self.cols)

    def describe(self):
        return f"nm({self.n}:{self.m})"


class LowRankForm(Form):
    """``svd``: W = U V with forms u (rows, r) and v (r, cols): y = (x V^T) U^T.
    ``tucker2`` (conv kernel (O, I, kh, kw)): forms first (r_in, I), core (r_out, r_in*kh*kw),
    last (O, r_out): run as 1x1 conv -> kh x kw conv -> 1x1 conv (or, on an im2col row
    layout, as the matching three contractions)."""

    kind = "lowrank"

    def __init__(self, method: str, factors: list[Form], shape: tuple[int, ...]) -> None:
        self.method = method
        self.factors = factors
        self.shape = tuple(shape)
        self.rows, self.cols = view2d(self.shape)

    def children(self):
        return list(self.factors)

    def row_slice(self, r0, r1):
        f = list(self.factors)
        if self.method == "svd":
            f[0] = f[0].row_slice(r0, r1)
        else:
            f[2] = f[2].row_slice(r0, r1)
        return LowRankForm(self.method, f, (r1 - r0,) + self.shape[1:])

    def to_dense(self):
        if self.method == "svd":
            return (self.factors[0].to_dense() @ self.factors[1].to_dense()).astype(np.float32)
        first, core, last = (f.to_dense() for f in self.factors)
        o, i, kh, kw = self.shape
        r_in = first.shape[0]
        c = core.reshape(-1, r_in, kh * kw)                       # (r_out, r_in, khw)
        t = np.einsum("abk,bi->aik", c, first)                     # (r_out, I, khw)
        return np.einsum("oa,aik->oik", last, t).reshape(o, -1).astype(np.float32)

    def describe(self):
        return f"{self.method}({', '.join(f.describe() for f in self.factors)})"


class SumForm(Form):
    """Element-wise sum of terms: y = sum_t x W_t^T (in term order)."""

    kind = "sum"

    def __init__(self, terms: list[Form]) -> None:
        self.terms = terms
        self.rows, self.cols = terms[0].rows, terms[0].cols

    def children(self):
        return list(self.terms)

    def row_slice(self, r0, r1):
        return SumForm([t.row_slice(r0, r1) for t in self.terms])

    def to_dense(self):
        out = self.terms[0].to_dense().copy()
        for t in self.terms[1:]:
            out += t.to_dense()
        return out

    def describe(self):
        return f"sum({', '.join(t.describe() for t in self.terms)})"


# ----------------------------------------------------------------------------- building


@dataclass
class BuildLog:
    """What the loader decided, per weight (tensor name -> form description / reason)."""

    forms: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)


class _Src:
    """Reads streams and decodes whole child nodes of one tensor."""

    def __init__(self, file, tensor: str) -> None:
        self.file = file
        self.tensor = tensor
        self.ctx = DecodeContext(lambda s: file.read_stream(s, tensor=tensor), reference=False,
                                 max_bytes=file.limits.max_tensor_bytes)

    def stream(self, node: NodeDesc, role: str) -> np.ndarray:
        return U.get_stream(self.ctx, node, role)

    def decode(self, node: NodeDesc) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.ascontiguousarray(decode_node(node, self.ctx), dtype=np.float32)


class _NoForm(Exception):
    """This subtree has no fast form (the caller falls back to dense)."""


def _lut(node: NodeDesc, src: _Src) -> np.ndarray:
    return U.get_floats(src.ctx, node, "centroids")


def _check_idx(node: NodeDesc, idx: np.ndarray, k: int) -> None:
    if idx.size and int(idx.max()) >= k:
        at = int(np.flatnonzero(idx >= k)[0])
        raise U.corrupt(node, f"index {int(idx[at])} >= k={k} at element {at}", "indices")


def _form_dense(node, src, rows, cols):
    return DenseForm(src.decode(node).reshape(rows, cols))


def _form_codebook(node, src, rows, cols):
    k = node.params["k"]
    axis = node.params.get("axis")
    if axis not in (None, 0) or (axis == 0 and len(node.shape) == 0):
        raise _NoForm(f"codebook per-channel along axis {axis} (only axis 0 runs compressed)")
    idx = U.get_index(src.ctx, node, "indices")
    _check_idx(node, idx, k)
    lut = _lut(node, src).reshape(-1, k)
    return CodebookForm(idx.reshape(rows, cols), lut)


def _sext(v: np.ndarray, bits: int) -> np.ndarray:
    """bits-bit two's complement symbols -> int8 (int4 etc. unpacked to a byte each)."""
    v = v.astype(np.int16)
    return np.where(v >= (1 << (bits - 1)), v - (1 << bits), v).astype(np.int8)


def _form_affine(node, src, rows, cols):
    bits, signed = node.params["bits"], node.params["signed"]
    axis, group = node.params.get("axis"), node.params.get("group_size")
    if axis not in (None, 0):
        raise _NoForm(f"affine per-channel along axis {axis} (only axis 0 runs as int8)")
    q = U.get_index(src.ctx, node, "q")
    scale = U.get_floats(src.ctx, node, "scale")
    zp = U.get_index(src.ctx, node, "zero_point") if "zero_point" in node.streams else None
    q = _sext(q, bits) if signed else q
    if zp is not None:
        zp = _sext(zp, bits).astype(np.int32) if signed else zp.astype(np.int32)
    if group is not None:
        ng = -(-cols // group)
        scale, zp_ = scale.reshape(rows, ng), None if zp is None else zp.reshape(rows, ng)
        return AffineForm(q.reshape(rows, cols), scale, zp_, group, bits)
    if axis is None:        # per tensor: broadcast the one scale to every row
        scale = np.full((rows, 1), scale[0], np.float32)
        zp = None if zp is None else np.full((rows, 1), zp[0], np.int32)
    return AffineForm(q.reshape(rows, cols), scale.reshape(rows, 1),
                      None if zp is None else zp.reshape(rows, 1), 0, bits)


@njit(cache=True)
def _relidx_check(gaps, gp, vp, rows, cols, fill):  # pragma: no cover
    """The codec's decode checks without writing anything: returns (code, row)."""
    for r in range(rows):
        v = vp[r]
        p = 0
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
                v += 1
                p += 1
        if v != vp[r + 1]:
            return 3, r
    return 0, -1


def _form_relidx(node, src, rows, cols):
    gb = node.params["gap_bits"]
    fill = (1 << gb) - 1
    gaps = U.get_index(src.ctx, node, "gaps")
    vnode = node.children["values"]
    nnz = vnode.shape[0]
    gp = U.check_ptrs(node, "gap_ptr", src.stream(node, "gap_ptr"), gaps.shape[0])
    vp = U.check_ptrs(node, "val_ptr", src.stream(node, "val_ptr"), nnz)
    code, row = _relidx_check(gaps, gp, vp, rows, cols, fill)
    if code:
        raise U.corrupt(node, f"row {row}: " + {1: "a value lands past the end of the row",
                                                2: "a filler moves past the end of the row",
                                                3: "the row's gaps consume a number of values "
                                                   "different from val_ptr"}[code], "gaps")
    if vnode.codec == "codebook" and vnode.params.get("axis") is None:
        k = vnode.params["k"]
        idx = U.get_index(src.ctx, vnode, "indices")
        _check_idx(vnode, idx, k)
        return RelidxForm(rows, cols, gp, gaps, vp, fill, idx=np.append(idx, np.uint8(0)),
                          lut=_lut(vnode, src))
    values = src.decode(vnode).reshape(-1)     # the nnz values only, never the dense matrix
    return RelidxForm(rows, cols, gp, gaps, vp, fill,
                      values=np.append(values, np.float32(0)))


def _form_nm(node, src, rows, cols):
    n, m = node.params["n"], node.params["m"]
    groups = rows * cols // m
    pos = U.get_index(src.ctx, node, "positions")
    p = pos.reshape(groups, n).astype(np.int64)
    if groups and n and (np.any(p[:, -1] >= m) or np.any(p[:, 1:] <= p[:, :-1])):
        raise U.corrupt(node, "positions are not strictly increasing or not below m",
                        "positions")
    values = src.decode(node.children["values"]).reshape(-1)
    return NMForm(rows, cols, n, m, pos, values)


def _form_svd(node, src, rows, cols):
    u = _build(node.children["u"], src)
    v = _build(node.children["v"], src)
    return LowRankForm("svd", [u, v], node.shape)


def _form_tucker2(node, src, rows, cols):
    first = _build(node.children["first"], src)
    core = _build(node.children["core"], src)
    last = _build(node.children["last"], src)
    return LowRankForm("tucker2", [first, core, last], node.shape)


def _form_sum(node, src, rows, cols):
    return SumForm([_build(node.children[str(i)], src) for i in range(len(node.children))])


def _form_block(node, src, rows, cols):
    raise _NoForm("block sparsity has no kernel form yet")


# One row per codec: codec name -> builder(node, src, rows, cols) -> Form.
FORM_BUILDERS = {
    "dense": _form_dense,
    "codebook": _form_codebook,
    "affine": _form_affine,
    "relidx": _form_relidx,
    "nm": _form_nm,
    "svd": _form_svd,
    "tucker2": _form_tucker2,
    "sum": _form_sum,
    "block": _form_block,
}


def _build(node: NodeDesc, src: _Src) -> Form:
    rows, cols = view2d(node.shape)
    return FORM_BUILDERS[node.codec](node, src, rows, cols)


def build_form(file, name: str, log: BuildLog | None = None, *, conv_groups: int = 1) -> Form:
    """The kernel form of tensor ``name`` of an open ``CzFile``. Falls back to a DenseForm
    (decoded by the file's own decoder) when some node of the tree has no fast form; the
    reason is recorded in ``log.fallbacks[name]`` and in the form's ``fallback``."""
    entry = file.entry(name)
    src = _Src(file, name)
    try:
        if entry.enc.codec == "tucker2" and conv_groups != 1:
            raise _NoForm("tucker2 of a grouped conv")
        form = _build(entry.enc, src)
    except _NoForm as why:
        w = np.asarray(file[name], dtype=np.float32)
        form = DenseForm(w.reshape(view2d(w.shape)), fallback=str(why))
        if log is not None:
            log.fallbacks[name] = str(why)
    except CorruptionError as err:
        err.located(tensor=name)
        raise
    form.shape = tuple(entry.shape)     # the weight's own shape (conv: O, I/g, kh, kw)
    if log is not None:
        log.forms[name] = form.describe()
    return form


def dense_bytes(shape: tuple[int, ...]) -> int:
    """What the weight would take as float32 (for ratios)."""
    return 4 * math.prod(shape)
