import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from czmodel.compress.kmeans import decode_shared, kmeans_1d, midpoints, share_weights
from czmodel.compress.prune import magnitude_mask
from czmodel.errors import EncodeError

RNG = np.random.default_rng(1)
LAP = RNG.laplace(scale=0.05, size=50_000).astype(np.float32)


def test_error_falls_with_bits_and_centroids_in_range():
    errs = []
    for bits in range(1, 9):
        c, idx = kmeans_1d(LAP, bits)
        assert c.dtype == np.float32 and c.shape == (2 ** bits,)
        assert idx.dtype == np.uint8 and idx.shape == LAP.shape
        assert (np.diff(c) >= 0).all()
        assert c.min() >= LAP.min() and c.max() <= LAP.max()
        errs.append(float(np.mean((c[idx] - LAP) ** 2)))
    assert all(b < a for a, b in zip(errs, errs[1:]))


@pytest.mark.parametrize("init", ["linear", "forgy", "density"])
def test_inits_and_nearest_assignment(init):
    c, idx = kmeans_1d(LAP, 4, init=init, seed=3)
    assert np.array_equal(idx, np.searchsorted(midpoints(c), LAP, side="right"))
    # every point goes to its nearest centroid
    d = np.abs(LAP[:, None] - c[None, :])
    assert np.allclose(d[np.arange(LAP.size), idx], d.min(axis=1), atol=1e-7)
    assert c.min() >= LAP.min() and c.max() <= LAP.max()


def test_lloyd_fixed_point():
    # each non-empty centroid is the mean of its cluster at convergence
    c, idx = kmeans_1d(LAP, 3, max_iter=2000, tol=0)
    for j in range(8):
        sel = LAP[idx == j]
        if sel.size:
            assert abs(sel.astype(np.float64).mean() - c[j]) < 1e-5


def test_fast_assignment_path_matches_searchsorted():
    x = RNG.normal(size=200_000).astype(np.float32)
    x[:5] = [40.0, -30.0, 0.0, 1e-30, -1e-30]  # outliers stretch the range
    c, idx = kmeans_1d(x, 8)
    assert np.array_equal(idx, np.searchsorted(midpoints(c), x, side="right"))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), bits=st.integers(1, 8), seed=st.integers(0, 10**6),
       init=st.sampled_from(["linear", "forgy", "density"]))
def test_small_and_degenerate_inputs(n, bits, seed, init):
    r = np.random.default_rng(seed)
    x = np.round(r.normal(size=n), 1)  # many duplicates
    c, idx = kmeans_1d(x, bits, init=init, seed=seed)
    assert c.shape == (2 ** bits,) and (np.diff(c) >= 0).all()
    assert c.min() >= np.float32(x.min()) and c.max() <= np.float32(x.max())
    assert idx.max() < 2 ** bits


def test_constant_input():
    c, idx = kmeans_1d(np.full(100, 0.25), 3)
    assert np.all(c == np.float32(0.25)) and np.all(c[idx] == np.float32(0.25))


def test_pruned_zeros_stay_zero():
    w = RNG.laplace(size=(64, 32)).astype(np.float32)
    m = magnitude_mask(w, 0.9)
    for per_channel in (False, True):
        idx, cent = share_weights(w, 4, mask=m, per_channel=per_channel)
        rec = decode_shared(idx, cent)
        assert np.all(rec[~m] == 0.0)
        assert np.all(idx[~m] == 0) and np.all(idx[m] >= 1)
        assert np.all(cent[..., 0] == 0.0)
        assert cent.shape == ((64, 16) if per_channel else (16,))
        kept_err = np.abs(rec[m] - w[m]).max()
        assert kept_err < 0.5 * np.abs(w).max()


def test_share_weights_without_mask_and_per_channel():
    w = (RNG.normal(size=(16, 3, 3, 3)) * np.arange(1, 17)[:, None, None, None]).astype(np.float32)
    idx, cent = share_weights(w, 3)
    assert cent.shape == (8,) and idx.shape == w.shape
    idx_c, cent_c = share_weights(w, 3, per_channel=True)
    assert cent_c.shape == (16, 8)
    e_t = np.mean((decode_shared(idx, cent) - w) ** 2)
    e_c = np.mean((decode_shared(idx_c, cent_c) - w) ** 2)
    assert e_c < e_t  # channel scales differ 16x: per-channel codebooks fit better
    rows = w.reshape(16, -1)
    assert (cent_c.min(axis=1) >= rows.min(axis=1)).all()
    assert (cent_c.max(axis=1) <= rows.max(axis=1)).all()


def test_all_pruned_and_bad_args():
    w = RNG.normal(size=(4, 4))
    idx, cent = share_weights(w, 2, mask=np.zeros((4, 4), bool))
    assert np.all(decode_shared(idx, cent) == 0)
    with pytest.raises(EncodeError):
        kmeans_1d(LAP, 9)
    with pytest.raises(EncodeError):
        kmeans_1d(LAP, 4, init="kmeans++")
    with pytest.raises(EncodeError):
        share_weights(w, 4, mask=np.ones((4, 5), bool))
    with pytest.raises(EncodeError):
        kmeans_1d(np.array([]), 4)
