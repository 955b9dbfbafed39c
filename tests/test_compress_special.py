import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from czmodel.compress.kmeans import decode_shared
from czmodel.compress.special import binary, pow2, ternary
from czmodel.errors import EncodeError

RNG = np.random.default_rng(2)


def test_binary_closed_form():
    w = RNG.normal(size=(6, 10)).astype(np.float32)
    w[0, 0] = 0.0
    idx, cent = binary(w)
    a = np.abs(w).mean()
    assert np.allclose(cent, [-a, a])
    assert idx[0, 0] == 1  # sign(0) -> +
    assert np.allclose(decode_shared(idx, cent), np.where(w >= 0, a, -a))
    idx, cent = binary(w, per_channel=True)
    assert np.allclose(cent[:, 1], np.abs(w).mean(axis=1))
    assert np.allclose(decode_shared(idx, cent), np.where(w >= 0, 1, -1) * cent[:, 1:2])


def test_ternary_closed_form():
    w = RNG.normal(size=(5, 200))
    idx, cent = ternary(w)
    delta = 0.7 * np.abs(w).mean()
    big = np.abs(w) > delta
    alpha = np.abs(w[big]).mean()
    assert np.allclose(cent, [-alpha, 0, alpha])
    expect = np.where(big, np.sign(w) * alpha, 0)
    assert np.allclose(decode_shared(idx, cent), expect)
    idx, cent = ternary(w, per_channel=True)
    for c in range(5):
        d = 0.7 * np.abs(w[c]).mean()
        assert np.isclose(cent[c, 2], np.abs(w[c][np.abs(w[c]) > d]).mean())
        assert cent[c, 1] == 0 and cent[c, 0] == -cent[c, 2]
    idx, cent = ternary(np.zeros((3, 3)))
    assert np.all(cent == 0)


@settings(max_examples=40, deadline=None)
@given(w=arrays(np.float64, st.integers(1, 200),
                elements=st.floats(-100, 100, allow_nan=False, width=32)),
       bits=st.integers(2, 6))
def test_pow2_centroids_are_powers_of_two(w, bits):
    idx, cent = pow2(w, bits)
    assert cent.shape == (2 ** bits - 1,) and (np.diff(cent) >= 0).all()
    nz = cent[cent != 0]
    if np.abs(w).max() > 0:
        assert (cent == 0).sum() == 1
        m, _ = np.frexp(np.abs(nz))
        assert np.all(m == 0.5)  # exact powers of two
        assert np.abs(nz).max() <= np.abs(w).max() < 2 * np.abs(nz).max()
    rec = decode_shared(idx, cent)
    assert np.all(np.sign(rec) * np.sign(w) >= 0)


def test_pow2_log_rounding():
    w = np.array([1.0, 0.7, 0.72, 0.3, -0.25, 0.05, 0.0])
    idx, cent = pow2(w, 3)  # exponents 0, -1, -2
    rec = decode_shared(idx, cent)
    # log2(0.7) = -0.515 -> 2**-1, log2(0.72) = -0.47 -> 2**0, 0.05 < 2**-2.5 -> 0
    assert rec.tolist() == [1.0, 0.5, 1.0, 0.25, -0.25, 0.0, 0.0]
    with pytest.raises(EncodeError):
        pow2(w, 1)
