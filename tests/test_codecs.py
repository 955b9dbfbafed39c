"""Codec round trips (reference and fast path, bit-exact) and hostile-input tests."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from codec_helpers import decode, make_desc, roundtrip, same_bits, to_desc, with_stream
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from czmodel.codecs import (
    REGISTRY,
    add,
    affine,
    block,
    choose_gap_bits,
    codebook,
    dense,
    nm,
    relidx,
    relidx_gaps,
    sum_,
    svd,
    tucker2,
)
from czmodel.codecs.base import view2d
from czmodel.errors import CorruptionError, CzError, EncodeError, FormatError

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
BOTH = pytest.mark.parametrize("reference", [True, False], ids=["reference", "fast"])

shapes = st.lists(st.integers(0, 6), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**32 - 1)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def f32(rs: np.random.Generator, n) -> np.ndarray:
    return rs.standard_normal(n).astype(np.float32)


def both_fail(d, arrays, exc=CorruptionError) -> None:
    for reference in (True, False):
        with pytest.raises(exc) as ei:
            decode(d, arrays, reference=reference)
        assert ei.value.path is not None


def test_registry_has_every_codec():
    assert set(REGISTRY) >= {"dense", "affine", "codebook", "relidx", "nm", "block", "svd",
                             "tucker2", "sum"}
    assert list(REGISTRY)[0] == "dense"
    assert getattr(REGISTRY["sum"], "variadic_children", False) is True


# ----------------------------------------------------------------------------- affine


def affine_expected(q, scale, zp, axis, group) -> np.ndarray:
    """Independent oracle: broadcast the scale to the full tensor, then one f32 multiply."""
    q = q.astype(np.int64)
    shape = q.shape
    if axis is not None:
        bshape = [1] * len(shape)
        bshape[axis] = shape[axis]
        s = np.broadcast_to(scale.reshape(bshape), shape)
        z = np.broadcast_to(zp.reshape(bshape), shape) if zp is not None else 0
    elif group is not None:
        rows, cols = view2d(shape)
        ng = -(-cols // group)
        s = np.repeat(scale.reshape(rows, ng), group, axis=1)[:, :cols].reshape(shape)
        z = (np.repeat(zp.reshape(rows, ng), group, axis=1)[:, :cols].reshape(shape)
             if zp is not None else 0)
    else:
        s = scale.reshape(())
        z = zp.reshape(()) if zp is not None else 0
    return (q - z).astype(np.float32) * s.astype(np.float32)


@FAST
@given(shape=shapes, seed=seeds, bits=st.integers(2, 8), signed=st.booleans(),
       mode=st.sampled_from(["tensor", "channel", "group"]), use_zp=st.booleans(),
       f16=st.booleans(), data=st.data())
def test_affine_roundtrip(shape, seed, bits, signed, mode, use_zp, f16, data):
    rs = rng(seed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1))) if signed else (0, 1 << bits)
    q = rs.integers(lo, hi, size=shape).astype(np.int16)
    axis = group = None
    if mode == "channel":
        axis = data.draw(st.integers(0, len(shape) - 1))
        n = shape[axis]
    elif mode == "group":
        group = data.draw(st.integers(1, 8))
        rows, cols = view2d(shape)
        n = rows * -(-cols // group)
    else:
        n = 1
    scale = (rs.random(n) + 0.01).astype(np.float16 if f16 else np.float32)
    zp = rs.integers(lo, hi, size=n) if use_zp else None
    node = affine(q, scale, zp, bits=bits, signed=signed, axis=axis, group_size=group)
    out = roundtrip(node)
    assert out.dtype == np.float32
    assert same_bits(out, affine_expected(q, scale, zp, axis, group))


@BOTH
def test_affine_int4_and_int8(reference):
    q4 = np.array([[-7, -1, 0, 7], [3, -8, 5, 1]], np.int8)
    node = affine(q4, np.float32(0.5), bits=4, signed=True)
    assert list(node.streams["q"].data[:4]) == [9, 15, 0, 7]       # low nibbles
    d, arrays = to_desc(node)
    assert same_bits(decode(d, arrays, reference=reference), q4.astype(np.float32) * 0.5)
    u4 = np.array([0, 15, 8], np.uint8)
    d, arrays = to_desc(affine(u4, [2.0], [8], bits=4, signed=False))
    assert same_bits(decode(d, arrays, reference=reference),
                     np.array([-16, 14, 0], np.float32))
    q8 = np.array([-128, 127, -3], np.int16)
    node = affine(q8, [0.25], bits=8)
    assert list(node.streams["q"].data) == [128, 127, 253]
    d, arrays = to_desc(node)
    assert same_bits(decode(d, arrays, reference=reference),
                     np.array([-32, 31.75, -0.75], np.float32))


def test_affine_group_not_dividing_cols():
    q = np.arange(2 * 7).reshape(2, 7) % 16 - 8
    scale = np.arange(1, 2 * 3 + 1, dtype=np.float32)        # ceil(7/3) = 3 groups per row
    out = roundtrip(affine(q, scale, bits=4, group_size=3))
    assert same_bits(out, affine_expected(q, scale, None, None, 3))


def test_affine_builder_errors():
    with pytest.raises(EncodeError, match="range"):
        affine(np.array([8]), [1.0], bits=4, signed=True)
    with pytest.raises(EncodeError, match="range"):
        affine(np.array([-1]), [1.0], bits=4, signed=False)
    with pytest.raises(EncodeError, match="integer"):
        affine(np.array([1.5]), [1.0])
    with pytest.raises(EncodeError, match="exclusive"):
        affine(np.zeros((2, 2), int), [1.0, 1.0], axis=0, group_size=1)
    with pytest.raises(EncodeError, match="expected 3"):
        affine(np.zeros((3, 2), int), [1.0], axis=0)
    with pytest.raises(EncodeError):
        affine(np.zeros(3, int), [1.0], bits=9)
    with pytest.raises(EncodeError, match="finite"):
        affine(np.zeros(3, int), [np.nan])
    assert affine(np.zeros((3, 2), int), [1.0, 2.0], axis=-1).params["axis"] == 1


def test_affine_check_faults():
    good = affine(np.zeros((3, 4), int), np.ones(3, np.float32), axis=0, bits=4)
    d, arrays = to_desc(good)
    from dataclasses import replace
    codec = REGISTRY["affine"]
    for params, exc in [({"bits": 4, "signed": True, "axis": 2}, FormatError),
                        ({"bits": 9, "signed": True}, FormatError),
                        ({"bits": 4, "signed": 1}, FormatError),
                        ({"bits": 4, "signed": True, "axis": 0, "group_size": 2}, FormatError),
                        ({"bits": 4, "signed": True, "axis": 1}, CorruptionError),
                        ({"bits": 5, "signed": True, "axis": 0}, FormatError),
                        ({"bits": 4, "signed": True, "group_size": 0}, FormatError)]:
        with pytest.raises(exc):
            codec.check(replace(d, params=params))
    bad, _ = make_desc("affine", (3, 4), {"bits": 4, "signed": True},
                       {"q": ("u8", 4, np.zeros(11)), "scale": ("f32", None, [1.0])})
    with pytest.raises(CorruptionError):
        codec.check(bad)
    bad, _ = make_desc("affine", (3, 4), {"bits": 4, "signed": True},
                       {"q": ("u8", 4, np.zeros(12)), "scale": ("f32", None, [1.0]),
                        "zero_point": ("u8", 4, [1, 2])})
    with pytest.raises(CorruptionError):
        codec.check(bad)


# ----------------------------------------------------------------------------- codebook


@FAST
@given(shape=shapes, seed=seeds, k=st.integers(1, 256), per_channel=st.booleans(),
       extra_bits=st.integers(0, 2), f16=st.booleans(), data=st.data())
def test_codebook_roundtrip(shape, seed, k, per_channel, extra_bits, f16, data):
    rs = rng(seed)
    idx = rs.integers(0, k, size=shape)
    axis = data.draw(st.integers(0, len(shape) - 1)) if per_channel else None
    cent = f32(rs, (shape[axis], k) if axis is not None else k)
    bits = min(8, max(1, (k - 1).bit_length()) + extra_bits)
    node = codebook(idx, cent, bits=bits, axis=axis, centroid_dtype="f16" if f16 else "f32")
    assert node.streams["indices"].bits == bits
    out = roundtrip(node)
    c = cent.astype(np.float16).astype(np.float32) if f16 else cent
    if axis is None:
        want = c[idx]
    else:
        want = c[np.indices(shape)[axis], idx]          # channel of each element, index
    assert same_bits(out, np.ascontiguousarray(want, dtype=np.float32))


def test_codebook_binary_ternary_defaults():
    b = codebook(np.array([0, 1, 1, 0]), np.array([-1.0, 1.0]))
    assert b.streams["indices"].bits == 1 and b.params == {"k": 2}
    assert same_bits(roundtrip(b), np.array([-1, 1, 1, -1], np.float32))
    t = codebook(np.array([[0, 1, 2]]), np.array([-0.5, 0.0, 0.5]))
    assert t.streams["indices"].bits == 2
    assert same_bits(roundtrip(t), np.array([[-0.5, 0, 0.5]], np.float32))


def test_codebook_builder_errors():
    with pytest.raises(EncodeError, match="outside"):
        codebook(np.array([0, 3]), np.zeros(3))
    with pytest.raises(EncodeError, match="bits"):
        codebook(np.array([0, 1]), np.zeros(3), bits=1)
    with pytest.raises(EncodeError, match="k=257"):
        codebook(np.array([0]), np.zeros(257))
    with pytest.raises(EncodeError, match="per-channel"):
        codebook(np.zeros((2, 3), int), np.zeros(4), axis=0)
    with pytest.raises(EncodeError, match="'f32' or 'f16'"):
        codebook(np.zeros(2, int), np.zeros(2), centroid_dtype="f64")


def test_codebook_index_out_of_range():
    d, arrays = to_desc(codebook(np.array([0, 1, 2, 1]), np.array([1.0, 2.0, 3.0])))
    both_fail(d, with_stream(d, arrays, "indices", [0, 1, 3, 1]))
    rs = rng(1)
    d, arrays = to_desc(codebook(rs.integers(0, 5, (3, 4)), f32(rs, (3, 5)), axis=0))
    bad = arrays[d.streams["indices"].sec].copy()
    bad[-1] = 7
    both_fail(d, with_stream(d, arrays, "indices", bad))


def test_codebook_check_faults():
    codec = REGISTRY["codebook"]
    cases = [({"k": 5}, 2, 4, 5, FormatError),          # k > 2**bits
             ({"k": 0}, 2, 4, 0, FormatError),
             ({"k": 3}, 2, 3, 3, CorruptionError),      # indices count
             ({"k": 3}, 2, 4, 4, CorruptionError),      # centroids count
             ({"k": 3, "axis": 0}, 2, 4, 3, CorruptionError),
             ({"k": 3, "axis": 2}, 2, 4, 6, FormatError)]
    for params, bits, nidx, ncent, exc in cases:
        d, _ = make_desc("codebook", (2, 2), params,
                         {"indices": ("u8", bits, np.zeros(nidx)),
                          "centroids": ("f32", None, np.zeros(ncent))})
        with pytest.raises(exc):
            codec.check(d)


# ----------------------------------------------------------------------------- relidx


def sparse_case(rs, shape, density):
    mask = rs.random(shape) < density
    vals = f32(rs, int(mask.sum()))
    want = np.zeros(shape, np.float32)
    want[mask] = vals
    return mask, vals, want


@FAST
@given(shape=shapes, seed=seeds, density=st.sampled_from([0.0, 0.05, 0.3, 0.9, 1.0]),
       gap_bits=st.one_of(st.none(), st.integers(2, 8)), ptr=st.sampled_from([None, "u64"]),
       vcodec=st.sampled_from(["dense", "codebook", "affine"]))
def test_relidx_roundtrip(shape, seed, density, gap_bits, ptr, vcodec):
    rs = rng(seed)
    mask, vals, want = sparse_case(rs, shape, density)
    if vcodec == "codebook":
        cent = f32(rs, 4)
        idx = rs.integers(0, 4, vals.size)
        vals, vnode = cent[idx], codebook(idx, cent)
    elif vcodec == "affine":
        q = rs.integers(-8, 8, vals.size)
        vals, vnode = (q * np.float32(0.125)).astype(np.float32), affine(q, [0.125], bits=4)
    else:
        vnode = dense(vals)
    want = np.zeros(shape, np.float32)
    want[mask] = vals
    node = relidx(mask, vnode, gap_bits=gap_bits, ptr_dtype=ptr)
    assert same_bits(roundtrip(node), want)


def test_relidx_filler_chains():
    # gap_bits=2: M=3, a skip of 10 zeros is 3 fillers + gap 1
    mask = np.zeros((3, 23), bool)
    mask[0, [10, 11, 22]] = True
    mask[2, [0, 6]] = True
    vals = np.arange(1, 6, dtype=np.float32)
    gaps, gp, vp = relidx_gaps(mask, 2)
    assert list(gaps[:gp[1]]) == [3, 3, 3, 1, 0, 3, 3, 3, 1]
    assert list(gp) == [0, 9, 9, 12] and list(vp) == [0, 3, 3, 5]
    assert list(gaps[gp[2]:]) == [0, 3, 2]
    want = np.zeros(mask.shape, np.float32)
    want[mask] = vals
    assert same_bits(roundtrip(relidx(mask, dense(vals), gap_bits=2)), want)


def test_relidx_choose_gap_bits():
    assert choose_gap_bits(np.ones((4, 4), bool)) == 2        # all gaps 0: smallest k wins
    m = np.zeros((1, 1000), bool)
    m[0, ::100] = True                                         # skips of 99
    # k=7 (M=127) stores 10 gaps * 7 bits, k=6 needs 1 filler each: 20 * 6 = 120 > 70
    assert choose_gap_bits(m) == 7
    for mask in [np.zeros((3, 0), bool), np.zeros((0, 5), bool), np.zeros(7, bool)]:
        assert 2 <= choose_gap_bits(mask) <= 8
        roundtrip(relidx(mask, dense(np.zeros(0, np.float32))))


def test_relidx_gaps_fast_on_large_matrix():
    rs = rng(3)
    mask = rs.random((30522, 384)) < 0.1
    t = time.perf_counter()
    gaps, gp, vp = relidx_gaps(mask, choose_gap_bits(mask))
    assert time.perf_counter() - t < 10
    assert vp[-1] == mask.sum() and gp[-1] == gaps.size


def test_relidx_1d_and_conv_shapes():
    rs = rng(4)
    for shape in [(17,), (4, 3, 3, 3), (1, 50)]:
        mask, vals, want = sparse_case(rs, shape, 0.2)
        assert same_bits(roundtrip(relidx(mask, dense(vals))), want)


def test_relidx_builder_errors():
    with pytest.raises(EncodeError, match="shape"):
        relidx(np.ones(3, bool), dense(np.zeros(2, np.float32)))
    with pytest.raises(EncodeError, match="boolean"):
        relidx(np.ones(3), dense(np.zeros(3, np.float32)))
    with pytest.raises(EncodeError, match="Node"):
        relidx(np.ones(3, bool), np.zeros(3))
    with pytest.raises(EncodeError):
        relidx(np.ones(3, bool), dense(np.zeros(3, np.float32)), gap_bits=9)
    with pytest.raises(EncodeError, match="ptr_dtype"):
        relidx(np.ones(3, bool), dense(np.zeros(3, np.float32)), ptr_dtype="u16")
    with pytest.raises(EncodeError, match="dimension"):
        relidx(np.array(True), dense(np.zeros(1, np.float32)))


def relidx_desc(gaps, gap_ptr, val_ptr, nvals, shape=(2, 5), gap_bits=2, pdt="u32"):
    vals = to_desc(dense(np.arange(1, nvals + 1, dtype=np.float32)), check=False)
    d, arrays = make_desc("relidx", shape, {"gap_bits": gap_bits},
                          {"gaps": ("u8", gap_bits, gaps), "gap_ptr": (pdt, None, gap_ptr),
                           "val_ptr": (pdt, None, val_ptr)}, {"values": vals})
    from codec_helpers import check_tree
    check_tree(d)
    return d, arrays


def test_relidx_valid_hand_built():
    # row 0: gap 1 -> col 1, filler -> p=5 (== cols, allowed), row 1: gaps 0,2 -> cols 0,3
    d, arrays = relidx_desc([1, 3, 0, 2], [0, 2, 4], [0, 1, 3], 3, shape=(2, 5))
    want = np.array([[0, 1, 0, 0, 0], [2, 0, 0, 3, 0]], np.float32)
    for reference in (True, False):
        assert same_bits(decode(d, arrays, reference=reference), want)


@pytest.mark.parametrize("gaps,gp,vp,nv,shape", [
    ([2, 2, 0], [0, 2, 3], [0, 2, 3], 3, (2, 4)),       # value lands at p=4 >= cols
    ([3, 3], [0, 2, 2], [0, 0, 0], 0, (2, 5)),          # fillers walk to p=6 > cols
    ([0, 0], [0, 2, 2], [0, 1, 2], 2, (2, 4)),          # row 0 consumes 2 values, has 1
    ([0], [0, 1, 1], [0, 0, 1], 1, (2, 4)),             # row 0 consumes 1, has 0
    ([0, 0], [1, 1, 2], [0, 1, 2], 2, (2, 4)),          # gap_ptr[0] != 0
    ([0, 0], [0, 1, 2], [1, 1, 2], 2, (2, 4)),          # val_ptr[0] != 0
    ([0, 0], [0, 2, 1], [0, 1, 2], 2, (2, 4)),          # gap_ptr decreases... and last
    ([0, 0], [0, 3, 2], [0, 1, 2], 2, (2, 4)),          # gap_ptr decreases, past the end
    ([0, 0], [0, 1, 2], [0, 2, 1], 1, (2, 4)),          # val_ptr decreases
    ([0, 0], [0, 1, 3], [0, 1, 2], 2, (2, 4)),          # gap_ptr[rows] != len(gaps)
    ([0, 0], [0, 1, 2], [0, 1, 1], 2, (2, 4)),          # val_ptr[rows] != nnz
    ([0, 0], [0, 1, 2**32 - 1], [0, 1, 2], 2, (2, 4)),  # huge pointer
])
def test_relidx_corrupt_streams(gaps, gp, vp, nv, shape):
    for pdt in ("u32", "u64"):
        d, arrays = relidx_desc(gaps, gp, vp, nv, shape=shape, pdt=pdt)
        both_fail(d, arrays)


def test_relidx_huge_u64_pointer():
    d, arrays = relidx_desc([0, 0], [0, 2**63 + 1, 2], [0, 1, 2], 2, shape=(2, 4), pdt="u64")
    both_fail(d, arrays)


def test_relidx_check_faults():
    vals = to_desc(dense(np.zeros(3, np.float32)), check=False)
    vals2d = to_desc(dense(np.zeros((1, 3), np.float32)), check=False)
    codec = REGISTRY["relidx"]
    cases = [((2, 4), {"gap_bits": 2}, 2, [0, 0], [0, 0, 0], vals, CorruptionError),
             ((2, 4), {"gap_bits": 2}, 2, [0, 0, 0], [0, 0], vals, CorruptionError),
             ((2, 4), {"gap_bits": 2}, 3, [0, 0, 0], [0, 0, 0], vals, FormatError),
             ((2, 4), {"gap_bits": 1}, 1, [0, 0, 0], [0, 0, 0], vals, FormatError),
             ((2, 4), {"gap_bits": 2}, 2, [0, 0, 0], [0, 0, 0], vals2d, CorruptionError),
             ((1, 2), {"gap_bits": 2}, 2, [0, 0], [0, 0], vals, CorruptionError),
             ((), {"gap_bits": 2}, 2, [0, 0], [0, 0], vals, FormatError)]
    for shape, params, bits, gp, vp, child, exc in cases:
        d, _ = make_desc("relidx", shape, params,
                         {"gaps": ("u8", bits, [0]), "gap_ptr": ("u32", None, gp),
                          "val_ptr": ("u32", None, vp)}, {"values": child})
        with pytest.raises(exc):
            codec.check(d)


@settings(max_examples=150, deadline=None)
@given(rows=st.integers(0, 3), cols=st.integers(0, 6), gap_bits=st.integers(2, 3),
       gaps=st.lists(st.integers(0, 7), max_size=12), nv=st.integers(0, 8),
       gp_mid=st.lists(st.integers(0, 12), min_size=3, max_size=3),
       vp_mid=st.lists(st.integers(0, 8), min_size=3, max_size=3), tamper=st.booleans())
def test_relidx_fuzz_paths_agree(rows, cols, gap_bits, gaps, nv, gp_mid, vp_mid, tamper):
    """Random stream contents: both paths succeed identically or both raise CorruptionError."""
    gaps = [g % (1 << gap_bits) for g in gaps]
    gp = [0] + sorted(gp_mid[:max(rows - 1, 0)]) + [len(gaps)] if rows else [0]
    vp = [0] + sorted(vp_mid[:max(rows - 1, 0)]) + [nv] if rows else [0]
    if tamper and rows:
        gp[-1 if len(gp) < 3 else 1], vp[0] = gp_mid[0], vp_mid[1]
    if nv > rows * cols:
        nv = rows * cols
        vp[-1] = nv
    d, arrays = relidx_desc(gaps, gp, vp, nv, shape=(rows, cols), gap_bits=gap_bits)
    results = []
    for reference in (True, False):
        try:
            results.append(decode(d, arrays, reference=reference))
        except CorruptionError:
            results.append(None)
    event("corrupt" if results[0] is None else "decoded")
    if results[0] is None or results[1] is None:
        assert results[0] is None and results[1] is None
    else:
        assert same_bits(results[0], results[1])


# ----------------------------------------------------------------------------- nm


def nm_mask(rs, shape, n, m):
    rows, cols = view2d(shape)
    groups = rows * cols // m
    keys = rs.random((groups, m))
    keep = np.argsort(keys, axis=1)[:, :n]
    mask = np.zeros((groups, m), bool)
    np.put_along_axis(mask, keep, True, axis=1)
    return mask.reshape(shape)


@FAST
@given(seed=seeds, rows=st.integers(0, 5), groups=st.integers(0, 4),
       m=st.sampled_from([1, 2, 3, 4, 8, 16, 256]), data=st.data())
def test_nm_roundtrip(seed, rows, groups, m, data):
    n = data.draw(st.integers(1, m))
    rs = rng(seed)
    shape = (rows, groups * m)
    mask = nm_mask(rs, shape, n, m)
    vals = f32(rs, int(mask.sum()))
    want = np.zeros(shape, np.float32)
    want[mask] = vals
    node = nm(mask, dense(vals), n=n, m=m)
    assert node.streams["positions"].bits == max(1, math.ceil(math.log2(m)))
    assert same_bits(roundtrip(node), want)


def test_nm_2_4_conv():
    rs = rng(5)
    shape = (4, 2, 2, 2)                   # 2-D view 4 x 8: 2 groups of 4 per row
    mask = nm_mask(rs, shape, 2, 4)
    vals = f32(rs, 16)
    want = np.zeros(shape, np.float32)
    want[mask] = vals
    assert same_bits(roundtrip(nm(mask, dense(vals), n=2, m=4)), want)


def test_nm_builder_errors():
    mask = np.array([[True, True, False, False, True, False, False, False]])
    with pytest.raises(EncodeError, match="group 1 keeps 1"):
        nm(mask, dense(np.zeros(3, np.float32)), n=2, m=4)
    with pytest.raises(EncodeError, match="multiple"):
        nm(mask, dense(np.zeros(3, np.float32)), n=1, m=3)
    with pytest.raises(EncodeError):
        nm(mask, dense(np.zeros(3, np.float32)), n=5, m=4)
    good = np.array([[True, True, False, False]])
    with pytest.raises(EncodeError, match="shape"):
        nm(good, dense(np.zeros(3, np.float32)), n=2, m=4)


@pytest.mark.parametrize("pos", [[1, 1, 0, 2], [2, 1, 0, 2], [0, 3, 0, 1], [0, 1, 3, 2]])
def test_nm_corrupt_positions(pos):
    # m=3 uses 2-bit positions, so 3 is representable but out of range
    mask = np.array([[True, True, False, True, False, True]])
    d, arrays = to_desc(nm(mask, dense(np.ones(4, np.float32)), n=2, m=3))
    both_fail(d, with_stream(d, arrays, "positions", pos))


def test_nm_check_faults():
    codec = REGISTRY["nm"]
    vals = to_desc(dense(np.zeros(4, np.float32)), check=False)
    for shape, params, bits, npos, exc in [((2, 6), {"n": 2, "m": 4}, 2, 4, CorruptionError),
                                           ((2, 4), {"n": 3, "m": 2}, 1, 4, FormatError),
                                           ((2, 4), {"n": 2, "m": 4}, 3, 4, FormatError),
                                           ((2, 4), {"n": 2, "m": 4}, 2, 3, CorruptionError),
                                           ((2, 4), {"n": 1, "m": 4}, 2, 2, CorruptionError),
                                           ((2, 4), {"n": 0, "m": 4}, 2, 0, FormatError)]:
        d, _ = make_desc("nm", shape, params, {"positions": ("u8", bits, np.zeros(npos))},
                         {"values": vals})
        with pytest.raises(exc):
            codec.check(d)


# ----------------------------------------------------------------------------- block


@FAST
@given(seed=seeds, nbr=st.integers(0, 4), nbc=st.integers(0, 4), bh=st.integers(1, 4),
       bw=st.integers(1, 4), density=st.sampled_from([0.0, 0.5, 1.0]), conv=st.booleans())
def test_block_roundtrip(seed, nbr, nbc, bh, bw, density, conv):
    rs = rng(seed)
    bm = rs.random((nbr, nbc)) < density
    rows, cols = nbr * bh, nbc * bw
    full = np.zeros((rows, cols), np.float32)
    chunks = []
    for i in range(nbr):
        for j in range(nbc):
            if bm[i, j]:
                b = f32(rs, (bh, bw))
                full[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw] = b
                chunks.append(b.reshape(-1))
    vals = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    shape = (rows, 1, cols) if conv else None
    node = block(bm, dense(vals), bh=bh, bw=bw, shape=shape)
    assert same_bits(roundtrip(node), full.reshape(node.shape))


def test_block_builder_errors():
    with pytest.raises(EncodeError, match="shape"):
        block(np.ones((2, 2), bool), dense(np.zeros(7, np.float32)), bh=2, bw=2)
    with pytest.raises(EncodeError, match="2-D view"):
        block(np.ones((1, 1), bool), dense(np.zeros(4, np.float32)), bh=2, bw=2,
              shape=(4, 1))
    with pytest.raises(EncodeError, match="2-D"):
        block(np.ones(4, bool), dense(np.zeros(4, np.float32)), bh=1, bw=1)


def test_block_corrupt_mask():
    bm = np.array([[True, False], [False, True]])
    d, arrays = to_desc(block(bm, dense(np.ones(8, np.float32)), bh=2, bw=2))
    both_fail(d, with_stream(d, arrays, "mask", [1, 1, 0, 1]))     # 3 blocks, 2 stored
    both_fail(d, with_stream(d, arrays, "mask", [0, 0, 0, 1]))
    both_fail(d, with_stream(d, arrays, "mask", [2, 0, 0, 0]))     # not a bit


def test_block_check_faults():
    codec = REGISTRY["block"]
    for shape, bh, bw, nmask, nv in [((4, 5), 2, 2, 4, 4), ((4, 4), 2, 2, 3, 4),
                                     ((4, 4), 2, 2, 4, 6), ((4, 4), 2, 2, 4, 20)]:
        vals = to_desc(dense(np.zeros(nv, np.float32)), check=False)
        d, _ = make_desc("block", shape, {"bh": bh, "bw": bw},
                         {"mask": ("u8", 1, np.zeros(nmask))}, {"values": vals})
        with pytest.raises(CorruptionError):
            codec.check(d)


# ----------------------------------------------------------------------------- svd / tucker2


@FAST
@given(seed=seeds, shape=shapes, r=st.integers(0, 4))
def test_svd_roundtrip(seed, shape, r):
    rs = rng(seed)
    m, n = view2d(shape)
    u, v = f32(rs, (m, r)), f32(rs, (r, n))
    out = roundtrip(svd(dense(u), dense(v), shape))
    assert same_bits(out, np.matmul(u, v).reshape(shape))
    np.testing.assert_allclose(out, (u.astype(np.float64) @ v).reshape(shape), rtol=1e-4,
                               atol=1e-5)


def test_svd_rank0_is_zero_and_children_any_codec():
    out = roundtrip(svd(dense(np.zeros((3, 0), np.float32)), dense(np.zeros((0, 4), np.float32)),
                        (3, 2, 2)))
    assert same_bits(out, np.zeros((3, 2, 2), np.float32))
    u = codebook(np.array([[0, 1], [1, 0]]), np.array([1.0, -1.0]))
    v = dense(np.array([[1, 2], [3, 4]], np.float16))
    assert same_bits(roundtrip(svd(u, v, (2, 2))), np.array([[-2, -2], [2, 2]], np.float32))


@FAST
@given(seed=seeds, o=st.integers(0, 4), i=st.integers(0, 4), kh=st.integers(1, 3),
       kw=st.integers(1, 3), r_in=st.integers(0, 3), r_out=st.integers(0, 3))
def test_tucker2_roundtrip(seed, o, i, kh, kw, r_in, r_out):
    rs = rng(seed)
    first, core, last = f32(rs, (r_in, i)), f32(rs, (r_out, r_in, kh, kw)), f32(rs, (o, r_out))
    out = roundtrip(tucker2(dense(first), dense(core), dense(last), (o, i, kh, kw)))
    want = np.einsum("oa,abhw,bi->oihw", last.astype(np.float64), core, first)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_lowrank_errors():
    with pytest.raises(EncodeError):
        svd(dense(np.zeros((3, 2), np.float32)), dense(np.zeros((3, 4), np.float32)), (3, 4))
    with pytest.raises(EncodeError):
        svd(dense(np.zeros((2, 2), np.float32)), dense(np.zeros((2, 4), np.float32)), (3, 4))
    with pytest.raises(EncodeError, match="4-D"):
        tucker2(dense(np.zeros((1, 1))), dense(np.zeros((1, 1, 1, 1))), dense(np.zeros((1, 1))),
                (1, 1))
    with pytest.raises(EncodeError, match="core"):
        tucker2(dense(np.zeros((2, 3))), dense(np.zeros((1, 1, 1, 1))), dense(np.zeros((5, 1))),
                (5, 3, 1, 1))
    z = lambda *s: to_desc(dense(np.zeros(s, np.float32)), check=False)  # noqa: E731
    for shape, kids in [((3, 4), {"u": z(3, 2), "v": z(3, 4)}), ((3, 4), {"u": z(2, 2),
                        "v": z(2, 4)}), ((3, 4), {"u": z(3), "v": z(2, 4)})]:
        d, _ = make_desc("svd", shape, {}, {}, kids)
        with pytest.raises(CorruptionError):
            REGISTRY["svd"].check(d)
    for shape, kids in [((5, 3, 1, 1), {"first": z(2, 3), "core": z(1, 1, 1, 1),
                                        "last": z(5, 1)}),
                        ((5, 3, 1, 1), {"first": z(2, 4), "core": z(1, 2, 1, 1),
                                        "last": z(5, 1)}),
                        ((5, 3, 1), {"first": z(2, 3), "core": z(1, 2, 1, 1),
                                     "last": z(5, 1)})]:
        d, _ = make_desc("tucker2", shape, {}, {}, kids)
        with pytest.raises(CorruptionError if len(shape) == 4 else FormatError):
            REGISTRY["tucker2"].check(d)


# ----------------------------------------------------------------------------- sum


def test_sum_lowrank_plus_sparse():
    rs = rng(6)
    u, v = f32(rs, (6, 2)), f32(rs, (2, 5))
    mask, vals, sparse_want = sparse_case(rs, (6, 5), 0.2)
    node = sum_(svd(dense(u), dense(v), (6, 5)), relidx(mask, dense(vals)),
                dense(np.ones((6, 5), np.float16)))
    assert add is sum_
    want = np.matmul(u, v) + sparse_want + np.float32(1)
    assert same_bits(roundtrip(node), want)
    assert same_bits(roundtrip(sum_(dense(vals))), vals)


def test_sum_errors():
    with pytest.raises(EncodeError):
        sum_()
    with pytest.raises(EncodeError, match="shape"):
        sum_(dense(np.zeros(2, np.float32)), dense(np.zeros(3, np.float32)))
    with pytest.raises(EncodeError):
        sum_(*[dense(np.zeros(1, np.float32))] * 17)
    z = to_desc(dense(np.zeros(3, np.float32)), check=False)
    z4 = to_desc(dense(np.zeros(4, np.float32)), check=False)
    for kids, exc in [({"0": z, "2": z}, FormatError), ({}, FormatError),
                      ({"0": z, "1": z4}, CorruptionError),
                      ({str(i): z for i in range(17)}, FormatError)]:
        d, _ = make_desc("sum", (3,), {}, {}, kids)
        with pytest.raises(exc):
            REGISTRY["sum"].check(d)


# ----------------------------------------------------------------------------- all codecs


def test_builders_produce_generically_valid_nodes_and_errors_are_cz():
    assert issubclass(EncodeError, CzError) and issubclass(EncodeError, ValueError)
    node = affine(np.zeros(4, int), [1.0], bits=3, signed=False)
    assert node.params == {"bits": 3, "signed": False}
    d, _ = to_desc(node)
    assert d.streams["q"].bits == 3


@settings(max_examples=100, deadline=None)
@given(groups=st.integers(0, 4), m=st.sampled_from([1, 3, 4, 5]), data=st.data())
def test_nm_fuzz_paths_agree(groups, m, data):
    n = data.draw(st.integers(1, m))
    bits = max(1, (m - 1).bit_length())
    pos = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=groups * n,
                             max_size=groups * n))
    vals = to_desc(dense(np.arange(1, groups * n + 1, dtype=np.float32)), check=False)
    d, arrays = make_desc("nm", (1, groups * m), {"n": n, "m": m},
                          {"positions": ("u8", bits, pos)}, {"values": vals})
    results = []
    for reference in (True, False):
        try:
            results.append(decode(d, arrays, reference=reference))
        except CorruptionError:
            results.append(None)
    event("corrupt" if results[0] is None else "decoded")
    if results[0] is None or results[1] is None:
        assert results[0] is None and results[1] is None
    else:
        assert same_bits(results[0], results[1])


@BOTH
def test_stream_shorter_than_declared_is_corrupt(reference):
    """A reader handing back fewer elements than the header declared never reaches a
    kernel (numba does not bounds-check)."""
    mask = np.array([[True, False, True], [False, True, True]])
    for node, role in [(relidx(mask, dense(np.ones(4, np.float32))), "gaps"),
                       (codebook(np.array([0, 1, 1]), np.array([1.0, 2.0])), "indices"),
                       (affine(np.zeros((2, 3), int), [1.0, 2.0], axis=0), "q"),
                       (nm(mask, dense(np.ones(4, np.float32)), n=2, m=3), "positions")]:
        d, arrays = to_desc(node)
        arrays = dict(arrays)
        sec = d.streams[role].sec
        arrays[sec] = arrays[sec][:-1]
        with pytest.raises(CorruptionError):
            decode(d, arrays, reference=reference)


def test_non_finite_values_are_values_not_faults():
    big = np.float32(3e38)
    d, arrays = to_desc(affine(np.array([127, -1, 0]), [big], bits=8))
    nan = with_stream(d, arrays, "scale", [np.nan])
    for arr in (arrays, nan):
        a, b = decode(d, arr, reference=True), decode(d, arr, reference=False)
        assert same_bits(a, b)
    assert np.isinf(decode(d, arrays, reference=True)[0])
    node = sum_(dense(np.array([np.inf, 1e300])), dense(np.array([-np.inf, 1.0], np.float32)))
    out = roundtrip(node)
    assert np.isnan(out[0]) and np.isinf(out[1])


def test_tucker2_both_contraction_orders():
    rs = rng(8)
    for o, i, r_in, r_out in [(2, 9, 3, 4), (9, 2, 4, 3)]:
        first, core, last = f32(rs, (r_in, i)), f32(rs, (r_out, r_in, 3, 2)), f32(rs, (o, r_out))
        out = roundtrip(tucker2(dense(first), dense(core), dense(last), (o, i, 3, 2)))
        want = np.einsum("oa,abhw,bi->oihw", last.astype(np.float64), core, first)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
