import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from czmodel.compress.fixedpoint import (
    dequantize_fixed,
    dynamic_fixed_point,
    minifloat,
    minifloat_max,
)

RNG = np.random.default_rng(3)


@settings(max_examples=50, deadline=None)
@given(w=arrays(np.float64, st.integers(1, 100),
                elements=st.floats(-1e4, 1e4, allow_nan=False, width=32)),
       bits=st.integers(2, 16))
def test_dfp_fits_and_error_bound(w, bits):
    q, fl = dynamic_fixed_point(w, bits)
    assert q.min() >= -(2 ** (bits - 1)) and q.max() <= 2 ** (bits - 1) - 1
    rec = dequantize_fixed(q, fl).astype(np.float64)
    assert np.all(np.abs(rec - w) <= 2.0 ** -fl / 2 * (1 + 1e-6) + 1e-30)
    if np.abs(w).max() > 0:  # one more fraction bit would overflow
        s = 2.0 ** (fl + 1)
        qmax = 2 ** (bits - 1) - 1
        assert np.rint(w.max() * s) > qmax or np.rint(w.min() * s) < -qmax - 1


def test_dfp_examples():
    assert dynamic_fixed_point(np.array([-1.0, 0.5]), 8)[1] == 7
    assert dynamic_fixed_point(np.array([1.0, 0.5]), 8)[1] == 6
    q, fl = dynamic_fixed_point(np.array([300.0, -5.0]), 8)
    assert fl < 0


def test_stochastic_rounding_unbiased_and_seeded():
    w = np.full(20000, 0.3)
    q1, fl = dynamic_fixed_point(np.append(w, 1.0), 4, rounding="stochastic", seed=7)
    q2, _ = dynamic_fixed_point(np.append(w, 1.0), 4, rounding="stochastic", seed=7)
    assert np.array_equal(q1, q2)
    mean = dequantize_fixed(q1[:-1], fl).mean()
    assert abs(mean - 0.3) < 0.01
    m = minifloat(w, 4, 2, rounding="stochastic", seed=1).astype(np.float64).mean()
    assert abs(m - 0.3) < 0.005


def test_minifloat_matches_float16():
    w = np.concatenate([RNG.normal(size=5000) * 10.0 ** RNG.integers(-8, 4, 5000),
                        [65504.0, 6e-8, 1e-7, -3e-5, 0.0]]).astype(np.float32)
    assert np.array_equal(minifloat(w, 5, 10), w.astype(np.float16).astype(np.float32))


def test_minifloat_saturates_and_e4m3_grid():
    assert minifloat_max(5, 2) == 57344.0
    assert minifloat_max(4, 3) == 240.0  # IEEE-like E4M3 (all-ones exponent reserved)
    out = minifloat(np.array([1e6, -1e6, 250.0]), 4, 3)
    assert out.tolist() == [240.0, -240.0, 240.0]
    x = np.linspace(-240, 240, 10001)
    q = minifloat(x, 4, 3)
    grid = np.unique(q)
    assert grid.size <= 2 ** 8
    # idempotent: quantized values are representable
    assert np.array_equal(minifloat(q, 4, 3), q)
    # nearest: no grid point closer than the chosen one
    d = np.abs(x[:, None] - grid[None, :]).min(axis=1)
    assert np.allclose(np.abs(q - x), d)
    # subnormals: smallest step 2**(1 - 7 - 3)
    assert minifloat(np.array([2.0 ** -9 * 0.6]), 4, 3)[0] == 2.0 ** -9


def test_bad_args():
    with pytest.raises(ValueError):
        dynamic_fixed_point(np.ones(3), 1)
    with pytest.raises(ValueError):
        minifloat(np.ones(3), 4, 3, rounding="up")
