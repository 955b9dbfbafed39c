import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from czmodel.compress.prune import (
    drop_input_channels,
    global_magnitude_masks,
    han_mask,
    magnitude_mask,
    nm_mask,
    shrink_filters,
)
from czmodel.errors import EncodeError

RNG = np.random.default_rng(0)
W4 = RNG.normal(size=(8, 6, 3, 3)).astype(np.float32)


@pytest.mark.parametrize("gran,units,per_unit", [
    ("element", 8 * 6 * 9, 1), ("vector", 8 * 6 * 3, 3), ("kernel", 8 * 6, 9),
    ("filter", 8, 6 * 9), ("channel", 6, 8 * 9)])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.77, 1.0])
def test_exact_sparsity_each_granularity(gran, units, per_unit, sparsity):
    m = magnitude_mask(W4, sparsity, gran)
    assert m.shape == W4.shape and m.dtype == bool
    assert (~m).sum() == round(sparsity * units) * per_unit


def test_structure_of_masks():
    m = magnitude_mask(W4, 0.5, "filter")
    assert all(m[o].all() or not m[o].any() for o in range(8))
    m = magnitude_mask(W4, 0.5, "channel")
    assert all(m[:, i].all() or not m[:, i].any() for i in range(6))
    m = magnitude_mask(W4, 0.5, "kernel")
    assert ((m.all(axis=(2, 3))) | (~m.any(axis=(2, 3)))).all()
    m = magnitude_mask(W4, 0.5, "vector")
    assert ((m.all(axis=-1)) | (~m.any(axis=-1))).all()


def test_block_granularity_exact_and_partial_edges():
    w = RNG.normal(size=(10, 14)).astype(np.float32)
    m = magnitude_mask(w, 0.5, "block", block=(4, 4))  # 3 x 4 = 12 blocks (partial edges)
    assert m.shape == w.shape
    tiles = [m[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] for r in range(3) for c in range(4)]
    assert all(t.all() or not t.any() for t in tiles)
    assert sum(not t.any() for t in tiles) == 6
    m4 = magnitude_mask(W4, 0.25, "block", block=(2, 9))  # 2-D view (8, 54): 4 x 6 blocks
    assert (~m4).sum() == 6 * 18


def test_smallest_units_go_first_and_ties_are_stable():
    w = np.array([3.0, -1.0, 2.0, 1.0, -1.0, 5.0])
    m = magnitude_mask(w, 0.5)
    # |w| = 3 1 2 1 1 5 -> prune the three 1s; with only two to prune, earlier ties first
    assert m.tolist() == [True, False, True, False, False, True]
    m2 = magnitude_mask(w, 2 / 6)
    assert m2.tolist() == [True, False, True, False, True, True]


def test_filter_saliency_is_l1():
    w = np.zeros((3, 4))
    w[0] = [10, 0, 0, 0]      # L1 10, L2 10
    w[1] = [3, 3, 3, 3]       # L1 12, L2 6
    w[2] = [1, 1, 1, 1]
    assert magnitude_mask(w, 1 / 3, "filter")[:, 0].tolist() == [True, True, False]
    assert magnitude_mask(w, 2 / 3, "filter")[:, 0].tolist() == [False, True, False]


def test_bad_arguments():
    with pytest.raises(EncodeError):
        magnitude_mask(W4, 1.5)
    with pytest.raises(EncodeError):
        magnitude_mask(W4, 0.5, "row")
    with pytest.raises(EncodeError):
        magnitude_mask(W4[0, 0], 0.5, "kernel")
    with pytest.raises(EncodeError):
        magnitude_mask(W4, 0.5, "block")
    with pytest.raises(ValueError):
        magnitude_mask(np.array([1.0, np.nan]), 0.5)


def test_han_rule():
    w = RNG.normal(size=1000)
    m = han_mask(w, 0.5)
    assert np.array_equal(m, np.abs(w) >= 0.5 * w.std())


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 5), groups=st.integers(1, 6),
       nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (4, 8)]), seed=st.integers(0, 1000))
def test_nm_pattern(rows, groups, nm, seed):
    n, m = nm
    w = np.random.default_rng(seed).normal(size=(rows, groups * m))
    mask = nm_mask(w, n, m)
    g = mask.reshape(rows, groups, m)
    assert (g.sum(axis=-1) == n).all()
    a = np.abs(w).reshape(rows, groups, m)
    kept_min = np.where(g, a, np.inf).min(axis=-1)
    pruned_max = np.where(g, -np.inf, a).max(axis=-1)
    assert (kept_min >= pruned_max).all()


def test_nm_conv_and_bad_cols():
    with pytest.raises(EncodeError, match="multiple of m=4"):  # 54 columns
        nm_mask(W4, 2, 4)
    w = RNG.normal(size=(4, 2, 2, 2))
    assert nm_mask(w, 2, 4).reshape(4, 2, 4).sum(-1).tolist() == [[2, 2]] * 4


@settings(max_examples=25, deadline=None)
@given(s=st.floats(0, 1), seed=st.integers(0, 100))
def test_global_threshold(s, seed):
    r = np.random.default_rng(seed)
    ws = {"a": r.normal(size=(5, 7)), "b": 3 * r.normal(size=(11,)), "c": r.normal(size=(2, 3, 4))}
    masks = global_magnitude_masks(ws, s)
    total = sum(w.size for w in ws.values())
    assert sum((~m).sum() for m in masks.values()) == round(s * total)
    kept = np.concatenate([np.abs(ws[k])[masks[k]] for k in ws])
    pruned = np.concatenate([np.abs(ws[k])[~masks[k]] for k in ws])
    if kept.size and pruned.size:
        assert kept.min() >= pruned.max()


def test_shrink_filters_and_next_layer():
    m = magnitude_mask(W4, 0.5, "filter")
    kept, small = shrink_filters(W4, m)
    assert kept.size == 4 and np.array_equal(small, W4[kept])
    kept2, _ = shrink_filters(W4, m[:, 0, 0, 0])
    assert np.array_equal(kept, kept2)
    nxt = RNG.normal(size=(5, 8, 3, 3))
    assert np.array_equal(drop_input_channels(nxt, kept), nxt[:, kept])
    fc = RNG.normal(size=(3, 8 * 4))  # flatten of 8 channels x 2 x 2
    out = drop_input_channels(fc, kept, channel_width=4)
    assert out.shape == (3, 16)
    assert np.array_equal(out[:, :4], fc[:, kept[0] * 4:kept[0] * 4 + 4])
    with pytest.raises(EncodeError, match="filter-structured"):
        shrink_filters(W4, magnitude_mask(W4, 0.5))
