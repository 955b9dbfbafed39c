"""Pruning masks (bool arrays, True = keep).

Granularities follow Mao et al. 2017, "Exploring the Regularity of Sparse Structure in
Convolutional Neural Networks": coarser units (vectors, kernels, filters, channels,
blocks) cost a little accuracy but give regular sparsity that index encodings and
hardware exploit. Every unit is ranked by its L1 norm; exactly
``round(sparsity * n_units)`` units are removed; ties are broken by position (stable
order) so the same weights always give the same mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from czmodel.errors import EncodeError

from ._util import (
    as_float_array,
    check_choice,
    check_fraction,
    check_int,
    check_mask,
    prune_lowest,
    view2d,
)

GRANULARITIES = ("element", "vector", "kernel", "filter", "channel", "block")


def _block_saliency(a: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """Mean |w| per (bh, bw) block of the 2-D view (edge blocks may be partial).

    Mean rather than sum so a partial edge block is not ranked low merely for being
    smaller; for full blocks this orders exactly like the L1 norm.
    """
    rows, cols = a.shape
    bh, bw = block
    nbr, nbc = -(-rows // bh), -(-cols // bw)
    padded = np.zeros((nbr * bh, nbc * bw), dtype=np.float64)
    padded[:rows, :cols] = a
    counts = np.zeros_like(padded)
    counts[:rows, :cols] = 1.0
    s = padded.reshape(nbr, bh, nbc, bw).sum(axis=(1, 3))
    c = counts.reshape(nbr, bh, nbc, bw).sum(axis=(1, 3))
    return s / c


def _check_block(block: object) -> tuple[int, int]:
    if block is None:
        raise EncodeError("granularity 'block' needs block=(bh, bw)")
    if not isinstance(block, (tuple, list)) or len(block) != 2:
        raise EncodeError(f"block must be a pair (bh, bw), got {block!r}")
    return (check_int(block[0], "block[0]", 1), check_int(block[1], "block[1]", 1))


def magnitude_mask(w: np.ndarray, sparsity: float, granularity: str = "element", *,
                   block: tuple[int, int] | None = None) -> np.ndarray:
    """Keep-mask pruning exactly ``round(sparsity * units)`` lowest-L1 units of ``w``.

    Units per granularity:
      element  every weight;
      vector   a slice along the last axis, ``w[..., :]`` (for a conv a kernel row along kw);
      kernel   a ``(kh, kw)`` slice ``w[o, i]`` of a 4-D conv weight (O, I, kh, kw);
      filter   a whole output channel ``w[o]``;
      channel  an input channel across all filters ``w[:, i]``;
      block    a ``(bh, bw)`` block of the 2-D view (rows = shape[0], cols = prod(rest)).
    """
    a = np.abs(as_float_array(w))
    s = check_fraction(sparsity, "sparsity")
    check_choice(granularity, "granularity", GRANULARITIES)
    if block is not None and granularity != "block":
        raise EncodeError(f"block= is only used with granularity 'block', not {granularity!r}")

    if granularity == "element":
        sal = a
    elif granularity == "vector":
        if a.ndim < 2:
            raise EncodeError("granularity 'vector' needs ndim >= 2 (a 1-D array is one vector)")
        sal = a.sum(axis=-1)
    elif granularity == "kernel":
        if a.ndim != 4:
            raise EncodeError(f"granularity 'kernel' needs a 4-D conv weight, got shape {a.shape}")
        sal = a.sum(axis=(2, 3))
    elif granularity == "filter":
        if a.ndim < 2:
            raise EncodeError(f"granularity 'filter' needs ndim >= 2, got shape {a.shape}")
        sal = a.reshape(a.shape[0], -1).sum(axis=1)
    elif granularity == "channel":
        if a.ndim < 2:
            raise EncodeError(f"granularity 'channel' needs ndim >= 2, got shape {a.shape}")
        sal = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1).sum(axis=1)
    else:
        bh, bw = _check_block(block)
        sal = _block_saliency(view2d(a), (bh, bw))

    n_units = sal.size
    k = int(round(s * n_units))
    keep = prune_lowest(np.ascontiguousarray(sal).ravel(), k).reshape(sal.shape)

    # Expand the per-unit decision back to one bool per weight.
    if granularity == "element":
        return keep
    if granularity == "vector":
        return np.broadcast_to(keep[..., None], a.shape).copy()
    if granularity == "kernel":
        return np.broadcast_to(keep[:, :, None, None], a.shape).copy()
    if granularity == "filter":
        return np.broadcast_to(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a.shape).copy()
    if granularity == "channel":
        shape = (1, -1) + (1,) * (a.ndim - 2)
        return np.broadcast_to(keep.reshape(shape), a.shape).copy()
    rows, cols = view2d(a).shape
    full = np.repeat(np.repeat(keep, bh, axis=0), bw, axis=1)[:rows, :cols]
    return full.reshape(a.shape)


def han_mask(w: np.ndarray, quality: float) -> np.ndarray:
    """Han et al. 2015 threshold rule: prune |w| < quality * std(w).

    The threshold scales with each layer's spread, so one ``quality`` works across layers.
    """
    a = as_float_array(w)
    q = float(quality)
    if not np.isfinite(q) or q < 0:
        raise EncodeError(f"quality must be a finite number >= 0, got {quality!r}")
    return np.abs(a) >= q * float(np.std(a, dtype=np.float64))


def nm_mask(w: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """N:M structured sparsity: in every group of ``m`` consecutive weights along the
    columns of the 2-D view keep the ``n`` largest |w| (ties: first position wins).

    2:4 is what sparse tensor cores accelerate; the pattern holds row by row.
    """
    a = as_float_array(w)
    m = check_int(m, "m", 1)
    n = check_int(n, "n", 0, m)
    v = np.abs(view2d(a))
    rows, cols = v.shape
    if cols % m:
        raise EncodeError(f"N:M pruning needs the column count {cols} (2-D view of shape "
                          f"{a.shape}) to be a multiple of m={m}")
    g = v.reshape(rows, cols // m, m)
    # Stable sort on -|w| so equal magnitudes keep the earlier position.
    order = np.argsort(-g, axis=-1, kind="stable")[..., :n]
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return keep.reshape(a.shape)


def global_magnitude_masks(weights: Mapping[str, np.ndarray],
                           sparsity: float) -> dict[str, np.ndarray]:
    """Element masks with one magnitude threshold shared by all layers.

    Exactly ``round(sparsity * total)`` weights are pruned overall; layers with many
    small weights lose more than others (the point of a global threshold).
    """
    s = check_fraction(sparsity, "sparsity")
    if not weights:
        return {}
    arrays = {name: np.abs(as_float_array(w, name)) for name, w in weights.items()}
    flat = np.concatenate([a.ravel().astype(np.float64, copy=False) for a in arrays.values()])
    keep = prune_lowest(flat, int(round(s * flat.size)))
    out: dict[str, np.ndarray] = {}
    pos = 0
    for name, a in arrays.items():
        out[name] = keep[pos:pos + a.size].reshape(a.shape)
        pos += a.size
    return out


def shrink_filters(w: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Physically remove pruned output channels.

    ``mask`` is either a per-filter bool vector of length ``w.shape[0]`` or a full-shape
    mask that is filter-structured (each ``w[o]`` entirely kept or entirely pruned).
    Returns ``(kept, w[kept])`` with ``kept`` the ascending kept channel indices. The same
    ``kept`` must be applied to this layer's bias/BatchNorm vectors and, via
    :func:`drop_input_channels`, to the next layer's input channels.
    """
    a = np.asarray(w)
    if a.ndim < 1:
        raise EncodeError("shrink_filters needs an array with ndim >= 1")
    mk = np.asarray(mask)
    if mk.dtype != np.bool_:
        raise EncodeError(f"mask must be a bool array, got dtype {mk.dtype}")
    if mk.shape == (a.shape[0],) and a.ndim > 1:
        per_filter = mk
    else:
        mk = check_mask(mk, a.shape)
        flat = mk.reshape(a.shape[0], -1)
        per_filter = flat.any(axis=1)
        if not np.array_equal(per_filter, flat.all(axis=1)):
            raise EncodeError("mask is not filter-structured: some output channels are "
                              "partially kept (use granularity='filter')")
    kept = np.flatnonzero(per_filter)
    return kept, a[kept]


def drop_input_channels(w_next: np.ndarray, kept: np.ndarray, *,
                        channel_width: int = 1) -> np.ndarray:
    """Drop the input channels of the following layer that a filter pruning removed.

    ``w_next`` has input channels on axis 1 (conv ``(O, I, kh, kw)`` or linear ``(O, I)``).
    When a Linear follows a flatten of ``C x H x W`` features, each channel owns
    ``channel_width = H * W`` consecutive columns; pass it so whole spans are dropped.
    """
    a = np.asarray(w_next)
    if a.ndim < 2:
        raise EncodeError(f"w_next must have ndim >= 2 (inputs on axis 1), got shape {a.shape}")
    cw = check_int(channel_width, "channel_width", 1)
    k = np.asarray(kept, dtype=np.int64).ravel()
    if a.shape[1] % cw:
        raise EncodeError(f"w_next has {a.shape[1]} inputs, not a multiple of channel_width={cw}")
    n_ch = a.shape[1] // cw
    if k.size and (k.min() < 0 or k.max() >= n_ch):
        raise EncodeError(f"kept channel indices must lie in [0, {n_ch}), got range "
                          f"[{k.min()}, {k.max()}]")
    cols = (k[:, None] * cw + np.arange(cw)[None, :]).ravel()
    return a[:, cols]
