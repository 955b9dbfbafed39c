"""``codebook``: weight sharing, w = centroids[index] (binary, ternary and power-of-two
weights are small codebooks). One codebook for the tensor, or one per slice along ``axis``.
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
    param_int,
    register,
)
from czmodel.errors import EncodeError, FormatError


def _params(node: NodeDesc) -> tuple[int, int | None]:
    k = param_int(node, "k", 1, 256)
    axis = param_int(node, "axis", 0, len(node.shape) - 1, optional=True)
    return k, axis


def _split(shape: tuple[int, ...], axis: int | None) -> tuple[int, int, int]:
    if axis is None:
        return 1, 1, math.prod(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


@register
class Codebook(Codec):
    name = "codebook"
    roles = {"indices": Role(("u8",), symbols=True),
             "centroids": Role(("f32", "f16"))}
    params = ("k", "axis")

    def check(self, node: NodeDesc) -> None:
        k, axis = _params(node)
        bits = U.expect_bits_range(node, "indices", 1, 8)
        if k > (1 << bits):
            raise FormatError(f"codebook: k={k} does not fit in {bits}-bit indices",
                              path=node.streams["indices"].path)
        expect_n(node, "indices", node.size)
        expect_n(node, "centroids", k if axis is None else node.shape[axis] * k)

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
        k, axis = _params(node)
        idx = U.get_index(ctx, node, "indices")
        cent = U.get_floats(ctx, node, "centroids")
        outer, nch, inner = _split(node.shape, axis)
        if ctx.reference:
            bad = np.flatnonzero(idx >= k)
            if bad.size:
                raise U.corrupt(node, f"index {int(idx[bad[0]])} >= k={k} at element "
                                      f"{int(bad[0])}", "indices")
            chan = np.broadcast_to(np.arange(nch, dtype=np.int64).reshape(1, nch, 1),
                                   (outer, nch, inner)).reshape(-1)
            out = cent[chan * k + idx]
        else:
            out = np.empty(node.size, np.float32)
            at = _codebook(idx, cent, outer, nch, inner, k, out)
            if at >= 0:
                raise U.corrupt(node, f"index {int(idx[at])} >= k={k} at element {at}",
                                "indices")
        return out.reshape(node.shape)


@njit(cache=True)
def _codebook(idx, cent, outer, nch, inner, k, out):  # pragma: no cover
    """Returns -1, or the first element whose index is >= k (nothing read out of bounds)."""
    i = 0
    for _o in range(outer):
        for c in range(nch):
            base = c * k
            for _j in range(inner):
                t = np.int64(idx[i])
                if t >= k:
                    return i
                out[i] = cent[base + t]
                i += 1
    return -1


def codebook(indices, centroids, *, bits: int | None = None, axis: int | None = None,
             centroid_dtype: str = "f32", entropy: str = "auto") -> Node:
    """Weight sharing: ``indices`` (integer array, the tensor's shape) into ``centroids``.

    ``centroids`` is 1-D of length k (one codebook), or (shape[axis], k) when ``axis`` is
    given (row c is the codebook of slice c). ``bits`` defaults to the fewest bits that
    hold k.
    """
    ia = np.asarray(indices)
    if ia.dtype == np.bool_ or not np.issubdtype(ia.dtype, np.integer):
        raise EncodeError(f"codebook: indices must be an integer array, got dtype {ia.dtype}")
    shape = check_builder_shape(ia.shape)
    axis = U.need_axis(axis, len(shape), "codebook: axis")
    ca = U.need_float_array(centroids, "codebook: centroids")
    if axis is None:
        if ca.ndim != 1:
            raise EncodeError(f"codebook: centroids must be 1-D (k,), got shape {ca.shape}")
        k = ca.shape[0]
    else:
        if ca.ndim != 2 or ca.shape[0] != shape[axis]:
            raise EncodeError(f"codebook: per-channel centroids must have shape "
                              f"({shape[axis]}, k), got {ca.shape}")
        k = ca.shape[1]
    if not 1 <= k <= 256:
        raise EncodeError(f"codebook: k={k} must be in [1, 256]")
    if bits is None:
        bits = U.min_bits(k)
    bits = U.need_int(bits, "codebook: bits", 1, 8)
    if k > (1 << bits):
        raise EncodeError(f"codebook: k={k} needs more than bits={bits}")
    if ia.size:
        mn, mx = int(ia.min()), int(ia.max())
        if mn < 0 or mx >= k:
            raise EncodeError(f"codebook: indices span [{mn}, {mx}], outside [0, {k - 1}]")
    params: dict = {"k": k}
    if axis is not None:
        params["axis"] = axis
    return Node("codebook", shape, params,
                {"indices": U.symbol_stream(ia.reshape(-1), bits, "weight", entropy),
                 "centroids": U.float_stream(ca, centroid_dtype, "codebook: centroids",
                                             entropy)})
